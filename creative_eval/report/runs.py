"""Reading runs: creative-eval JSONL records (told apart by their fields) and lm-eval results and samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..humans import load_labels
from ..records import HumanLabel, Preference, Rating, Story, iter_jsonl, read_records


@dataclass
class Run:
    """Everything a report reads: creative-eval records and lm-eval outputs."""

    stories: list[Story] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)
    probe: dict[str, float] = field(default_factory=dict)
    humans: list[HumanLabel] = field(default_factory=list)
    lm_eval: dict[str, Any] = field(default_factory=dict)


_KINDS = {  # the fields that identify a JSONL record type
    "rating": {"judge", "story_id", "status"},
    "preference": {"judge", "pair_id", "decision"},
    "story": {"prompt_id", "condition", "text"},
    "probe": {"story_id", "probe"},
    "human": {"item_id", "story_a"},
}


def _kind(path: Path) -> str:
    first = next(iter_jsonl(path), None)
    if first is None:
        raise ValueError(f"{path}: empty file; remove it from the report inputs")
    keys = set(first[1])
    for kind, needed in _KINDS.items():
        if needed <= keys:
            return kind
    raise ValueError(f"{path}: records with fields {sorted(keys)} are not stories, ratings, preferences, probe "
                     "scores or human labels; pass only creative-eval and lm-eval output files")


def load_runs(paths: Iterable[str | Path]) -> Run:
    """Read run folders or files; JSONL files are told apart by their fields, lm-eval files by their names."""
    run = Run()
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"report input {p} not found; pass run folders or JSONL/JSON files")
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if f.name.startswith("results") and f.suffix == ".json":
            run.lm_eval.setdefault("results", []).append(json.loads(f.read_text(encoding="utf-8")))
        elif f.name.startswith("samples_") and f.suffix == ".jsonl":
            run.lm_eval.setdefault("samples", {})[f.stem] = [obj for _, obj in iter_jsonl(f)]
        elif f.suffix == ".jsonl":
            kind = _kind(f)
            if kind == "probe":
                run.probe.update({o["story_id"]: float(o["probe"]) for _, o in iter_jsonl(f)})
            elif kind == "human":
                run.humans += load_labels(f)
            elif kind == "rating":
                _add_ratings(run, read_records(f, Rating))
            elif kind == "preference":
                run.preferences += read_records(f, Preference)
            else:
                run.stories += read_records(f, Story)
    return run


def _add_ratings(run: Run, ratings: list[Rating]) -> None:
    """0-9 ratings go to the ratings panel; a probe judge's unmapped scores are probe scores."""
    for r in ratings:
        if r.expected is None and r.score is not None:
            run.probe[r.story_id] = r.score
        else:
            run.ratings.append(r)
