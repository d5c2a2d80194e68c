"""The main job's stages on the tiny model: resumable stories."""

from __future__ import annotations

from creative_eval import direction, generate, pipeline
from creative_eval.records import CONDITIONS, Pair, Story, read_records

PAIRS = [
    Pair(id="a", creative="The space tanker crashes and spills its cargo. Write a news story.",
         uncreative="The space tanker delivers its cargo without incident. Write a news story.", split="test"),
    Pair(id="b", creative="A dragon council argues about the rain.", uncreative="A dragon council meets and approves the minutes.", split="test"),
    Pair(id="c", creative="Once upon a time a clock argued about the rain.", uncreative="Once upon a time a clock showed the time.", split="test"),
]
SAMPLING = generate.Sampling(max_new_tokens=4, seed=3, batch_size=2)


def _direction(tiny):
    model, tokenizer = tiny
    return direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny")


def test_stories_resume_per_condition(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    d = _direction(tiny)
    path = tmp_path / "stories.jsonl"
    kwargs = dict(alpha=0.2, sampling=SAMPLING, model_id="tiny", direction_file="d.safetensors")
    first = pipeline.resumable_stories(path, model, tokenizer, PAIRS, d, **kwargs)
    assert [s.condition for s in first] == [c for c in CONDITIONS for _ in PAIRS]
    assert read_records(path, Story) == first

    calls = []
    real = generate.stories
    monkeypatch.setattr(generate, "stories", lambda *a, **k: calls.append(k["conditions"]) or real(*a, **k))
    assert pipeline.resumable_stories(path, model, tokenizer, PAIRS, d, **kwargs) == first
    assert calls == []  # everything was on disk
    # another lambda only redoes the steered condition
    again = pipeline.resumable_stories(path, model, tokenizer, PAIRS, d, **{**kwargs, "alpha": 0.4})
    assert calls == [["induced"]]
    assert [s for s in again if s.condition != "induced"] == [s for s in first if s.condition != "induced"]
    # both lambdas are on disk now; each resume reads back only its own
    assert pipeline.resumable_stories(path, model, tokenizer, PAIRS, d, **kwargs) == first
    assert calls == [["induced"]]
