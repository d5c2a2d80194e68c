"""The human-calibrated direction: fitted on people's pairwise choices, measured only on pairs it never saw.

From each labelled pair, the preferred and the dispreferred text's mean response-token state; the direction
is the normalised mean of (preferred - dispreferred), or the weights of an L2-regularised logistic regression
on those differences. Its agreement with the same people is cross-validated by pair (k folds: every pair is
scored by a direction fitted on the other folds only), so a direction never reports agreement on its own
training pairs. Pairs that share a text (WQ reuses each preferred paragraph in three pairs) form one group
and fall in one fold together, or the direction would meet its test texts in training. People who mostly
prefer the shorter text would make a plain fit a length detector; `Fitting(length_control="residual")` fits a
direction that is uncorrelated with length on its training texts by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from creative_eval import rater_stats, stats
from creative_eval.people import agreement as people_agreement
from creative_eval.probe import controls
from creative_eval.probe.textstates import States
from creative_eval.records import LENGTH_CONTROLS, HumanLabel, Story

METHODS = ("mean", "logistic")
Fit = Callable[[States, States], torch.Tensor]


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
    return _unit(_vector(preferred - dispreferred, method, c))


def _vector(diffs: torch.Tensor, method: str, c: float) -> torch.Tensor:
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    if method == "mean":
        return diffs.mean(0)
    x = torch.cat([diffs, -diffs]).numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    y = np.r_[np.ones(len(diffs)), np.zeros(len(diffs))]
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(x, y)
    return torch.as_tensor(clf.coef_[0], dtype=torch.float32)


def _unit(vector: torch.Tensor) -> torch.Tensor:
    norm = float(vector.norm())
    if norm == 0.0:
        raise ValueError("preferred and dispreferred texts give identical mean states; check the labels")
    return vector / norm


def log_length_ratio(preferred: States, dispreferred: States) -> torch.Tensor:
    """log(counted tokens of the preferred text / of the dispreferred text), per pair."""
    return torch.log(preferred.n_tokens.clamp(min=1) / dispreferred.n_tokens.clamp(min=1)).double()


def residualise(diffs: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Each pair difference minus the part a least-squares line in the log length ratio explains (slope fitted
    with an intercept, so the mean of what is left is the difference predicted at equal length)."""
    r = ratio - ratio.mean()
    spread = float(r @ r)
    if spread == 0.0:  # every pair has the same length ratio: length explains nothing between pairs
        return diffs
    slope = (r @ (diffs.double() - diffs.double().mean(0))) / spread
    return (diffs.double() - ratio[:, None] * slope).float()


def length_axes(preferred: States, dispreferred: States) -> torch.Tensor:
    """[2, hidden]: the state-space axes whose probe scores covary with log length over the training texts
    (sum of centred unit states times centred log token counts) and with the log length ratio over the
    training pairs (sum of unit-state differences times the ratio). A direction orthogonal to both scores
    its training texts uncorrelated with their log length, and its training pairs' margins uncorrelated
    with their log length ratio (in either orientation of the pair)."""
    unit = torch.cat([preferred.unit, dispreferred.unit]).double()
    length = torch.log(torch.cat([preferred.n_tokens, dispreferred.n_tokens]).clamp(min=1)).double()
    texts = (unit - unit.mean(0)).T @ (length - length.mean())
    pairs = (preferred.unit - dispreferred.unit).double().T @ log_length_ratio(preferred, dispreferred)
    return torch.stack([texts, pairs])


def orthogonal(vector: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """The unit `vector` with the span of `axes` projected out (Gram-Schmidt; a vanishing axis is skipped)."""
    v, basis = vector.double(), []
    for axis in axes.double():
        for b in basis:
            axis = axis - (axis @ b) * b
        if float(axis.norm()) > 1e-9 * max(float(a.norm()) for a in axes.double()):
            basis.append(axis / axis.norm())
    for b in basis:
        v = v - (v @ b) * b
    return _unit(v).float()


@dataclass(frozen=True)
class Fitting:
    """How the human-calibrated direction is fitted, checked once here and carried whole: into the cache
    key and metadata of the direction, and into every cross-validation fold.

    `length_control="residual"` makes it a direction that cannot be a length detector on its training
    texts: each pair difference first loses the part explained by the pair's log length ratio
    (`residualise`), and the fitted direction then loses the axes whose scores covary with length
    (`length_axes`). `none` is the plain fit."""

    method: str = "mean"
    length_control: str = "none"
    c: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"fit method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.length_control not in LENGTH_CONTROLS:
            raise ValueError(f"length control {self.length_control!r} is not one of {', '.join(LENGTH_CONTROLS)}; "
                             "use residual for a length-orthogonal direction or none for the plain fit")

    @property
    def name(self) -> str:
        """`mean`, `logistic`, `mean-residual`, ...: the spelling in the cache key and the metadata."""
        return self.method if self.length_control == "none" else f"{self.method}-{self.length_control}"

    def __call__(self, preferred: States, dispreferred: States) -> torch.Tensor:
        if self.length_control == "none":
            return fit(preferred.mean, dispreferred.mean, self.method, self.c)
        diffs = residualise(preferred.mean - dispreferred.mean, log_length_ratio(preferred, dispreferred))
        return orthogonal(_unit(_vector(diffs, self.method, self.c)), length_axes(preferred, dispreferred))


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
                   fit_fn: Fit | None = None, groups: np.ndarray | None = None,
                   fit_on: tuple[States, States] | None = None) -> CrossValidated:
    """Score every pair with a direction fitted on the other folds (`fit_fn`, default `Fitting()`: the mean
    difference); `fit_on` fits on other states of the same pairs (the shuffled-label control's)."""
    fit_fn = fit_fn or Fitting()
    fit_good, fit_bad = fit_on or (preferred, dispreferred)
    n = preferred.mean.shape[0]
    margins, fold_of, trained = np.full(n, np.nan), np.full(n, -1), []
    for i, test in enumerate(folds(n, k, seed, groups)):
        train = np.setdiff1d(np.arange(n), test)
        vector = fit_fn(fit_good.take(train), fit_bad.take(train))
        margins[test] = ((preferred.unit[test] - dispreferred.unit[test]) @ vector).numpy()
        fold_of[test] = i
        trained.append(train)
    return CrossValidated(margins=margins, fold_of=fold_of, trained=trained, groups=groups)


