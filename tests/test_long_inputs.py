"""Long stories are cut to each backend's input limit, the cut recorded on the record and counted in the report."""

from __future__ import annotations

import json

import pytest

from creative_eval import activations, direction, judges, models, report
from creative_eval import cli
from creative_eval.judges import limits
from creative_eval.probe import Probe
from creative_eval.records import Pair, Story

LONG = "Once upon a time a dog, a cat and a clock argued about the rain. " * 400  # ~26,000 characters
PAIRS = [Pair(id=f"a{i}", creative=f"A dragon council argues, take {i}.", uncreative=f"A council meets, take {i}.",
              split="test") for i in range(3)]


def _story(pid: str, text: str, condition: str = "baseline") -> Story:
    return Story(prompt_id=pid, condition=condition, prompt="Write a news story.", text=text)


def _judge_tokens(judge, item) -> int:
    text = (judge.templates.compare[0].format(prompt=item.a.prompt, first=item.a.text, second=item.b.text)
            if isinstance(item, judges.PairItem) else judge.templates.rate[0].format(prompt=item.prompt, story=item.text))
    return len(judge.tokenizer(activations.render(judge.tokenizer, text, None, True))["input_ids"])


def test_limit_is_the_smaller_of_preset_and_context(tiny):
    model, _ = tiny
    assert limits.context_limit(model, None) == min(limits.DEFAULT_MAX_INPUT_TOKENS, model.config.max_position_embeddings)
    assert limits.context_limit(model, 100) == 100


@pytest.mark.parametrize("pairwise", [False, True])
def test_hf_judge_cuts_a_long_story_to_fit_and_records_the_cut(tiny, tmp_path, pairwise):
    model, tokenizer = tiny
    # a random model's labels hold only chance mass (2/vocab): no floor here, test_label_mass tests it
    judge = judges.load_judge({**judges.presets.load("embedded"), "min_label_mass": 0.0}, model, tokenizer)
    assert judge.max_input_tokens == model.config.max_position_embeddings == 512
    short = _story("p1", "A short story.", "induced")
    item = judges.PairItem(short, _story("p1", LONG)) if pairwise else _story("p1", LONG)
    fitted, cut = limits.fit(judge, item)
    assert cut > 1000 and _judge_tokens(judge, fitted) <= judge.max_input_tokens
    assert limits.fit(judge, short) == (short, 0)
    mode = "pairwise" if pairwise else "rating"
    records = judges.run(judge, mode, [item], tmp_path / "out.jsonl")
    assert [r["truncated_tokens"] for r in records] == [cut] and records[0]["status"] == "ok"
    run = report.load_runs([tmp_path / "out.jsonl"])
    assert run.notes == {"out.jsonl: stories cut to the input limit": "1"}


def test_a_prompt_that_fills_the_limit_is_refused(tiny):
    model, tokenizer = tiny
    judge = judges.load_judge("embedded", model, tokenizer)
    judge.max_input_tokens = 20
    with pytest.raises(ValueError, match="p1:baseline: its prompt alone fills .* raise `max_input_tokens`"):
        limits.fit(judge, _story("p1", "x"))


def test_probe_reads_at_most_max_length_tokens_and_counts_the_rest(tiny):
    model, tokenizer = tiny
    d = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny")
    whole, cut = Probe(model, tokenizer, d, max_length=None), Probe(model, tokenizer, d, max_length=64)
    full = whole.score(["Write."], [LONG[:2000]])[0]
    part = cut.score(["Write.", "Write."], [LONG[:2000], "Short."])
    assert full.truncated_tokens == 0 and part[1].truncated_tokens == 0
    assert part[0].truncated_tokens > 0 and part[0].n_tokens < full.n_tokens


def test_score_command_records_and_announces_the_cut(tiny, tmp_path, monkeypatch, capsys):
    model, tokenizer = tiny
    monkeypatch.setattr(models, "load", lambda *_a, **_k: tiny)
    path = tmp_path / "d.safetensors"
    direction.save(direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny"), path)
    stories = tmp_path / "s.jsonl"
    stories.write_text("".join(json.dumps({"prompt_id": f"p{i}", "condition": "baseline", "prompt": "Write.",
                                           "text": text}) + "\n" for i, text in enumerate([LONG, "Short."])))
    out = tmp_path / "scores.jsonl"
    argv = ["score", "--input", str(stories), "--direction", str(path), "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 stories are longer than the probe's 2048 tokens" in printed
    assert f"2 probe scores in {out}" in printed
    first = out.read_bytes()
    rows = [json.loads(line) for line in first.splitlines()]
    assert [r["truncated_tokens"] > 0 for r in rows] == [True, False]
    assert cli.main(argv) == 0 and out.read_bytes() == first  # a re-run resumes: nothing appended
