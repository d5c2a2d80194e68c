"""Contrastive prompt pairs: the shipped sets and user files (JSONL or CSV), validated line by line.

Schema, one pair per line: {"id", "creative", "uncreative", "split"} plus optional "kind" and "form".
The shipped `pairs.jsonl` has splits "validation" (the direction is found here) and "test" (it is
measured here); `robustness.jsonl` holds vocabulary-swapped pairs that are never used to find a direction;
`hard.jsonl` holds hard negatives whose two sides share their words and differ only in what happens.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from importlib import resources
from pathlib import Path

from creative_eval.records import FirstLines, Pair, json_lines, nfc, read_text

SHIPPED = "pairs"
ROBUSTNESS = "robustness"
HARD = "hard"
NAMED = (SHIPPED, ROBUSTNESS, HARD)
REQUIRED = ("id", "creative", "uncreative", "split")


class PairsError(ValueError):
    """A pairs file that cannot be used; the message names the file, the line and the fix."""


def path_of(source: str | Path) -> Path:
    """`pairs`, `robustness` and `hard` name the shipped sets; anything else is a file path."""
    if str(source) in NAMED:
        return Path(str(resources.files("creative_eval") / "data" / f"{source}.jsonl"))
    path = Path(source)
    if not path.is_file():
        raise PairsError(f"{path}: no such pairs file; pass a JSONL/CSV path or one of {', '.join(map(repr, NAMED))}")
    return path


def file_hash(source: str | Path) -> str:
    """SHA-256 of the file's bytes, recorded in every direction made from it."""
    return hashlib.sha256(path_of(source).read_bytes()).hexdigest()


def _rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, raw row) for every record; a UTF-8 byte-order mark (as spreadsheets write) is accepted."""
    text = read_text(path, PairsError)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        try:
            for row in reader:
                rows.append((reader.line_num, row))  # the record's last line: the same as its first unless quoted
        except csv.Error as e:
            line = reader.reader.line_num  # the DictReader's own count stops at the last good row
            raise PairsError(f"{path}:{line}: not valid CSV ({e}); quote fields that hold commas, "
                             "quotes or line breaks") from None
        return rows
    rows = []
    for i, line in enumerate(json_lines(text), 1):
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
        if not isinstance(value, str):
            raise PairsError(f"{path}:{line}: field {key!r} is {value!r}; write it as a string (in quotes)")
        if not value.strip():
            raise PairsError(f"{path}:{line}: field {key!r} is empty; give it a non-empty string")
    return Pair(
        id=nfc(row["id"].strip()),
        creative=row["creative"].strip(),
        uncreative=row["uncreative"].strip(),
        split=row["split"].strip(),
        kind=(row.get("kind") or "ordinary").strip(),
        form=(row.get("form") or "").strip(),
    )


def load_pairs(source: str | Path = SHIPPED, split: str | None = None) -> list[Pair]:
    """Load and validate a pairs file; `split` keeps one split. Every split must hold at least 2 pairs."""
    path = path_of(source)
    pairs, seen = [], FirstLines(path, "pair", "give every pair its own id", PairsError)
    for line, row in _rows(path):
        pair = _pair(path, line, row)
        seen.add(pair.id, line, row["id"].strip())
        pairs.append(pair)
    if not pairs:
        raise PairsError(f"{path}: no pairs; add lines with {', '.join(REQUIRED)}")
    lines_of: dict[str, list[int]] = {}
    for p in pairs:
        lines_of.setdefault(p.split, []).append(seen[p.id])
    if split is not None and split not in lines_of:
        raise PairsError(f"{path}: no pairs in split {split!r}; the file has splits {sorted(lines_of)}: pass one "
                         "of them with --split")
    for name, lines in lines_of.items():
        if len(lines) < 2:
            raise PairsError(f"{path}:{lines[0]}: split {name!r} has only this pair; every split needs at least 2 "
                             "pairs: add pairs to it or move this one to another split")
    return pairs if split is None else [p for p in pairs if p.split == split]
