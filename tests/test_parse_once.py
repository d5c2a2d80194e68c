"""Following a setting from the command line: lambda, a judge preset and a direction file are each checked and
read once, where they are made, and carried whole to the code that uses them."""

from __future__ import annotations

import json

import pytest

from creative_eval import cli, direction, models
from creative_eval.judges import presets
from creative_eval.records import Pair, Story, write_jsonl
from creative_eval.steering import settings

PAIRS = [Pair(id=f"o{i}", creative=f"A clock that runs on birdsong, take {i}.",
              uncreative=f"A clock that runs on batteries, take {i}.", split="test") for i in range(3)]


def _counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapped(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr(module, name, wrapped)
    return calls


@pytest.fixture
def files(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(models, "load", lambda *a, **k: tiny)
    d = direction.save(direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny"), tmp_path / "d.safetensors")
    stories = write_jsonl(tmp_path / "s.jsonl", [Story(prompt_id=p.id, condition="baseline", prompt=p.uncreative,
                                                       text="It ticked.") for p in PAIRS])
    return d, stories, tmp_path


def test_a_direction_file_is_read_once(files, monkeypatch):
    d, stories, tmp_path = files
    opened = _counting(monkeypatch, direction, "safe_open")
    assert cli.main(["score", "--input", str(stories), "--direction", str(d)]) == 0
    assert [str(a[0]) for a in opened] == [str(d)]  # safetensors' reader, once


def test_lambda_is_checked_once_on_the_way_to_the_stories(files, monkeypatch):
    d, _, tmp_path = files
    checked = _counting(monkeypatch, settings, "check")
    out = tmp_path / "g.jsonl"
    pairs_file = write_jsonl(tmp_path / "p.jsonl", [*PAIRS, *[Pair(id=f"v{i}", creative=p.creative,
                                                                   uncreative=p.uncreative, split="validation")
                                                              for i, p in enumerate(PAIRS)]])
    code = cli.main(["generate", "--direction", str(d), "--pairs", str(pairs_file), "--alpha", "0.3",
                     "--max-new-tokens", "2", "--out", str(out)])
    assert code == 0 and checked == [(0.3, "relative", "all")]
    assert {(s["condition"], s["settings"]["alpha"]) for s in map(json.loads, out.open())} == {
        ("baseline", 0.0), ("induced", 0.3), ("creative", 0.0)}


def test_a_judge_preset_is_read_once(files, monkeypatch):
    _, stories, tmp_path = files
    loaded = _counting(monkeypatch, presets, "load")
    cli.main(["judge", "--judge", "embedded", "--input", str(stories), "--out", str(tmp_path / "r.jsonl")])
    assert loaded == [("embedded",)]


def test_score_without_out_says_how_to_keep_the_scores(files, capsys):
    d, stories, _ = files
    assert cli.main(["score", "--input", str(stories), "--direction", str(d)]) == 0
    assert "scores were not kept: add --out" in capsys.readouterr().out
