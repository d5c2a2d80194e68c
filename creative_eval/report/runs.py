"""Reading runs: creative-eval JSONL records (told apart by their fields) and lm-eval results and samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from creative_eval.people.humans import load_labels
from creative_eval.records import (HumanLabel, Preference, Rating, Story, file_kind, from_dict, iter_jsonl,
                                   read_records)


@dataclass
class Run:
    """Everything a report reads: creative-eval records and lm-eval outputs."""

    stories: list[Story] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)
    probe: dict[str, float] = field(default_factory=dict)
    humans: list[HumanLabel] = field(default_factory=list)
    lm_eval: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # duplicates and truncations, shown with the run's metadata


def _kind(path: Path) -> str:
    kind = file_kind(path)
    if kind is None:
        raise ValueError(f"{path}: empty file; remove it from the report inputs")
    return kind


def _judgements(path: Path, cls: type) -> tuple[list, int]:
    """The judgements in a file, each key once (the first), and how many duplicates were dropped."""
    seen: set = set()
    out = []
    for i, obj in iter_jsonl(path):
        key = obj.get("key") or (obj.get("judge"), obj.get("story_id") or obj.get("pair_id"), obj.get("template_hash"))
        if key in seen:
            continue
        seen.add(key)
        out.append(_record(cls, path, i, obj))
    return out, sum(1 for _ in iter_jsonl(path)) - len(out)


def _record(cls: type, path: Path, line: int, obj: dict):
    try:
        return from_dict(cls, obj)
    except TypeError as e:
        raise ValueError(f"{path}:{line}: not a {cls.__name__} record ({e}); is this the right file?") from None


def check_inputs(paths: Iterable[str | Path]) -> None:
    """Every input is there: checked before the report folder is made, so a typo leaves no empty folder."""
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"report input {p} not found; pass run folders or JSONL/JSON files")


def load_runs(paths: Iterable[str | Path]) -> Run:
    """Read run folders or files; JSONL files are told apart by their fields, lm-eval files by their names."""
    run = Run()
    files: list[Path] = []
    check_inputs(paths)
    for p in map(Path, paths):
        files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix != ".lock") if p.is_dir() else [p]
    readable = [f for f in files if f.suffix in (".jsonl", ".json")]
    if not readable:
        raise ValueError(f"no JSONL or JSON files in {', '.join(map(str, paths))}; pass run folders or files "
                         "written by creative-eval or lm-eval")
    for f in files:
        if f.name.startswith("results") and f.suffix == ".json":
            run.lm_eval.setdefault("results", []).append(json.loads(f.read_text(encoding="utf-8")))
        elif f.name.startswith("samples_") and f.suffix == ".jsonl":
            run.lm_eval.setdefault("samples", {})[f.stem] = [obj for _, obj in iter_jsonl(f)]
        elif f.suffix == ".jsonl":
            kind = _kind(f)
            if kind == "probe":
                scored = [o for _, o in iter_jsonl(f)]
                run.probe.update({o["story_id"]: float(o["probe"]) for o in scored})
                _note(run, f, 0, sum(o.get("truncated_tokens", 0) > 0 for o in scored))
            elif kind == "human":
                run.humans += load_labels(f)
            elif kind in ("rating", "preference"):
                found, dropped = _judgements(f, Rating if kind == "rating" else Preference)
                _note(run, f, dropped, sum(r.truncated_tokens > 0 for r in found))
                if kind == "rating":
                    _add_ratings(run, found)
                else:
                    run.preferences += found
            else:
                run.stories += read_records(f, Story)
    return run


def _note(run: Run, path: Path, duplicates: int, truncated: int) -> None:
    """Count, per file, judgements stored twice (counted once) and inputs cut to a judge's or the probe's limit."""
    if duplicates:
        run.notes[f"{path.name}: duplicate records (each counted once)"] = str(duplicates)
    if truncated:
        run.notes[f"{path.name}: stories cut to the input limit"] = str(truncated)


def _add_ratings(run: Run, ratings: list[Rating]) -> None:
    """0-9 ratings go to the ratings panel; a probe judge's unmapped scores are probe scores."""
    for r in ratings:
        if r.expected is None and r.score is not None:
            run.probe[r.story_id] = r.score
        else:
            run.ratings.append(r)
