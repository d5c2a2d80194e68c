"""Probe scores of stories in the keyed store (`score --out`): appended as made under the file's lock, resumed
by key.

A record is {key, story_id, condition, probe, n_tokens, truncated_tokens}; the key names the direction (a hash of
its vector), the counted tokens and the prompt and story texts, so a re-run skips what is there, and a file
holding another direction's scores is refused rather than mixed into."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from creative_eval import outputs, store
from creative_eval.probe.score import Probe, ProbeScore
from creative_eval.records import Story


def scorer_id(probe: Probe) -> str:
    """What makes two scores comparable: the direction's vector and layer, and the counted tokens."""
    vector = hashlib.sha256(probe.direction.vector.float().numpy().tobytes()).hexdigest()[:12]
    return f"probe-L{probe.direction.layer}-{vector}-{probe.tokens}-max{probe.max_length}"


def resume(path: str | Path, probe: Probe, stories: Sequence[Story], chunk: int = 32,
           progress: bool = False) -> list[ProbeScore]:
    """One ProbeScore per story: read back when stored with this scorer, else computed and appended."""
    sid = scorer_id(probe)
    with outputs.writing(path):
        done = _done(Path(path), sid)
        todo = [s for s in stories if _key(sid, s) not in done]
        with tqdm(total=len(stories), initial=len(stories) - len(todo), disable=not progress, desc="probe",
                  unit="story") as bar:
            for k in range(0, len(todo), chunk):
                part = todo[k : k + chunk]
                for s, p in zip(part, probe.score([s.prompt for s in part], [s.text for s in part])):
                    key = _key(sid, s)
                    record = {"story_id": s.id, "condition": s.condition, "probe": p.score,
                              "n_tokens": p.n_tokens, "truncated_tokens": p.truncated_tokens}
                    store.append(path, key, record)
                    done[key] = record
                bar.update(len(part))
    return [_score(done[_key(sid, s)]) for s in stories]


def kept(path: str | Path, probe: Probe, stories: Sequence[Story]) -> int:
    """How many of `stories` already have this probe's score in `path` (`resume` keeps them)."""
    if not Path(path).is_file():
        return 0
    sid = scorer_id(probe)
    done = _done(Path(path), sid)
    return sum(_key(sid, s) in done for s in stories)


def _key(sid: str, story: Story) -> str:
    return f"{sid}|{store.text_hash(story.prompt)}|{store.text_hash(story.text)}"


def _done(path: Path, sid: str) -> dict[str, dict]:
    done: dict[str, dict] = {}
    for i, obj in store.records(path):
        other = str(obj.get("key", "")).split("|")[0]
        if other != sid:
            raise ValueError(f"{path}:{i}: holds scores of another probe ({other or 'no key'}, not {sid}); "
                             "pass another --out")
        done[obj["key"]] = obj
    return done


def _score(record: dict) -> ProbeScore:
    return ProbeScore(score=record["probe"], trace=[], n_tokens=record["n_tokens"],
                      truncated_tokens=record.get("truncated_tokens", 0))
