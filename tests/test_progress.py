"""Progress that tells the truth: bars count finished units of work (stories, judgements, texts), start at what
was done before, and move only once a unit is done; one bar per phase; one closing line says kept and made."""

from __future__ import annotations

import pytest
import torch

from creative_eval import activations, direction, judges
from creative_eval.cli import generate as cli_generate
from creative_eval.probe import textstates
from creative_eval.records import Pair, Story
from creative_eval.steering import Steering, generate

PAIRS = [Pair(id=f"q{i}", creative=f"A dragon council argues about the rain, take {i}.",
              uncreative=f"A dragon council approves the minutes, take {i}.", split="test") for i in range(6)]


class Bar:
    """Stands in for tqdm: records how it was opened and every update, in one log shared with the test."""

    def __init__(self, log: list, *_, total=None, initial=0, **__):
        self.log, self.n, self.total = log, initial, total
        log.append(("open", total, initial))

    def update(self, n=1):
        self.n += n
        self.log.append(("update", n))

    def set_postfix_str(self, *_, **__):
        pass

    def close(self):
        self.log.append(("close", self.n))

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


@pytest.fixture
def bars(monkeypatch):
    log: list = []
    for module in (generate, judges):
        monkeypatch.setattr(module, "tqdm", lambda *a, **k: Bar(log, *a, **k))
    return log


def test_generate_bar_counts_stories_done_and_starts_at_those_kept(bars):
    done = {("baseline", "q0"), ("baseline", "q1"), ("induced", "q2"), ("induced", "q3"), ("induced", "q4")}
    it = generate.condition_batches(PAIRS, ("baseline", "induced"), 2, progress=True,
                                    done=lambda c, pair: (c, pair.id) in done)
    for condition, b, batch, _ in it:
        bars.append(("made", condition, b))
    assert bars[0] == ("open", 12, 5)  # 12 stories asked for, 5 already in the file
    made = [e for e in bars if e[0] == "made"]
    assert made == [("made", "baseline", 1), ("made", "baseline", 2), ("made", "induced", 0), ("made", "induced", 2)]
    # every batch moves the bar by its new stories after the caller took it in, never before
    assert bars[1:-1] == [e for m, n in zip(made, (2, 2, 2, 1)) for e in (m, ("update", n))]
    assert bars[-1] == ("close", 12)


def test_generate_closing_line_says_kept_and_made(tiny, tmp_path):
    model, tokenizer = tiny
    d = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny")
    out = tmp_path / "s.jsonl"
    how = dict(steering=Steering(0.3), sampling=generate.Sampling(max_new_tokens=3, batch_size=2), model_id="tiny")
    generate.resume(out, model, tokenizer, PAIRS[:2], d, conditions=["induced"], **how)
    kept = generate.check_out(out, PAIRS[:3], ["baseline", "induced"], steering=how["steering"],
                              sampling=how["sampling"], model_id="tiny")
    assert kept == 2
    stories = generate.resume(out, model, tokenizer, PAIRS[:3], d, conditions=["baseline", "induced"], **how)
    assert cli_generate.kept_and_made(stories, kept, str(out)).startswith(f"6 stories in {out} (2 kept, 4 made; ")
    assert generate.check_out(tmp_path / "none.jsonl", PAIRS, ["induced"], model_id="tiny",
                              steering=how["steering"], sampling=how["sampling"]) == 0


class Even(judges.Judge):
    def _ask(self, texts, labels):
        return [([1.0 / len(labels)] * len(labels), None) for _ in texts]


def test_judge_run_bar_counts_judgements_and_starts_at_those_stored(bars, tmp_path):
    stories = [Story(prompt_id=f"p{i}", condition="induced", prompt="Write.", text=f"Story {i}.") for i in range(5)]
    out = tmp_path / "r.jsonl"
    judges.run(Even("even", min_label_mass=0.0), "rating", stories[:3], out, chunk=2, progress=True)
    assert bars == [("open", 3, 0), ("update", 2), ("update", 1), ("close", 3)]
    bars.clear()
    judges.run(Even("even", min_label_mass=0.0), "rating", stories, out, chunk=2, progress=True)
    assert bars == [("open", 5, 3), ("update", 2), ("close", 5)]


