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

import numpy as np

from creative_eval.people import agreement
from creative_eval.people.agreement import Key, Verdicts


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


def _restricted(v: Verdicts, keys: Sequence[Key]) -> Verdicts:
    """The verdicts on `keys` only, margins in units of their SD there, so folds whose chosen templates have
    margins on different scales (rating difference, debiased probability) pool into one comparable column."""
    margins = {k: v.margins[k] for k in keys if k in v.margins}
    sd = float(np.std(list(margins.values()))) if margins else 0.0
    return Verdicts(judge=v.judge, decisions={k: v.decisions[k] for k in keys if k in v.decisions},
                    margins={k: m / sd for k, m in margins.items()} if sd > 0 else margins,
                    p_first={k: v.p_first[k] for k in keys if k in v.p_first}, margin_kind=v.margin_kind)


def _pooled(held: Sequence[Verdicts]) -> Verdicts:
    """One judge out of each fold's chosen candidate on its held-out half: every pair judged by a template
    chosen without it."""
    names = sorted({v.judge for v in held})
    return Verdicts(judge=" / ".join(names), decisions={k: d for v in held for k, d in v.decisions.items()},
                    margins={k: m for v in held for k, m in v.margins.items()} if all(v.margins for v in held) else {},
                    p_first={k: p for v in held for k, p in v.p_first.items()},
                    margin_kind=" / ".join(sorted({v.margin_kind for v in held})))


def choose(candidates: Sequence[Verdicts], choices: Mapping[Key, str], texts: Mapping[str, str], label: str,
           seed: int = 0) -> dict[str, Any]:
    """Two folds of choose-on-one-half, report-on-the-other, and the pooled held-out row: every pair judged by
    the candidate chosen on the other half (accuracy, AUROC and the length-controlled numbers over all pairs)."""
    if not candidates:
        raise ValueError("no candidate templates to choose from")
    halves = split_halves(list(choices), seed)
    folds, held = [], []
    for pick, report in (halves, halves[::-1]):
        best, scores = _best(candidates, {k: choices[k] for k in pick}, texts, label)
        held.append(_restricted(best, report))
        folds.append({"chosen": best.judge, "n_choose": len(pick), "n_report": len(report),
                      "choose_accuracy": scores,
                      "held_out": agreement.agreement_row(best, {k: choices[k] for k in report}, texts, label)})
    return {"seed": seed, "label": label, "folds": folds,
            "pooled_held_out": agreement.agreement_row(_pooled(held), choices, texts, label)}
