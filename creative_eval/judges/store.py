"""Judgements in the keyed store (`creative_eval.store`): the resume keys of ratings and of pairwise preferences.

Key = judge id, template hash, prompt and story hashes, and order: a re-run skips every finished key."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from creative_eval import store
from creative_eval.judges.base import PairItem
from creative_eval.records import Preference, Rating, Story

_h = store.text_hash


def rating_key(judge_id: str, template_hash: str, story: Story) -> str:
    return f"{judge_id}|{template_hash}|{_h(story.prompt)}|{_h(story.text)}"


def pair_key(judge_id: str, template_hash: str, item: PairItem) -> str:
    return f"{judge_id}|{template_hash}|{_h(item.a.prompt)}|{_h(item.a.text)}|{_h(item.b.text)}|ab+ba"


def done_keys(path: str | Path) -> set[str]:
    """Keys already in the store."""
    return set(store.done(path))


def append(path: str | Path, key: str, record: Rating | Preference) -> None:
    store.append(path, key, record)


def records(path: str | Path) -> Iterator[dict]:
    """The stored records, the first of each key only."""
    return (obj for _, obj in store.records(path))