def test_a_judge_asked_for_progress_shows_one_bar_over_its_prompts(tiny, capsys):
    model, tokenizer = tiny
    judge = judges.load_judge("embedded", model, tokenizer)
    stories = [Story(prompt_id=f"p{i}", condition="induced", prompt="Write.", text=f"Story {i}.") for i in range(3)]
    judge.rate(stories)
    assert "prompt" not in capsys.readouterr().err
    judge.progress = True
    judge.rate(stories)
    err = capsys.readouterr().err
    assert f"{judge.id}: 100%" in err and f"{3 * len(judge.templates.rate)}/{3 * len(judge.templates.rate)}" in err


def test_score_controls_read_both_token_rules_in_one_pass(tiny, monkeypatch):
    model, tokenizer = tiny
    d = direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny")
    stories = [Story(prompt_id=p.id, condition="induced", prompt=p.creative, text="The rain argued back.") for p in PAIRS]
    prompts, texts = [s.prompt for s in stories], [s.text for s in stories]
    apart = [textstates.read(model, tokenizer, prompts, texts, [d.layer], tokens=rule, template=d.template)[d.layer]
             for rule in ("input+response", "response")]
    calls = []
    real = activations.batches
    monkeypatch.setattr(activations, "batches", lambda *a, **k: calls.append(1) or real(*a, **k))
    same, cross = textstates.story_states(model, tokenizer, stories, d, "input+response")
    assert len(calls) == 1
    for got, want in zip((same, cross), apart):
        assert torch.equal(got.mean, want.mean) and torch.equal(got.unit, want.unit)
        assert torch.equal(got.n_tokens, want.n_tokens)


def test_the_lm_eval_judge_shares_the_evaluated_models_weights_when_it_names_that_model(tiny, monkeypatch):
    """One copy in memory: an hf judge naming the evaluated model (same dtype) judges on its weights, and shows its
    bar; another model, or another dtype, is loaded as its own."""
    from types import SimpleNamespace

    from creative_eval import models
    from creative_eval.harness import tasks

    model, tokenizer = tiny
    loads = []
    monkeypatch.setattr(models, "load", lambda *a, **k: loads.append(a) or (model, tokenizer))
    monkeypatch.setattr(tasks.SteeredHF, "live", SimpleNamespace(model_id="embedded", model=model, tokenizer=tokenizer))
    judge = tasks.CreativeTask._load_judge(None, {"judge": "embedded"})
    assert judge.model is model and loads == [] and judge.progress
    tasks.CreativeTask._load_judge(None, {"judge": "embedded-quality"})
    assert loads == []
    monkeypatch.setattr(tasks.SteeredHF, "live", SimpleNamespace(model_id="other", model=model, tokenizer=tokenizer))
    tasks.CreativeTask._load_judge(None, {"judge": "embedded"})
    assert len(loads) == 1
    monkeypatch.setattr(tasks.SteeredHF, "live", SimpleNamespace(model_id="embedded", model=model.to(torch.bfloat16),
                                                                 tokenizer=tokenizer))
    try:
        tasks.CreativeTask._load_judge(None, {"judge": "embedded"})
        assert len(loads) == 2
    finally:
        model.to(torch.float32)


def test_judge_and_score_closing_lines_say_kept_and_made(tiny, tmp_path, monkeypatch, capsys):
    """`judge` and `score --out` end with what the file holds and how much of it this run made."""
    from creative_eval import cli, models
    from creative_eval.records import write_jsonl

    model, tokenizer = tiny
    monkeypatch.setattr(models, "load", lambda *a, **k: (model, tokenizer))
    d = direction.save(direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny"), tmp_path / "d.safetensors")
    stories = [Story(prompt_id=p.id, condition=c, prompt=p.creative, text=f"The rain {c} {p.id}.")
               for p in PAIRS[:3] for c in ("baseline", "induced")]
    write_jsonl(tmp_path / "few.jsonl", [s for s in stories if s.prompt_id == "q0"])
    write_jsonl(tmp_path / "all.jsonl", stories)
    rate = ["judge", "--judge", "self", "--mode", "rating", "--out", str(tmp_path / "r.jsonl"), "--input"]
    score = ["score", "--direction", str(d), "--out", str(tmp_path / "sc.jsonl"), "--input"]
    for argv, line in ((rate, "judgements in"), (score, "probe scores in")):
        assert cli.main([*argv, str(tmp_path / "few.jsonl")]) == 0
        assert f"2 {line} " in capsys.readouterr().out
        assert cli.main([*argv, str(tmp_path / "all.jsonl")]) == 0
        assert f"6 {line} {tmp_path}" in (out := capsys.readouterr().out) and "(2 kept, 4 made; " in out
