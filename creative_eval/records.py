"""The records that flow between stages, and their one file format: JSON Lines, one record per line.

Appends are flushed and fsync'ed line by line so that a killed process loses nothing it finished. Files from other
tools are read as they come: a UTF-8 byte-order mark, CRLF line ends and a last line without its newline are
accepted, and ids (prompt ids, conditions, story ids) are normalised to Unicode NFC when read, so an id typed on
one system matches the same id written on another.
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

CONDITIONS = ("baseline", "induced", "creative")
POOLINGS = ("mean", "last")  # how a prompt's token states become one vector (activations)
LENGTH_CONTROLS = ("none", "residual")  # how the human-calibrated direction is kept from reading length (calibration)
TOKENS = ("input+response", "response", "prompt")  # the tokens a probe score averages over (probe)


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
    """A judge's rating of one story; `status` is "ok" or "invalid: <reason>"; `truncated_tokens` counts the
    story tokens cut to fit the judge's input limit (0: the judge read it whole).

    LLM judges fill `expected` (the 0-9 expectation over the digit tokens), `argmax`, `probs` and `label_mass`
    (the digits' total probability before renormalising; below `judges.base.MIN_LABEL_MASS` the judge answered
    something else and the rating is invalid); the probe judge fills `score` (its cosine) and `expected` only
    when its preset maps scores onto 0-9."""

    judge: str
    story_id: str
    expected: float | None = None
    argmax: int | None = None
    probs: list[float] | None = None
    score: float | None = None
    label_mass: float | None = None
    status: str = "ok"
    raw: str | None = None
    template_hash: str = ""
    latency_s: float = 0.0
    truncated_tokens: int = 0


@dataclass(kw_only=True)
class Preference:
    """A judge's choice between two stories of one prompt, asked in both orders.

    LLM judges fill p_first_ab = P(first is more creative) with A shown first, p_first_ba with B shown first,
    and p_a = P(A is preferred), averaged over both orders = (p_first_ab + 1 - p_first_ba) / 2, which cancels
    the judge's position bias; the probe judge fills `margin` = score(A) - score(B). decision is "A", "B" or
    "tie" (p_a or the margin within the judge's tie band). `consistent`: both orders named the same story
    (a diagnostic of position bias, not a condition of the decision). `label_mass`: the smallest total
    probability of the labels "1"/"2" over both orders (LLM judges)."""

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
    label_mass: float | None = None
    status: str = "ok"
    template_hash: str = ""
    latency_s: float = 0.0
    truncated_tokens: int = 0


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
            json.loads(data[start:].decode("utf-8-sig"))  # a cut multi-byte character is a torn line too
            f.write(b"\n")
        except ValueError:
            f.truncate(start)
        f.flush()
        os.fsync(f.fileno())


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one record durably (fsync), so a crash right after loses nothing.

    The line goes out in one write() call, so a signal handler (Ctrl-C) runs before or after it, never inside
    it. A write the disk cannot take (no space, a file-size limit) is cut back to the last whole record and
    raised as an OSError naming the file; a process killed mid-write leaves a partial line that `mend_tail`
    cuts before the next append."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record if isinstance(record, dict) else to_dict(record), ensure_ascii=False) + "\n").encode()
    mend_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    start, written = os.fstat(fd).st_size, 0
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write: the disk is full or a size limit reached; the next one says which
            written += os.write(fd, data[written:])
        os.fsync(fd)
    except OSError as e:
        _cut(fd, start, written, len(data))
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        _cut(fd, start, written, len(data))
        raise
    finally:
        os.close(fd)


def _cut(fd: int, start: int, written: int, size: int) -> None:
    """Take back a partly written line, so the file ends on its last whole record."""
    if 0 < written < size:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass  # mend_tail cuts it before the next append


def read_text(path: Path, error: type[Exception] = ValueError) -> str:
    """A user file's text: UTF-8, with or without the byte-order mark many editors and spreadsheet exports write;
    any other encoding is refused, naming the line of the first bad byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 (byte {e.start}); re-save the file as UTF-8") from None


def json_lines(text: str) -> list[str]:
    """The lines of a JSONL text, LF or CRLF ended. Only a newline ends a line: U+2028, U+0085 and the like may
    stand unescaped inside a JSON string (json.dumps with ensure_ascii=False writes them so), where
    str.splitlines would cut the record in two."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object); a torn last line (a killed writer: no newline after it and not valid JSON)
    is skipped, a whole last line without its newline is read, other bad lines raise, naming the file and line."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; pass a JSONL file")
    text = read_text(path)
    lines = json_lines(text)
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) and not text.endswith("\n"):
                return
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg}); fix or delete that line") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{i}: a JSON {type(obj).__name__}, not an object; write one JSON object "
                             "({...}) per line")
        yield i, obj


ID_FIELDS = ("id", "prompt_id", "condition", "story_id", "pair_id", "story_a", "story_b", "item_id")


def nfc(text: str) -> str:
    """An id in Unicode NFC: "café" typed on one system and "cafe\u0301" written by another are one id."""
    return unicodedata.normalize("NFC", text)


def nfc_ids(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with its id fields in NFC (texts are left as written: their hashes key the stores)."""
    return {k: nfc(v) if k in ID_FIELDS and isinstance(v, str) else v for k, v in obj.items()}


def from_dict(cls: type[R], obj: dict[str, Any]) -> R:
    """A record from a dict that may carry extra fields (e.g. a store's key); ids are read in NFC."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in nfc_ids(obj).items() if k in names})


def read_records(path: str | Path, cls: type[R]) -> list[R]:
    """Read a JSONL file of one record type, naming the file and line of any record that does not fit."""
    out = []
    for i, obj in iter_jsonl(path):
        try:
            out.append(from_dict(cls, obj))
        except TypeError as e:
            missing = sorted({f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                              if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
                             - set(obj))
            why = f"missing field(s) {missing}" if missing else str(e)
            raise ValueError(f"{path}:{i}: not a {cls.__name__} record ({why}); is this the right file?") from None
    return out


KINDS = {  # the fields that identify a record type in a JSONL file, most specific first
    "rating": {"judge", "story_id", "status"},
    "preference": {"judge", "pair_id", "decision"},
    "story": {"prompt_id", "condition", "text"},
    "probe": {"story_id", "probe"},
    "human": {"item_id", "story_a"},
}


def record_kind(obj: dict[str, Any]) -> str | None:
    """Which record type a JSON object is (a key of KINDS), or None."""
    return next((kind for kind, needed in KINDS.items() if needed <= set(obj)), None)


def file_kind(path: str | Path) -> str | None:
    """The record type of a JSONL file's first record; None for an empty file; a file of unknown records raises."""
    first = next(iter_jsonl(path), None)
    if first is None:
        return None
    kind = record_kind(first[1])
    if kind is None:
        raise ValueError(f"{path}:{first[0]}: records with fields {sorted(first[1])} are not stories, ratings, "
                         "preferences, probe scores or human labels; pass a creative-eval JSONL file")
    return kind


class FirstLines(dict):
    """id -> the line of a file it first appeared on; `add` refuses an id a second time, naming both lines (one
    record per id, in every file the project reads)."""

    def __init__(self, path: str | Path, what: str, fix: str, error: type[Exception] = ValueError):
        super().__init__()
        self.path, self.what, self.fix, self.error = path, what, fix, error
        self.spelled: dict[str, str] = {}

    def add(self, ident: str, line: int, raw: str | None = None) -> None:
        """`ident` in NFC; `raw`, the id as the file spells it, tells two spellings of one id apart."""
        raw = ident if raw is None else raw
        if ident in self:
            how = (" (the two lines spell it with different Unicode code points, the same text once normalised to "
                   "NFC)" if raw != self.spelled[ident] else "")
            raise self.error(f"{self.path}:{line}: duplicate id {ident!r}: {self.what} {ident} again (first on line "
                             f"{self[ident]}){how}; {self.fix}")
        self[ident] = line
        self.spelled[ident] = raw


def read_stories(path: str | Path) -> list[Story]:
    """Stories to judge or score, each checked: text fields non-empty strings, one story per id; an empty file
    is refused (there is nothing to do, and silence would look like success)."""
    out: list[Story] = []
    seen = FirstLines(path, "story", "keep one story per prompt_id and condition")
    for i, obj in iter_jsonl(path):
        for name in ("prompt_id", "condition", "prompt", "text"):
            value = obj.get(name)
            if not isinstance(value, str):
                raise ValueError(f"{path}:{i}: field {name!r} is {'missing' if value is None else repr(value)[:40]}; "
                                 "every story needs prompt_id, condition, prompt and text as strings (a stories file "
                                 "from `creative-eval generate`)")
            if not value.strip():
                raise ValueError(f"{path}:{i}: field {name!r} is empty; give every story a non-empty {name} "
                                 "or delete that line")
        if ":" in obj["condition"]:
            raise ValueError(f"{path}:{i}: condition {obj['condition']!r} holds a colon; rename it (story ids are "
                             "<prompt_id>:<condition>)")
        story = from_dict(Story, obj)
        seen.add(story.id, i, story_id(obj["prompt_id"], obj["condition"]))
        out.append(story)
    if not out:
        raise ValueError(f"{path}: no stories; pass a stories JSONL file from `creative-eval generate`")
    return out
