"""The human-calibrated direction: fitted on people's pairwise choices, measured only on pairs it never saw.

From each labelled pair, the preferred and the dispreferred text's mean response-token state; the direction
is the normalised mean of (preferred - dispreferred), or the weights of an L2-regularised logistic regression
on those differences. Its agreement with the same people is cross-validated by pair (k folds: every pair is
scored by a direction fitted on the other folds only), so a direction never reports agreement on its own
training pairs. Pairs that share a text (WQ reuses each preferred paragraph in three pairs) form one group
and fall in one fold together, or the direction would meet its test texts in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from creative_eval import stats
from creative_eval.probe import controls
from creative_eval.probe.textstates import States
from creative_eval.records import HumanLabel, Story

METHODS = ("mean", "logistic")
Fit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def preferred_sides(stories: Sequence[Story], labels: Sequence[HumanLabel]) -> tuple[list[Story], list[Story], list[str]]:
    """(preferred stories, dispreferred stories, item ids) of the decided pairwise labels (ties are left out)."""
    by_id = {s.id: s for s in stories}
    good, bad, items = [], [], []
    for h in labels:
        if h.choice not in ("A", "B") or not h.story_b:
            continue
        missing = [sid for sid in (h.story_a, h.story_b) if sid not in by_id]
        if missing:
            raise ValueError(f"label {h.item_id!r} names stories {missing} that are not among the stories given")
        a, b = by_id[h.story_a], by_id[h.story_b]
        good.append(a if h.choice == "A" else b)
        bad.append(b if h.choice == "A" else a)
        items.append(h.item_id)
    if len(items) < 4:
        raise ValueError(f"need at least 4 decided pairwise labels to fit a direction, got {len(items)}")
    return good, bad, items


def fit(preferred: torch.Tensor, dispreferred: torch.Tensor, method: str = "mean", c: float = 0.1) -> torch.Tensor:
    """A unit direction from paired mean states [n, hidden]: the mean difference, or a logistic regression
    (no intercept, each difference shown with both signs so neither side is favoured a priori)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    diffs = preferred - dispreferred
    if method == "mean":
        vector = diffs.mean(0)
    else:
        x = torch.cat([diffs, -diffs]).numpy()
        x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
        y = np.r_[np.ones(len(diffs)), np.zeros(len(diffs))]
        clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
        vector = torch.as_tensor(clf.coef_[0], dtype=torch.float32)
    norm = float(vector.norm())
    if norm == 0.0:
        raise ValueError("preferred and dispreferred texts give identical mean states; check the labels")
    return vector / norm


def shared_text_groups(preferred: Sequence[Story], dispreferred: Sequence[Story]) -> np.ndarray:
    """A group id per pair: pairs linked by a shared text (directly or through other pairs) share a group."""
    parent = list(range(len(preferred)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, (a, b) in enumerate(zip(preferred, dispreferred)):
        for text in (a.text, b.text):
            parent[root(i)] = root(first.setdefault(text, i))
    return np.array([root(i) for i in range(len(preferred))])


def folds(n: int, k: int = 5, seed: int = 0, groups: np.ndarray | None = None) -> list[np.ndarray]:
    """k disjoint test folds covering 0..n-1 once each, drawn with `seed`; with `groups`, whole groups."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    names = np.unique(groups)
    if not 2 <= k <= len(names):
        raise ValueError(f"k={k} folds need 2 <= k <= {len(names)} independent groups of pairs")
    split = np.array_split(np.random.default_rng(seed).permutation(names), k)
    return [np.flatnonzero(np.isin(groups, part)) for part in split]


@dataclass(frozen=True)
class CrossValidated:
    """Held-out margins (preferred - dispreferred probe score, > 0 agrees) and the fold that scored each pair."""

    margins: np.ndarray
    fold_of: np.ndarray
    trained: list[np.ndarray]
    groups: np.ndarray | None = None

    def agreement(self) -> stats.Estimate:
        """Share of pairs whose held-out margin favours the people's choice: Wilson CI over pairs, or, when pairs
        share texts, a bootstrap over the groups (the independent unit)."""
        hits = (self.margins > 0).astype(float)
        if self.groups is None or len(np.unique(self.groups)) == len(hits):
            return stats.proportion_ci(int(hits.sum()), len(hits), unit="pair")
        return stats.cluster_bootstrap(hits, self.groups, unit="group of pairs sharing a text")


def cross_validate(preferred: States, dispreferred: States, *, k: int = 5, seed: int = 0,
                   fit_fn: Fit | None = None, groups: np.ndarray | None = None) -> CrossValidated:
    """Score every pair with a direction fitted on the other folds (`fit_fn`, default mean difference)."""
    fit_fn = fit_fn or fit
    n = preferred.mean.shape[0]
    margins, fold_of, trained = np.full(n, np.nan), np.full(n, -1), []
    for i, test in enumerate(folds(n, k, seed, groups)):
        train = np.setdiff1d(np.arange(n), test)
        vector = fit_fn(preferred.mean[train], dispreferred.mean[train])
        margins[test] = ((preferred.unit[test] - dispreferred.unit[test]) @ vector).numpy()
        fold_of[test] = i
        trained.append(train)
    return CrossValidated(margins=margins, fold_of=fold_of, trained=trained, groups=groups)


def agreement(preferred: States, dispreferred: States, vector: torch.Tensor) -> float:
    """Share of pairs on which a fixed direction scores the preferred text higher."""
    return float((((preferred.unit - dispreferred.unit) @ vector) > 0).float().mean())


def cv_controls(value: float, preferred: States, dispreferred: States, *, k: int = 5, seed: int = 0,
                n: int = controls.N_RANDOM, method: str = "mean",
                groups: np.ndarray | None = None) -> list[controls.Control]:
    """The cross-validated agreement beside random directions (scored on all pairs) and beside the same
    cross-validation with each training pair's preferred side drawn by a coin (shuffled labels)."""
    hidden = preferred.mean.shape[1]
    rand = controls.random_control(value, lambda v: agreement(preferred, dispreferred, v), hidden, n, seed)
    rng = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(n):
        flip = torch.randint(0, 2, (preferred.mean.shape[0], 1), generator=rng).bool()
        fake_good, fake_bad = torch.where(flip, dispreferred.mean, preferred.mean), torch.where(flip, preferred.mean, dispreferred.mean)
        shuffled = States(fake_good, preferred.unit, preferred.n_tokens), States(fake_bad, dispreferred.unit, dispreferred.n_tokens)
        cv = cross_validate(*shuffled, k=k, seed=seed, fit_fn=lambda a, b: fit(a, b, method), groups=groups)
        null.append(float((cv.margins > 0).mean()))
    return [rand, controls.control(f"{n} shuffled-label cross-validations", value, np.array(null))]
