"""Contrastive prompt pairs: the shipped sets and user files (JSONL or CSV), validated line by line.

Schema, one pair per line: {"id", "creative", "uncreative", "split"} plus optional "kind" and "form".
The shipped `pairs.jsonl` has splits "validation" (the direction is found here) and "test" (it is
measured here); `robustness.jsonl` holds vocabulary-swapped pairs that are never used to find a direction.
"""

from __future__ import annotations

import csv
import hashlib
import json
from importlib import resources
from pathlib import Path

from .records import Pair

SHIPPED = "pairs"
ROBUSTNESS = "robustness"
REQUIRED = ("id", "creative", "uncreative", "split")


class PairsError(ValueError):
    """A pairs file that cannot be used; the message names the file, the line and the fix."""


def path_of(source: str | Path) -> Path:
    """`pairs` and `robustness` name the shipped sets; anything else is a file path."""
    if str(source) in (SHIPPED, ROBUSTNESS):
        return Path(str(resources.files("creative_eval") / "data" / f"{source}.jsonl"))
    path = Path(source)
    if not path.is_file():
        raise PairsError(f"{path}: no such pairs file; pass a JSONL/CSV path or one of {SHIPPED!r}, {ROBUSTNESS!r}")
    return path


def file_hash(source: str | Path) -> str:
    """SHA-256 of the file's bytes, recorded in every direction made from it."""
    return hashlib.sha256(path_of(source).read_bytes()).hexdigest()


def _rows(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PairsError(f"{path}: not UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    if path.suffix.lower() == ".csv":
        return [(i + 2, row) for i, row in enumerate(csv.DictReader(text.splitlines()))]
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as e:
                raise PairsError(f"{path}:{i}: not valid JSON ({e.msg}); one JSON object per line") from None
    return rows


def _pair(path: Path, line: int, row: object) -> Pair:
    if not isinstance(row, dict):
        raise PairsError(f"{path}:{line}: expected a JSON object with keys {', '.join(REQUIRED)}")
    for key in REQUIRED:
        value = row.get(key)
        if value is None:
            raise PairsError(f"{path}:{line}: missing field {key!r}; every pair needs {', '.join(REQUIRED)}")
        if not isinstance(value, str) or not value.strip():
            raise PairsError(f"{path}:{line}: field {key!r} is empty; give it a non-empty string")
    return Pair(
        id=row["id"].strip(),
        creative=row["creative"].strip(),
        uncreative=row["uncreative"].strip(),
        split=row["split"].strip(),
        kind=(row.get("kind") or "ordinary").strip(),
        form=(row.get("form") or "").strip(),
    )


def load_pairs(source: str | Path = SHIPPED, split: str | None = None) -> list[Pair]:
    """Load and validate a pairs file; `split` keeps one split. Every split must hold at least 2 pairs."""
    path = path_of(source)
    pairs, seen = [], {}
    for line, row in _rows(path):
        pair = _pair(path, line, row)
        if pair.id in seen:
            raise PairsError(f"{path}:{line}: duplicate id {pair.id!r} (first on line {seen[pair.id]}); ids must be unique")
        seen[pair.id] = line
        pairs.append(pair)
    if not pairs:
        raise PairsError(f"{path}: no pairs; add lines with {', '.join(REQUIRED)}")
    counts: dict[str, int] = {}
    for p in pairs:
        counts[p.split] = counts.get(p.split, 0) + 1
    small = {s: n for s, n in counts.items() if n < 2}
    if small:
        raise PairsError(f"{path}: split(s) {small} have fewer than 2 pairs; add pairs or merge the split")
    if split is None:
        return pairs
    if split not in counts:
        raise PairsError(f"{path}: no pairs in split {split!r}; the file has splits {sorted(counts)}")
    return [p for p in pairs if p.split == split]
