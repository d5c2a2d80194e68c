"""The records that flow between stages, and their one file format: JSON Lines, one record per line.

Appends are flushed and fsync'ed line by line so that a killed process loses nothing it finished.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

CONDITIONS = ("baseline", "induced", "creative")


@dataclass(frozen=True, kw_only=True)
class Pair:
    """A creative prompt and its negation: same topic and form, nothing creative left."""

    id: str
    creative: str
    uncreative: str
    split: str
    kind: str = "ordinary"
    form: str = ""


@dataclass(kw_only=True)
class Story:
    """One story. `condition` is baseline (negated prompt), induced (negated prompt, steered) or creative
    (creative prompt) for generated stories, or a source label (human, a model's name) for people's data;
    `settings` records everything needed to regenerate it."""

    prompt_id: str
    condition: str
    prompt: str
    text: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return story_id(self.prompt_id, self.condition)


def story_id(prompt_id: str, condition: str) -> str:
    """`<prompt_id>:<condition>`: the one spelling of a story id (prompt ids may hold colons, conditions not)."""
    return f"{prompt_id}:{condition}"


def split_story_id(sid: str) -> tuple[str, str]:
    """(prompt_id, condition) of a story id."""
    prompt_id, _, condition = sid.rpartition(":")
    return prompt_id, condition


@dataclass(kw_only=True)
class Rating:
    """A judge's rating of one story; `status` is "ok" or "invalid: <reason>".

    LLM judges fill `expected` (the 0-9 expectation over the digit tokens), `argmax` and `probs`; the probe
    judge fills `score` (its cosine) and `expected` only when its preset maps scores onto 0-9."""

    judge: str
    story_id: str
    expected: float | None = None
    argmax: int | None = None
    probs: list[float] | None = None
    score: float | None = None
    status: str = "ok"
    raw: str | None = None
    template_hash: str = ""
    latency_s: float = 0.0


@dataclass(kw_only=True)
class Preference:
    """A judge's choice between two stories of one prompt, asked in both orders.

    LLM judges fill p_first_ab = P(first is more creative) with A shown first, p_first_ba with B shown first,
    and p_a = P(A is preferred), averaged over both orders = (p_first_ab + 1 - p_first_ba) / 2, which cancels
    the judge's position bias; the probe judge fills `margin` = score(A) - score(B). decision is "A", "B" or
    "tie" (p_a or the margin within the judge's tie band). `consistent`: both orders named the same story
    (a diagnostic of position bias, not a condition of the decision)."""

    judge: str
    pair_id: str
    story_a: str
    story_b: str
    decision: str | None
    consistent: bool | None
    p_first_ab: float | None = None
    p_first_ba: float | None = None
    p_a: float | None = None
    margin: float | None = None
    status: str = "ok"
    template_hash: str = ""
    latency_s: float = 0.0


@dataclass(kw_only=True)
class HumanLabel:
    """A human judgement: a pairwise choice ("A"/"B"/"tie") between stories, or a rating of one story."""

    item_id: str
    story_a: str
    story_b: str | None = None
    choice: str | None = None
    rating: float | None = None
    rater: str = ""
    comment: str = ""


R = TypeVar("R")


def to_dict(record: Any) -> dict[str, Any]:
    return dataclasses.asdict(record)


def write_jsonl(path: str | Path, records: Iterable[Any]) -> Path:
    """Write records (dataclasses or dicts) to a fresh JSONL file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r if isinstance(r, dict) else to_dict(r), ensure_ascii=False) + "\n")
    return path


def mend_tail(path: str | Path) -> None:
    """Make the file end on a whole line: cut a torn last line (a writer killed mid-record), or add the newline
    a whole last record lacks, so the next append cannot glue a record onto a fragment. Costs one byte read
    when the file is already whole."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0 or (f.seek(size - 1), f.read(1))[1] == b"\n":
            return
        f.seek(0)
        data = f.read()
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
            f.write(b"\n")
        except ValueError:
            f.truncate(start)
        f.flush()
        os.fsync(f.fileno())


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one record durably (flush + fsync), so a crash right after loses nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mend_tail(path)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record if isinstance(record, dict) else to_dict(record), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object); a torn last line (a killed writer) is skipped, other bad lines raise."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                return
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg}); fix or delete that line") from None


def from_dict(cls: type[R], obj: dict[str, Any]) -> R:
    """A record from a dict that may carry extra fields (e.g. a store's key)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in obj.items() if k in names})


def read_records(path: str | Path, cls: type[R]) -> list[R]:
    """Read a JSONL file of one record type, naming the file and line of any record that does not fit."""
    out = []
    for i, obj in iter_jsonl(path):
        try:
            out.append(from_dict(cls, obj))
        except TypeError as e:
            raise ValueError(f"{path}:{i}: not a {cls.__name__} record ({e})") from None
    return out
