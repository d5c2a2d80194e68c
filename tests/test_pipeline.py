"""The main job's stages on the tiny model: resumable stories."""

from __future__ import annotations

from creative_eval import direction
from creative_eval.steering import Steering, generate
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


def test_stories_resume_batch_by_batch(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    d = _direction(tiny)
    path = tmp_path / "stories.jsonl"
    kwargs = dict(steering=Steering(0.2), sampling=SAMPLING, model_id="tiny", direction_file="d.safetensors")
    first = generate.resume(path, model, tokenizer, PAIRS, d, **kwargs)
    assert [s.condition for s in first] == [c for c in CONDITIONS for _ in PAIRS]
    assert read_records(path, Story) == first
    assert first == generate.stories(model, tokenizer, PAIRS, d, **kwargs)  # appending changes nothing

    calls = []
    real = generate.generate
    monkeypatch.setattr(generate, "generate", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    assert generate.resume(path, model, tokenizer, PAIRS, d, **kwargs) == first
    assert calls == []  # everything was on disk
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # the last creative story is lost: its batch (of one pair) is made again
    assert generate.resume(path, model, tokenizer, PAIRS, d, **kwargs) == first
    assert calls == [1]