def agreement(preferred: States, dispreferred: States, vector: torch.Tensor) -> float:
    """Share of pairs on which a fixed direction scores the preferred text higher."""
    return float((((preferred.unit - dispreferred.unit) @ vector) > 0).float().mean())


def cv_controls(value: float, preferred: States, dispreferred: States, *, k: int = 5, seed: int = 0,
                n: int = controls.N_RANDOM, fitting: Fitting = Fitting(),
                groups: np.ndarray | None = None) -> list[controls.Control]:
    """The cross-validated agreement beside random directions (scored on all pairs) and beside the same
    cross-validation with each training pair's preferred side drawn by a coin (shuffled labels; the fit sees
    the swapped texts whole, lengths included, and is scored against the real labels)."""
    hidden = preferred.mean.shape[1]
    rand = controls.random_control(value, lambda v: agreement(preferred, dispreferred, v), hidden, n, seed)
    rng = torch.Generator().manual_seed(seed)
    null = []
    for _ in range(n):
        flip = torch.randint(0, 2, (preferred.mean.shape[0], 1), generator=rng).bool()
        swap = lambda x, y: (torch.where(flip, y, x), torch.where(flip, x, y))  # noqa: E731
        (gm, bm), (gu, bu), (gn, bn) = (swap(x, y) for x, y in ((preferred.mean, dispreferred.mean),
                                                                (preferred.unit, dispreferred.unit),
                                                                (preferred.n_tokens[:, None], dispreferred.n_tokens[:, None])))
        shuffled = States(gm, gu, gn[:, 0]), States(bm, bu, bn[:, 0])
        cv = cross_validate(preferred, dispreferred, k=k, seed=seed, fit_fn=fitting, groups=groups, fit_on=shuffled)
        null.append(float((cv.margins > 0).mean()))
    return [rand, controls.control(f"{n} shuffled-label cross-validations", value, np.array(null))]


def validate(preferred: States, dispreferred: States, good: Sequence[Story], bad: Sequence[Story],
             fitting: Fitting = Fitting(), *, k: int = 5, seed: int = 0, n_random: int = controls.N_RANDOM) -> dict:
    """How a fit agrees with the people who labelled the pairs, on pairs it was not fitted on only (k folds of
    groups sharing a text): agreement with its CI, its random-direction and shuffled-label percentiles, and
    the `length_checks` of its held-out margins."""
    groups = shared_text_groups(good, bad)
    cv = cross_validate(preferred, dispreferred, k=k, seed=seed, fit_fn=fitting, groups=groups)
    est = cv.agreement()
    rand, shuffled = cv_controls(est.estimate, preferred, dispreferred, k=k, seed=seed, n=n_random,
                                 fitting=fitting, groups=groups)
    return {"fit": fitting.name, "folds": k, "pairs": len(cv.margins), "groups": int(len(np.unique(groups))),
            "agreement": est.to_dict(), "random": rand.to_dict(), "shuffled": shuffled.to_dict(),
            **length_checks(cv.margins, good, bad, seed, "held-out probe margin")}


def length_checks(margins: np.ndarray, good: Sequence[Story], bad: Sequence[Story], seed: int = 0,
                  what: str = "probe margin") -> dict:
    """Whether pair margins (labelled side minus the other, > 0 agrees) agree with the label beyond length:
    agreement where the labelled side is the longer and the shorter text (words, Wilson CIs), and the margin's
    coefficient (per SD) in a logistic model of the label on margin + log word ratio, each pair shown in a
    coin-flipped orientation (`rater_stats.length_logit`)."""
    ratio = np.array([people_agreement.length_margin(a.text, b.text) for a, b in zip(good, bad)])
    hits = margins > 0
    split = {side: stats.proportion_ci(int(hits[chosen].sum()), int(chosen.sum()), unit="pair").to_dict()
             for side, chosen in (("longer", ratio > 0), ("shorter", ratio < 0))}
    sign = np.where(np.random.default_rng(seed).random(len(hits)) < 0.5, 1.0, -1.0)
    sd = float(margins.std()) or 1.0
    return {"agree_when_longer_chosen": split["longer"], "agree_when_shorter_chosen": split["shorter"],
            "length_logit": {**rater_stats.length_logit((sign > 0).astype(int), sign * margins / sd, sign * ratio),
                             "margin": f"{what}, per SD ({sd:.3g})"}}
