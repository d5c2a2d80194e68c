"""Agreement between raters, and agreement that length cannot explain: pairwise agreement with ties, Cohen's
kappa, Krippendorff's alpha, McNemar and Holm for comparing judges, and the two length-controlled fits (a logit of
people's choice on a judge's margin beside the length ratio; an OLS of a per-prompt gain on the length ratio).

Built on `stats` (its Estimate, intervals and input checks); like it, every result states n and its unit.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any, Literal, Sequence

import krippendorff
import numpy as np
import statsmodels.api as sm
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

from creative_eval.stats import (_TIE, ArrayLike, Estimate, _binary, _bootstrap, _check_settings, _codes,
                                 _percentile_estimate, _same_length, _vector, cluster_bootstrap, proportion)

MIN_LOGIT_N = 10  # fewer pairs than this cannot support three logistic coefficients


def _nan_if_none(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _decisions(x: ArrayLike, name: str) -> np.ndarray:
    """Pairwise decisions -> codes 0 (A), 1 (B), -1 (tie). None/NaN/'tie' are ties."""
    arr = _vector(x, name, dtype=object)
    codes = np.empty(arr.size, dtype=int)
    lookup = {"A": 0, "B": 1, "TIE": _TIE}
    for i, v in enumerate(arr):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            codes[i] = _TIE
        elif isinstance(v, str) and v.strip().upper() in lookup:
            codes[i] = lookup[v.strip().upper()]
        elif isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v in (0, 1):
            codes[i] = int(v)
        else:
            raise ValueError(f"{name}[{i}]={v!r} is not a decision; use 'A', 'B', 'tie' (or 0, 1, None)")
    return codes


def _rate(hits: np.ndarray, clusters: np.ndarray | None, *, confidence: float, n_boot: int, seed: int,
          unit: str | None, extra: dict) -> Estimate:
    est = proportion(hits, clusters, confidence=confidence, n_boot=n_boot, seed=seed, unit=unit)
    return replace(est, extra={**est.extra, **extra, "k": int(hits.sum()), "n_items": int(hits.size)})


def pairwise_agreement(
    judge: ArrayLike,
    human: ArrayLike,
    *,
    confidence: float = 0.95,
    clusters: ArrayLike | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str | None = None,
) -> dict[str, Estimate]:
    """Judge-vs-human agreement on pairwise decisions ('A', 'B', 'tie' or 0, 1, None).

    accuracy_incl_ties: all items; a tie is correct only if both tie.
    accuracy_excl_ties: only items where neither judge nor human tied.
    tie_rate: share of items the judge called a tie.
    Resampling unit: the item (Wilson) or, with clusters, the cluster (bootstrap).
    """
    _check_settings(confidence, n_boot)
    j, h = _decisions(judge, "judge"), _decisions(human, "human")
    _same_length(judge=j, human=h)
    groups = None if clusters is None else _vector(clusters, "clusters", dtype=None)
    if groups is not None:
        _same_length(clusters=groups, judge=j)
    judge_tie, human_tie = j == _TIE, h == _TIE
    decided = ~judge_tie & ~human_tie
    counts = {
        "judge_ties": int(judge_tie.sum()),
        "human_ties": int(human_tie.sum()),
        "both_tie": int((judge_tie & human_tie).sum()),
    }
    parts = {
        "accuracy_incl_ties": (j == h, np.ones(j.size, dtype=bool)),
        "accuracy_excl_ties": (j == h, decided),
        "tie_rate": (judge_tie, np.ones(j.size, dtype=bool)),
    }
    return {
        name: _rate(
            hits[mask], None if groups is None else groups[mask], confidence=confidence,
            n_boot=n_boot, seed=seed, unit=unit, extra=counts,
        )
        for name, (hits, mask) in parts.items()
    }


def cohen_kappa(
    a: ArrayLike,
    b: ArrayLike,
    *,
    weights: Literal["linear", "quadratic"] | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Cohen's kappa (sklearn) with a percentile bootstrap interval.

    Resampling unit: the item rated by both raters. The label set is fixed from the
    full data so weighted-kappa distances do not change between resamples.
    """
    _check_settings(confidence, n_boot)
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    x, y = _vector(a, "a", dtype=None), _vector(b, "b", dtype=None)
    n = _same_length(a=x, b=y)
    labels = _codes(np.concatenate([x, y]), "a and b")[0]

    def stat(idx: np.ndarray) -> float:
        return cohen_kappa_score(x[idx], y[idx], labels=labels, weights=weights)

    return _percentile_estimate(
        stat(np.arange(n)), _bootstrap(stat, np.arange(n), n_boot, seed), confidence=confidence,
        n=n, unit="item", method="bootstrap", extra={"weights": weights},
    )


