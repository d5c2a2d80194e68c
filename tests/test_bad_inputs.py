"""Every bad input a user can type, refused before any model loads: exit code 2, one line that names the input,
says what is wrong and how to fix it, no traceback, and every file that was there before unchanged (checksums)."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import save_file

from creative_eval import cli
from creative_eval import models

META = {"layer": "2", "config_fingerprint": "f", "raw_norm": "1", "resid_norm": "1", "hidden_size": "4",
        "num_layers": "4", "model_id": "tiny"}


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _story(pid: str, condition: str, text: str = "A story.") -> dict:
    return {"prompt_id": pid, "condition": condition, "prompt": "Write a story.", "text": text}


def workspace(root: Path) -> None:
    """The files a user already has: stories, judgements, scores, labels, pairs, a direction, a preset."""
    _jsonl(root / "stories.jsonl", [_story(p, c) for p in ("p1", "p2") for c in ("baseline", "induced")])
    _jsonl(root / "ratings.jsonl", [{"key": "k1", "judge": "j", "story_id": "p1:baseline", "expected": 3.0,
                                     "status": "ok"}])
    _jsonl(root / "prefs.jsonl", [{"key": "k2", "judge": "j", "pair_id": "p1:induced|p1:baseline",
                                   "story_a": "p1:induced", "story_b": "p1:baseline", "decision": "A",
                                   "consistent": True}])
    _jsonl(root / "probe.jsonl", [{"key": "probe-x|a|b", "story_id": "p1:baseline", "probe": 0.1}])
    _jsonl(root / "labels.jsonl", [{"item_id": "i1", "story_a": "p1:induced", "story_b": "p1:baseline",
                                    "choice": "A"}])
    _jsonl(root / "pairs.jsonl", [{"id": f"q{i}", "creative": "A dragon sings.", "uncreative": "A dragon sleeps.",
                                   "split": "test"} for i in range(3)])
    _jsonl(root / "one-pair.jsonl", [{"id": "q0", "creative": "A dragon sings.", "uncreative": "A dragon sleeps.",
                                      "split": "test"}])
    save_file({"direction": torch.ones(4)}, str(root / "d.safetensors"), metadata=META)
    (root / "empty.jsonl").write_text("", encoding="utf-8")
    (root / "folder").mkdir()
    (root / "run").mkdir()
    (root / "emptyrun").mkdir()
    _jsonl(root / "run" / "stories.jsonl", [_story("p1", "baseline")])
    (root / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary")


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return make


def _rows(name: str, rows: list) -> Callable[[Path], None]:
    def make(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        _jsonl(root / name, rows)
    return make


def _direction(name: str, vector: torch.Tensor, **meta: str) -> Callable[[Path], None]:
    return lambda root: save_file({"direction": vector}, str(root / name), metadata={**META, **meta})


def _no_meta(root: Path) -> None:
    save_file({"direction": torch.ones(4)}, str(root / "nometa.safetensors"), metadata={"layer": "2"})


@dataclass
class Case:
    """argv, then the words stderr must hold: the input's name and the fix. `clear` = names the input and a fix."""

    name: str
    argv: list[str]
    words: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    clear: bool = True
    extra: list = field(default_factory=list)


