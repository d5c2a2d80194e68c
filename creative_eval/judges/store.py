"""Judgements persisted as they are made (JSONL, flush + fsync per record) and the resume keys.

Key = judge id, template hash, prompt and story hashes, and order: a re-run skips every finished key. Writers
hold the file's lock (`outputs.writing`); reading keeps the first record of a key, so a file that two
unlocked writers once filled still counts each judgement once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from ..records import Preference, Rating, Story, append_jsonl, iter_jsonl, to_dict
from .base import PairItem


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rating_key(judge_id: str, template_hash: str, story: Story) -> str:
    return f"{judge_id}|{template_hash}|{_h(story.prompt)}|{_h(story.text)}"


def pair_key(judge_id: str, template_hash: str, item: PairItem) -> str:
    return f"{judge_id}|{template_hash}|{_h(item.a.prompt)}|{_h(item.a.text)}|{_h(item.b.text)}|ab+ba"


def done_keys(path: str | Path) -> set[str]:
    """Keys already in the store (a torn last line from a killed writer is ignored)."""
    path = Path(path)
    return {obj["key"] for _, obj in iter_jsonl(path) if "key" in obj} if path.is_file() else set()


def append(path: str | Path, key: str, record: Rating | Preference) -> None:
    append_jsonl(path, {"key": key, **to_dict(record)})


def records(path: str | Path) -> Iterator[dict]:
    """The stored records, the first of each key only."""
    seen: set[str] = set()
    for _, obj in iter_jsonl(path):
        key = obj.get("key")
        if key is None or key not in seen:
            seen.add(key)
            yield obj