def krippendorff_alpha(
    reliability_data: ArrayLike,
    *,
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "nominal",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Krippendorff's alpha (krippendorff package) with a percentile bootstrap interval.

    reliability_data is raters x items with NaN for missing ratings. Resampling unit:
    the item (column). The value domain is fixed from the full data so ordinal
    distances do not change between resamples.
    """
    _check_settings(confidence, n_boot)
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be 'nominal', 'ordinal', 'interval' or 'ratio', got {level!r}")
    data = np.asarray(reliability_data, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(
            f"reliability_data must be 2-D raters x items with >= 2 raters, got shape {data.shape}; "
            "transpose if rows are items"
        )
    domain = np.unique(data[~np.isnan(data)])

    def stat(idx: np.ndarray) -> float:
        try:
            return krippendorff.alpha(data[:, idx], value_domain=domain, level_of_measurement=level)
        except ValueError:  # a resample with a single value or no pairable item
            return np.nan

    pairable = int((np.sum(~np.isnan(data), axis=0) >= 2).sum())
    return _percentile_estimate(
        krippendorff.alpha(data, value_domain=domain, level_of_measurement=level),
        _bootstrap(stat, np.arange(data.shape[1]), n_boot, seed), confidence=confidence,
        n=data.shape[1], unit="item", method="bootstrap", extra={"n_pairable": pairable, "level": level},
    )


def mcnemar_exact(correct_a: ArrayLike, correct_b: ArrayLike) -> dict:
    """Exact McNemar test (statsmodels) on paired correctness of two judges.

    Unit: the item; only discordant items (b: A right/B wrong, c: A wrong/B right) matter.
    """
    a, b = _binary(correct_a, "correct_a"), _binary(correct_b, "correct_b")
    n = _same_length(correct_a=a, correct_b=b)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    res = mcnemar(table, exact=True)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "b": table[0][1], "c": table[1][0], "n": n}


def paired_accuracy_diff(
    correct_a: ArrayLike,
    correct_b: ArrayLike,
    *,
    clusters: ArrayLike | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str | None = None,
) -> Estimate:
    """acc_a - acc_b with a paired percentile bootstrap.

    Both judges are resampled on the same items, so their correlation is kept.
    Resampling unit: the cluster when given, else the item.
    """
    a, b = _binary(correct_a, "correct_a"), _binary(correct_b, "correct_b")
    n = _same_length(correct_a=a, correct_b=b)
    diff = a.astype(float) - b.astype(float)
    est = cluster_bootstrap(
        diff, np.arange(n) if clusters is None else clusters, np.mean, confidence=confidence,
        n_boot=n_boot, seed=seed, unit=unit or ("cluster" if clusters is not None else "item"),
    )
    method = "paired-bootstrap" if clusters is None else "cluster-bootstrap"
    return replace(est, method=method, extra={**est.extra, "acc_a": float(a.mean()), "acc_b": float(b.mean())})


def holm(p_values: ArrayLike) -> list[float]:
    """Holm-adjusted p-values (statsmodels multipletests), in input order."""
    p = _vector(p_values, "p_values")
    if p.size == 0:
        return []
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must all lie in [0, 1] with no NaN")
    return multipletests(p, method="holm")[1].tolist()


def length_logit(chose_a: Sequence[int], margin: Sequence[float], length_diff: Sequence[float]) -> dict[str, Any]:
    """logit P(people chose A) = b0 + b * margin + c * length_diff (statsmodels Logit), AlpacaEval's
    length-controlled idea: b is what the judge's margin says about the people's choice beyond length.

    Returns the margin's coefficient with its 95% CI and p-value, and the length coefficient; where the model
    cannot be fitted (too few pairs, a constant or length-collinear margin, separation) the numbers are None
    and `reason` says why.
    """
    y, m, d = (np.asarray(x, dtype=float) for x in (chose_a, margin, length_diff))
    if not (y.size == m.size == d.size):
        raise ValueError(f"chose_a, margin and length_diff must have equal length, got {y.size}, {m.size}, {d.size}")
    out: dict[str, Any] = {"coef": None, "ci_low": None, "ci_high": None, "p_value": None, "length_coef": None,
                           "length_p_value": None, "n": int(y.size), "reason": None,
                           "model": "logit P(A chosen) ~ 1 + margin + log(words A / words B)"}
    reason = _logit_obstacle(y, m, d)
    if reason:
        return {**out, "reason": reason}
    X = np.column_stack([np.ones_like(m), m, d])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = sm.Logit(y, X).fit(disp=0, maxiter=100)
    except (PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError) as err:
        kind = "separation" if isinstance(err, PerfectSeparationWarning) else type(err).__name__
        return {**out, "reason": f"the fit failed ({kind}: the margin or length predicts the choice (almost) "
                                 f"perfectly or the design is singular): {err}"}
    ci = res.conf_int(alpha=0.05)
    if not np.all(np.isfinite(res.bse)) or not np.all(np.isfinite(ci)):
        return {**out, "reason": "the fit gave infinite standard errors (quasi-separation)"}
    return {**out, "coef": float(res.params[1]), "ci_low": float(ci[1][0]), "ci_high": float(ci[1][1]),
            "p_value": float(res.pvalues[1]), "length_coef": float(res.params[2]),
            "length_p_value": float(res.pvalues[2])}


def _logit_obstacle(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> str | None:
    if y.size < MIN_LOGIT_N:
        return f"too few pairs ({y.size} < {MIN_LOGIT_N})"
    if not np.isin(y, (0, 1)).all():
        return "chose_a must be 0/1"
    if np.isnan(m).any() or np.isnan(d).any():
        return "margin or length difference contains NaN"
    if y.min() == y.max():
        return "the people chose one side only"
    if np.ptp(m) == 0:
        return "the judge's margin is constant"
    if np.ptp(d) == 0:
        return "the length difference is constant"
    if np.linalg.matrix_rank(np.column_stack([np.ones_like(m), m, d])) < 3:
        return "the judge's margin is collinear with the length difference (it is a length rule)"
    return None


def length_ols(y: Sequence[float], log_ratio: Sequence[float], offset: float = 0.0) -> dict[str, Any]:
    """y ~ 1 + log(words arm / words baseline) by OLS (statsmodels): the intercept (+ offset) is y at equal
    length, so a judge that simply favours longer or shorter text does not decide it."""
    pairs = [(a, b) for a, b in zip(y, log_ratio) if not (math.isnan(_nan_if_none(a)) or math.isnan(_nan_if_none(b)))]
    out: dict[str, Any] = {"estimate": None, "ci_low": None, "ci_high": None, "length_slope": None,
                           "length_p_value": None, "n": len(pairs), "reason": None,
                           "model": "y ~ 1 + log(words arm / words baseline), OLS; estimate at equal length"}
    if len(pairs) < 5:
        return {**out, "reason": f"too few pairs ({len(pairs)} < 5)"}
    yy, dd = (np.array(c, dtype=float) for c in zip(*pairs))
    if np.ptp(dd) == 0:
        return {**out, "reason": "the length ratio is constant"}
    res = sm.OLS(yy, sm.add_constant(dd)).fit()
    ci = res.conf_int(alpha=0.05)
    return {**out, "estimate": float(res.params[0]) + offset, "ci_low": float(ci[0][0]) + offset,
            "ci_high": float(ci[0][1]) + offset, "length_slope": float(res.params[1]),
            "length_p_value": float(res.pvalues[1])}


def rating_beside_length(people: Sequence[float], score: Sequence[float], log_words: Sequence[float]) -> dict[str, Any]:
    """people's mean rating ~ 1 + score (per SD) + log words, by OLS (statsmodels): the score's coefficient is what
    it says about the people's rating beyond the story's length, the rating sets' length control."""
    y, x, d = (np.asarray(v, dtype=float) for v in (people, score, log_words))
    out: dict[str, Any] = {"coef": None, "ci_low": None, "ci_high": None, "p_value": None, "n": int(y.size),
                           "reason": None, "model": "mean rating ~ 1 + score / SD + log(words), OLS"}
    if y.size < 5:
        return {**out, "reason": f"too few stories ({y.size} < 5)"}
    if np.ptp(x) == 0 or np.ptp(d) == 0:
        return {**out, "reason": "the score or the length is constant"}
    res = sm.OLS(y, np.column_stack([np.ones_like(x), x / x.std(), d])).fit()
    ci = res.conf_int(alpha=0.05)
    return {**out, "coef": float(res.params[1]), "ci_low": float(ci[1][0]), "ci_high": float(ci[1][1]),
            "p_value": float(res.pvalues[1])}
