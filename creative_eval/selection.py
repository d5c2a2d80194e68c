"""Choosing a judge's template on people's labels without reporting on the pairs it was chosen on.

The distinct labelled pairs are split in two halves with a seed. In each fold the candidate with the highest
agreement on one half is chosen and reported on the other half only (accuracy with its Wilson CI, ties,
the length-controlled numbers); the pooled held-out accuracy judges every pair with the candidate chosen
without it. A number measured on the half a template was chosen on is never shown as its validation.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from . import agreement, stats
from .agreement import Key, Verdicts


def split_halves(keys: Sequence[Key], seed: int = 0) -> tuple[list[Key], list[Key]]:
    """Two disjoint halves of the distinct pairs (seeded; the first gets the smaller half when odd)."""
    distinct = sorted(set(keys))
    random.Random(seed).shuffle(distinct)
    half = len(distinct) // 2
    return sorted(distinct[:half]), sorted(distinct[half:])


def _accuracy(v: Verdicts, choices: Mapping[Key, str], texts: Mapping[str, str], label: str) -> dict[str, Any]:
    return agreement.agreement_row(v, choices, texts, label, n_boot=200)


def _best(candidates: Sequence[Verdicts], choices: Mapping[Key, str], texts: Mapping[str, str],
          label: str) -> tuple[Verdicts, dict[str, float]]:
    """The candidate with the highest accuracy on these pairs (ties count as wrong; the first listed wins a
    draw), and every candidate's accuracy there."""
    scores = {v.judge: _accuracy(v, choices, texts, label)["accuracy"].estimate for v in candidates}
    best = max(candidates, key=lambda v: scores[v.judge])
    return best, scores


def choose(candidates: Sequence[Verdicts], choices: Mapping[Key, str], texts: Mapping[str, str], label: str,
           seed: int = 0) -> dict[str, Any]:
    """Two folds of choose-on-one-half, report-on-the-other, and the pooled held-out accuracy."""
    if not candidates:
        raise ValueError("no candidate templates to choose from")
    halves = split_halves(list(choices), seed)
    folds, pooled = [], 0
    for pick, report in (halves, halves[::-1]):
        best, scores = _best(candidates, {k: choices[k] for k in pick}, texts, label)
        held = {k: choices[k] for k in report}
        row = agreement.agreement_row(best, held, texts, label)
        pooled += row["accuracy"].extra["k"]
        folds.append({"chosen": best.judge, "n_choose": len(pick), "n_report": len(report),
                      "choose_accuracy": scores, "held_out": row})
    n = sum(f["n_report"] for f in folds)
    return {"seed": seed, "label": label, "folds": folds,
            "pooled_held_out": stats.proportion_ci(pooled, n, unit="pair")}
