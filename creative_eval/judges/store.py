"""Judgements persisted as they are made (JSONL, flush + fsync per record) and the resume keys.

Key = judge id, template hash, prompt and story hashes, and order: a re-run skips every finished key."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

from ..records import Preference, Rating, Story, append_jsonl, iter_jsonl
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


def drop_torn_tail(path: str | Path) -> None:
    """Cut a last line without its newline (a writer killed mid-record), so the next append starts a fresh
    line instead of gluing a valid record onto the fragment (which would corrupt the middle of the file).
    A last line that is a whole record missing only its newline is kept and completed."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
            f.write(b"\n")
        except ValueError:
            f.truncate(start)
        f.flush()
        os.fsync(f.fileno())


def append(path: str | Path, key: str, record: Rating | Preference) -> None:
    from ..records import to_dict

    append_jsonl(path, {"key": key, **to_dict(record)})


def records(path: str | Path) -> Iterable[dict]:
    return (obj for _, obj in iter_jsonl(path))
