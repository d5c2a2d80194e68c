"""Keyed JSONL stores: records appended as they are made (flush + fsync, under the file's lock held by the
caller), resumed by key. A key names what makes a record reusable (who judged or scored, how, and hashes of the
texts); reading keeps the first record of each key, so a file two unlocked writers once filled still counts each
record once. Judgements (`judges.store`) and probe scores (`probe.store`) are both kept this way."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

from creative_eval.records import append_jsonl, iter_jsonl, to_dict


def text_hash(text: str) -> str:
    """The short hash of a prompt or story that keys use."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def append(path: str | Path, key: str, record: Any) -> None:
    """One record (a dataclass or a dict) stored under `key`."""
    append_jsonl(path, {"key": key, **(record if isinstance(record, dict) else to_dict(record))})


def records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of the first record of each key (a torn last line from a killed writer is
    ignored); nothing for a file that does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return
    seen: set[str] = set()
    for i, obj in iter_jsonl(path):
        key = obj.get("key")
        if key is None or key not in seen:
            seen.add(key)
            yield i, obj


def done(path: str | Path) -> dict[str, dict[str, Any]]:
    """Key -> the stored record, for skipping what is finished."""
    return {obj["key"]: obj for _, obj in records(path) if "key" in obj}