J = ["judge", "--judge", "embedded"]
GEN = ["generate", "--out", "new.jsonl"]
CASES = [
    # numbers and choices
    Case("alpha nan", [*GEN, "--alpha", "nan"], ("--alpha", "'nan'", "write e.g. 0.2")),
    Case("alpha inf", [*GEN, "--alpha", "inf"], ("--alpha", "write e.g. 0.2")),
    Case("alphas nan", ["steer-sweep", "--alphas", "0.1,nan"], ("--alphas", "write e.g. 0.2")),
    Case("alphas empty item", ["steer-sweep", "--alphas", "0.1,,abc"], ("--alphas", "empty item", "0.1,0.2")),
    Case("alphas word", ["steer-sweep", "--alphas", "abc"], ("--alphas", "'abc'", "write e.g. 0.2")),
    Case("export alpha -inf", ["export", "--out", "x.pt", "--format", "lm-eval-steered", "--alpha=-inf"],
         ("--alpha", "write e.g. 0.2")),
    Case("negative value as an option", ["export", "--out", "x.pt", "--format", "lm-eval-steered", "--alpha", "-inf"],
         ("--alpha", "expected one argument", "--alpha=-0.2")),
    Case("positions", [*GEN, "--positions", "middle"], ("--positions", "choose from", "--help")),
    Case("norm", [*GEN, "--norm", "sideways"], ("--norm", "choose from")),
    Case("pooling", ["sweep", "--pooling", "max"], ("--pooling", "choose from")),
    Case("tokens", ["score", "--input", "stories.jsonl", "--tokens", "all"], ("--tokens", "choose from")),
    Case("conditions unknown", [*GEN, "--conditions", "baseline,wild"], ("--conditions", "'wild'", "choose from")),
    Case("conditions empty", [*GEN, "--conditions", ","], ("--conditions", "choose from")),
    Case("layer 0", [*GEN, "--layer", "0"], ("--layer", "'0'", "write e.g. 8")),
    Case("layer word", [*GEN, "--layer", "abc"], ("--layer", "'abc'", "write e.g. 8")),
    Case("layer negative", ["direction", "--out", "d2.safetensors", "--layer", "-3"], ("--layer", "write e.g. 8")),
    Case("length control unknown", ["direction", "--out", "d2.safetensors", "--source", "humans", "--length-control",
                                    "words"], ("--length-control", "choose from")),
    Case("length control on prompts", ["direction", "--out", "d2.safetensors", "--length-control", "residual"],
         ("--length-control residual", "humans and hanna sources only", "'prompts'", "drop it")),
    Case("length control on a file", ["score", "--input", "stories.jsonl", "--direction", "d.safetensors",
                                      "--length-control", "residual"], ("--length-control residual", "d.safetensors",
                                                                         "carries its own fit")),
    Case("length control without criteria", ["sweep", "--length-control", "residual"],
         ("--length-control", "--criteria", "drop it")),
    Case("hold out on prompts", ["direction", "--out", "d2.safetensors", "--hold-out-wq", "4"],
         ("--hold-out-wq", "'prompts'", "--source humans")),
    Case("hold out negative", ["direction", "--out", "d2.safetensors", "--source", "humans", "--hold-out-wq", "-4"],
         ("--hold-out-wq", "'-4'", "whole number >= 0")),
    Case("temperature", [*GEN, "--temperature", "-1"], ("--temperature", "use 0 for greedy")),
    Case("top-p 0", [*GEN, "--top-p", "0"], ("--top-p", "(0, 1]")),
    Case("top-p 1.5", [*GEN, "--top-p", "1.5"], ("--top-p", "(0, 1]")),
    Case("seed word", [*GEN, "--seed", "abc"], ("--seed", "'abc'", "write e.g. 0")),
    Case("limit 0", [*GEN, "--limit", "0"], ("--limit", "write e.g. 8")),
    Case("batch size", [*GEN, "--batch-size", "-2"], ("--batch-size", "write e.g. 8")),
    Case("max new tokens", [*GEN, "--max-new-tokens", "-5"], ("--max-new-tokens", "write e.g. 8")),
    Case("demo n", ["demo", "--n", "-1"], ("--n", "'-1'", "write e.g. 8")),
    Case("demo max new tokens", ["demo", "--max-new-tokens", "-5"], ("--max-new-tokens", "write e.g. 8")),
    Case("demo wq", ["demo", "--wq", "-1"], ("--wq", "whole number >= 0", "write e.g. 0")),
    Case("report n-boot", ["report", "run", "--n-boot", "0"], ("--n-boot", "write e.g. 8")),
    Case("judge mode", [*J, "--input", "stories.jsonl", "--out", "r.jsonl", "--mode", "ranking"],
         ("--mode", "choose from")),
    Case("compare no colon", [*J, "--input", "stories.jsonl", "--out", "r.jsonl", "--compare", "induced"],
         ("--compare", "'induced'", "like induced:baseline")),
    Case("compare same", [*J, "--input", "stories.jsonl", "--out", "r.jsonl", "--compare", "induced:induced"],
         ("--compare", "like induced:baseline")),
    Case("old --pair option", [*J, "--input", "stories.jsonl", "--out", "r.jsonl", "--pair", "induced,nonsense"],
         ("--pair", "creative-eval judge --help"), clear=False),  # names the input, but the fix is only "read help"
    Case("annotate compare", ["annotate", "export", "--input", "stories.jsonl", "--out", "pack", "--compare",
                              "baseline"], ("--compare", "like induced:baseline")),
    Case("missing --out", ["generate"], ("--out", "required", "--help")),
    Case("unknown command", ["frobnicate"], ("frobnicate", "choose from", "--help")),
    # input files
    Case("score input absent", ["score", "--input", "absent.jsonl"], ("absent.jsonl", "no such file", "check the path")),
    Case("judge input absent", [*J, "--input", "absent.jsonl", "--out", "r.jsonl"], ("absent.jsonl", "check the path")),
    Case("judge input folder", [*J, "--input", "folder", "--out", "r.jsonl"], ("folder", "is a folder", "pass a file")),
    Case("pairs absent", [*GEN, "--pairs", "absent.jsonl"], ("absent.jsonl", "no such pairs file", "pass a JSONL/CSV")),
    Case("pairs csv absent", ["direction", "--out", "d2.safetensors", "--pairs", "absent.csv"],
         ("absent.csv", "pass a JSONL/CSV")),
    Case("pairs split typo", [*GEN, "--pairs", "one-pair.jsonl", "--split", "tset"],
         ("one-pair.jsonl", "'tset'", "splits ['test']", "--split")),
    Case("pairs bad line", [*GEN, "--pairs", "badpairs.jsonl"], ("badpairs.jsonl:2", "one JSON object per line"),
         _write("badpairs.jsonl", '{"id": "a", "creative": "x", "uncreative": "y", "split": "t"}\n{oops\n')),
    Case("direction absent", [*GEN, "--direction", "absent.safetensors"],
         ("absent.safetensors", "no such direction file", "auto, prompts")),
    Case("direction pickle", [*GEN, "--direction", "d.pt"], ("d.pt", "not a safetensors file", "never loads pickles",
                                                             "creative-eval direction"),
         _write("d.pt", pickle.dumps({"direction": [0.0] * 4}))),
    Case("direction text file", [*GEN, "--direction", "d.txt"], ("d.txt", "not a safetensors file"),
         _write("d.txt", "hello")),
    Case("direction layer abc", [*GEN, "--direction", "abc.safetensors"],
         ("abc.safetensors", "layer is 'abc'", "re-extract"), _direction("abc.safetensors", torch.ones(4), layer="abc")),
    Case("direction wrong size", [*GEN, "--direction", "big.safetensors"],
         ("big.safetensors", "shape (7,)", "hidden_size 4", "re-extract"), _direction("big.safetensors", torch.ones(7))),
    Case("direction without metadata", [*GEN, "--direction", "nometa.safetensors"],
         ("nometa.safetensors", "metadata lacks", "re-extract"), _no_meta),
    Case("direction without tensor", [*GEN, "--direction", "other.safetensors"],
         ("other.safetensors", "without a 'direction' tensor", "creative-eval direction"),
         lambda root: save_file({"weights": torch.ones(2)}, str(root / "other.safetensors"))),
    Case("preset absent", ["judge", "--judge", "nosuch", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("'nosuch'", "known presets")),
    Case("preset concurrency 0", ["judge", "--judge", "c0.yaml", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("c0.yaml", "'concurrency' is 0", "whole number >= 1"),
         _write("c0.yaml", "backend: openai\nmodel: m\nconcurrency: 0\n")),
    Case("preset bad yaml", ["judge", "--judge", "bad.yaml", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("bad.yaml", "not valid YAML", "line 2", "fix the syntax"), _write("bad.yaml", "backend: [hf\n")),
    Case("preset unknown field", ["judge", "--judge", "u.yaml", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("u.yaml", "unknown field(s) ['temp']", "allowed"), _write("u.yaml", "backend: hf\ntemp: 1\n")),
    Case("preset backend", ["judge", "--judge", "b.yaml", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("b.yaml", "'backend' must be one of"), _write("b.yaml", "backend: gpu\n")),
    Case("preset max_input_tokens", ["judge", "--judge", "m.yaml", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("m.yaml", "'max_input_tokens' is -1", "whole number >= 1"), _write("m.yaml", "backend: hf\nmax_input_tokens: -1\n")),
    Case("preset timeout word", ["judge", "--judge", "t.yaml", "--input", "stories.jsonl", "--out", "r.jsonl"],
         ("t.yaml", "'timeout_s' is 'soon'", "write a number"), _write("t.yaml", "backend: openai\nmodel: m\ntimeout_s: soon\n")),
    Case("stories empty", [*J, "--input", "empty.jsonl", "--out", "r.jsonl"], ("empty.jsonl", "no stories", "creative-eval generate")),
    Case("stories not utf-8", [*J, "--input", "latin.jsonl", "--out", "r.jsonl"],
         ("latin.jsonl:2", "not UTF-8", "re-save the file as UTF-8"),
         _write("latin.jsonl", (json.dumps(_story("p1", "baseline")) + "\n" + json.dumps(_story("p2", "baseline"))
                                .replace("A story.", "Caf\u00e9") + "\n").encode("latin-1"))),
    Case("stories list lines", [*J, "--input", "list.jsonl", "--out", "r.jsonl"],
         ("list.jsonl:1", "a JSON list, not an object", "one JSON object"), _rows("list.jsonl", [[1, 2], [3]])),
    Case("stories string lines", [*J, "--input", "str.jsonl", "--out", "r.jsonl"],
         ("str.jsonl:1", "a JSON str", "one JSON object"), _rows("str.jsonl", ["a story", "another"])),
    Case("stories bad json", [*J, "--input", "broken.jsonl", "--out", "r.jsonl"],
         ("broken.jsonl:2", "not valid JSON", "fix or delete that line"),
         _write("broken.jsonl", json.dumps(_story("p1", "baseline")) + "\n{nope\n" + json.dumps(_story("p2", "x")) + "\n")),
    Case("story empty text", [*J, "--input", "blank.jsonl", "--out", "r.jsonl"],
         ("blank.jsonl:2", "'text' is empty", "non-empty text"),
         _rows("blank.jsonl", [_story("p1", "baseline"), _story("p2", "baseline", "  ")])),
    Case("story empty text (score)", ["score", "--input", "blank.jsonl"], ("blank.jsonl:1", "'text' is empty"),
         _rows("blank.jsonl", [_story("p1", "baseline", "")])),
    Case("story missing prompt", [*J, "--input", "noprompt.jsonl", "--out", "r.jsonl"],
         ("noprompt.jsonl:1", "'prompt' is missing", "creative-eval generate"),
         _rows("noprompt.jsonl", [{"prompt_id": "p", "condition": "c", "text": "t"}])),
    Case("story number text", [*J, "--input", "num.jsonl", "--out", "r.jsonl"],
         ("num.jsonl:1", "'text' is 7", "as strings"), _rows("num.jsonl", [{**_story("p", "c"), "text": 7}])),
    Case("story twice", [*J, "--input", "twice.jsonl", "--out", "r.jsonl"],
         ("twice.jsonl:2", "p1:baseline again", "first on line 1", "keep one story"),
         _rows("twice.jsonl", [_story("p1", "baseline"), _story("p1", "baseline", "Other.")])),
    Case("condition with colon", [*J, "--input", "colon.jsonl", "--out", "r.jsonl"],
         ("colon.jsonl:1", "holds a colon", "rename it"), _rows("colon.jsonl", [_story("p1", "a:b")])),
    Case("ratings file as stories", [*J, "--input", "ratings.jsonl", "--out", "r.jsonl"],
         ("ratings.jsonl:1", "'prompt_id' is missing", "stories file")),
    Case("compare absent condition", [*J, "--mode", "pairwise", "--input", "stories.jsonl", "--out", "p.jsonl",
                                      "--compare", "induced:nonsense"],
         ("--compare induced:nonsense", "stories.jsonl", "'nonsense'", "baseline, induced")),
    Case("compare without shared prompt", [*J, "--mode", "pairwise", "--input", "apart.jsonl", "--out", "p.jsonl",
                                           "--compare", "creative:baseline"],
         ("apart.jsonl", "no prompt", "both conditions"),
         _rows("apart.jsonl", [_story("p1", "creative"), _story("p2", "baseline")])),
    Case("annotate compare absent", ["annotate", "export", "--input", "stories.jsonl", "--out", "pack", "--compare",
                                     "baseline:human"], ("stories.jsonl", "'human'", "baseline, induced")),
    Case("annotate results absent", ["annotate", "import", "absent.json", "--pack", "folder", "--out", "h.jsonl"],
         ("absent.json", "no such file", "check the path")),
    Case("annotate pack absent", ["annotate", "import", "stories.jsonl", "--pack", "nopack", "--out", "h.jsonl"],
         ("nopack", "no such folder", "check the path")),
    Case("report absent", ["report", "absent-run"], ("absent-run", "not found", "pass run folders")),
    Case("report empty folder", ["report", "emptyrun"], ("emptyrun", "no JSONL or JSON files", "pass run folders")),
    Case("report empty file", ["report", "empty.jsonl"], ("empty.jsonl", "empty file", "remove it")),
    Case("report foreign records", ["report", "foreign.jsonl"], ("foreign.jsonl:1", "not stories", "creative-eval JSONL"),
         _rows("foreign.jsonl", [{"x": 1}])),
    Case("report bad check", ["report", "run", "--check", "win>>1"], ("'win>>1'", "PATH OP NUMBER", "e.g.")),
    Case("compare-judges without labels", ["compare-judges", "ratings.jsonl"], ("no human labels", "--humans")),
    # outputs: never damage what is there
    Case("judge out = input", [*J, "--input", "stories.jsonl", "--out", "stories.jsonl"],
         ("stories.jsonl", "also this command's input", "another file")),
    Case("judge out = input, other spelling", [*J, "--input", "stories.jsonl", "--out", "./folder/../stories.jsonl"],
         ("also this command's input", "another file")),
    Case("score out = input", ["score", "--input", "stories.jsonl", "--out", "stories.jsonl"],
         ("stories.jsonl", "also this command's input", "another file")),
    Case("pairwise into ratings", [*J, "--mode", "pairwise", "--input", "stories.jsonl", "--out", "ratings.jsonl"],
         ("ratings.jsonl", "already holds rating records", "choose another output file")),
    Case("ratings into preferences", [*J, "--input", "stories.jsonl", "--out", "prefs.jsonl"],
         ("prefs.jsonl", "already holds preference records", "choose another output file")),
    Case("judge into other stories", [*J, "--input", "stories.jsonl", "--out", "run/stories.jsonl"],
         ("run/stories.jsonl", "already holds story records", "choose another output file")),
    Case("score into ratings", ["score", "--input", "stories.jsonl", "--out", "ratings.jsonl"],
         ("ratings.jsonl", "already holds rating records", "choose another")),
    Case("generate into ratings", ["generate", "--out", "ratings.jsonl"],
         ("ratings.jsonl", "already holds rating records", "choose another")),
    Case("generate out = pairs", ["generate", "--pairs", "pairs.jsonl", "--out", "pairs.jsonl"],
         ("pairs.jsonl", "also this command's input")),
    Case("judge into binary file", [*J, "--input", "stories.jsonl", "--out", "figure.png"],
         ("figure.png", "not a JSONL file of rating records", "choose another output file")),
    Case("generate into other settings", ["generate", "--pairs", "pairs.jsonl", "--out", "old.jsonl", "--conditions",
                                          "baseline", "--max-new-tokens", "32"],
         ("old.jsonl", "q0:baseline was made with other settings", "max_new_tokens 64 there vs 32 now",
          "pass another --out"),
         _rows("old.jsonl", [{**_story("q0", "baseline"), "settings": {"model": "embedded", "max_new_tokens": 64}}])),
    Case("generate out is a folder", ["generate", "--out", "folder"], ("folder", "is a folder", "pass a file path")),
    Case("out under a file", [*J, "--input", "stories.jsonl", "--out", "stories.jsonl/r.jsonl"],
         ("stories.jsonl/r.jsonl", "is a file, not a folder", "choose a path in a folder")),
    Case("out unwritable", [*J, "--input", "stories.jsonl", "--out", "/proc/creative-eval/r.jsonl"],
         ("/proc/creative-eval/r.jsonl", "choose a writable location")),
    Case("direction out exists", ["direction", "--out", "d.safetensors"],
         ("d.safetensors", "already exists", "pass a new path or delete")),
    Case("export out exists", ["export", "--format", "lm-eval-steered", "--out", "stories.jsonl"],
         ("stories.jsonl", "already exists", "pass a new path")),
    Case("export out = direction", ["export", "--format", "lm-eval-steered", "--direction", "d.safetensors",
                                    "--out", "d.safetensors"], ("d.safetensors", "already exists")),
    Case("annotate import into stories", ["annotate", "import", "labels.jsonl", "--pack", "folder", "--out",
                                          "stories.jsonl"], ("stories.jsonl", "already holds story records")),
    Case("annotate export into a file", ["annotate", "export", "--input", "stories.jsonl", "--out", "ratings.jsonl"],
         ("ratings.jsonl", "is a file", "pass a folder path")),
    Case("demo out is a file", ["demo", "--out", "stories.jsonl"], ("stories.jsonl", "is a file", "pass a folder")),
    Case("report root under a file", ["report", "run", "--out-root", "stories.jsonl"],
         ("stories.jsonl", "is a file, not a folder", "choose a path in a folder")),
    Case("report humans absent", ["report", "run", "--humans", "absent.csv"], ("absent.csv", "check the path")),
    Case("sweep plot is a folder", ["sweep", "--plot", "folder"], ("folder", "is a folder", "pass a file path")),
]


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: bad input must be refused before that work starts."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the model loader was called")

    monkeypatch.setattr(models, "load", refuse)


def _checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_clearly_and_harms_nothing(case, no_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    workspace(tmp_path)
    if case.setup:
        case.setup(tmp_path)
    before = _checksums(tmp_path)
    code, err = _run(case.argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    assert "error:" in err, err
    for word in case.words:
        assert word in err, f"{word!r} not in: {err}"
    after = _checksums(tmp_path)
    assert {k: after.get(k) for k in before} == before  # nothing that was there changed


def test_the_suite_covers_enough_cases_and_almost_all_are_clear():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names) >= 70
    assert sum(c.clear for c in CASES) / len(CASES) >= 0.95


def test_a_report_of_a_missing_input_makes_no_folder(tmp_path, capsys):
    code, err = _run(["report", str(tmp_path / "absent-run"), "--out-root", str(tmp_path / "reports")], capsys)
    assert code == 2 and "absent-run" in err and "not found" in err
    assert not (tmp_path / "reports").exists()
