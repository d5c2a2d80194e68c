"""Uncertainty for judge evaluations: intervals for means, proportions, AUROC and correlations (thin wrappers
over statsmodels, scipy and scikit-learn), and the one conversion of results to strict JSON (`plain`); agreement
between raters is `rater_stats`.

Every result carries its interval, its n and the unit that was resampled, so a
report cannot silently present item-level precision for data whose independent
unit is the prompt or the pair. Bootstrap resamples whose statistic is undefined
(e.g. one class only) are skipped and counted in ``extra["n_skipped"]``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as sps
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

ArrayLike = Sequence[Any] | np.ndarray
_TIE = -1
MIN_N = 10  # below this many independent units an interval says little: it is shown as "n too small"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval and the resampling unit behind it."""

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    unit: str
    method: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.estimate:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}] "
            f"(n={self.n} {self.unit}, {self.method})"
        )


# ---------------------------------------------------------------- validation


def _vector(x: ArrayLike, name: str, dtype: Any = float) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a flat list or array of numbers: {err}") from err
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}; pass a flat list or array")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{' and '.join(lengths)} must have equal length, got {lengths}")
    return next(iter(lengths.values()))


def _no_nan(arr: np.ndarray, name: str) -> None:
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; drop or impute missing values first")


def _binary(x: ArrayLike, name: str) -> np.ndarray:
    arr = _vector(x, name)
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0/1 or booleans (correct / incorrect)")
    return arr.astype(bool)


def _codes(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels -> (sorted unique labels, integer codes); rejects mixed types and None."""
    try:
        uniq, inverse = np.unique(x, return_inverse=True)
    except TypeError as err:
        raise ValueError(f"{name} must hold labels of one sortable type with no None: {err}") from err
    return uniq, inverse.ravel()


def _groups(clusters: ArrayLike, n_items: int, against: str) -> np.ndarray:
    """Cluster labels -> integer codes 0..k-1, one per item of `against`."""
    arr = _vector(clusters, "clusters", dtype=None)
    _same_length(clusters=arr, **{against: np.empty(n_items)})
    return _codes(arr, "clusters")[1]


def _check_settings(confidence: float, n_boot: int | None = None) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if n_boot is not None and n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")


# ---------------------------------------------------------------- bootstrap core


def _resamples(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield item indices for resamples that draw whole groups with replacement."""
    order = np.argsort(groups, kind="stable")
    sizes = np.bincount(groups)
    starts = np.cumsum(sizes) - sizes
    picks = np.random.default_rng(seed).integers(0, len(sizes), size=(n_boot, len(sizes)))
    for pick in picks:
        lengths = sizes[pick]
        offsets = np.repeat(starts[pick] - (np.cumsum(lengths) - lengths), lengths)
        yield order[np.arange(lengths.sum()) + offsets]


def _bootstrap(stat: Callable[[np.ndarray], float], groups: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap distribution of stat(indices); degenerate resamples give NaN (counted, not hidden)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([stat(idx) for idx in _resamples(groups, n_boot, seed)], dtype=float)


def _percentile_estimate(
    point: float, dist: np.ndarray, *, confidence: float, n: int, unit: str, method: str, extra: dict | None = None
) -> Estimate:
    valid = dist[~np.isnan(dist)]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(valid, [tail, 100 - tail]) if n >= 2 and valid.size else (np.nan, np.nan)
    info = {**(extra or {}), "n_boot": int(dist.size), "n_skipped": int(dist.size - valid.size)}
    return Estimate(float(point), float(low), float(high), int(n), unit, method, info)


# ---------------------------------------------------------------- means and proportions


def mean_ci(
    x: ArrayLike,
    *,
    method: Literal["t", "bca"] = "t",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str = "item",
    bounds: tuple[float, float] | None = None,
) -> Estimate:
    """Mean with a t (DescrStatsW) or BCa (scipy.stats.bootstrap) interval, cut to `bounds` (the range the
    quantity can take, e.g. (0, 1) for a mean probability), so an interval never claims impossible values.

    Resampling unit: the elements of x, assumed independent; aggregate to the
    independent unit first (or use cluster_bootstrap). NaNs are dropped and
    counted in extra["n_dropped"]; with n < 2 the interval is NaN.
    """
    _check_settings(confidence, n_boot)
    if method not in ("t", "bca"):
        raise ValueError(f"method must be 't' or 'bca', got {method!r}")
    arr = _vector(x, "x")
    kept = arr[~np.isnan(arr)]
    n, extra = kept.size, {"n_dropped": int(arr.size - kept.size)}
    point = float(kept.mean()) if n else np.nan
    if n < 2:
        return Estimate(point, np.nan, np.nan, n, unit, method, extra)
    if method == "t":
        low, high = DescrStatsW(kept).tconfint_mean(alpha=1 - confidence)
    else:
        res = sps.bootstrap(
            (kept,), np.mean, n_resamples=n_boot, confidence_level=confidence,
            method="BCa", rng=np.random.default_rng(seed),
        )
        low, high = res.confidence_interval
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Estimate(point, float(low), float(high), n, unit, method, extra)


def proportion_ci(k: int, n: int, *, confidence: float = 0.95, unit: str = "item") -> Estimate:
    """k successes out of n with a Wilson interval (statsmodels).

    Resampling unit: the n trials, assumed independent. n = 0 gives NaN, not an error,
    so empty subsets (e.g. no non-tie items) still report.
    """
    _check_settings(confidence)
    if not (0 <= k <= n):
        raise ValueError(f"k must satisfy 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Estimate(np.nan, np.nan, np.nan, 0, unit, "wilson", {"k": 0})
    low, high = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    low, high = (0.0 if k == 0 else float(low)), (1.0 if k == n else float(high))  # exact ends, not 5.6e-17
    return Estimate(k / n, low, high, int(n), unit, "wilson", {"k": int(k)})


def proportion(
    hits: ArrayLike,
    clusters: ArrayLike | None = None,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str | None = None,
) -> Estimate:
    """The one interval rule for a share of 0/1 outcomes: Wilson over the items, unless `clusters` group several
    items (e.g. the stories of one prompt), then a cluster bootstrap (percentile, so inside [0, 1]); where that
    collapses (fewer than two clusters, or every resample alike, as when all are wrong) Wilson over the items
    stands instead, and `method` says so."""
    arr = _binary(hits, "hits")
    k, n = int(arr.sum()), int(arr.size)
    groups = None if clusters is None else _groups(clusters, n, "hits")
    if groups is None or np.bincount(groups).max(initial=0) <= 1:
        unit = unit or ("item" if groups is None else "cluster")
        return proportion_ci(k, n, confidence=confidence, unit=unit)
    est = cluster_bootstrap(arr.astype(float), groups, np.mean, confidence=confidence, n_boot=n_boot, seed=seed,
                            unit=unit or "cluster")
    if np.isfinite(est.ci_low) and est.ci_high > est.ci_low:
        return est
    wilson = proportion_ci(k, n, confidence=confidence, unit="item")
    return Estimate(wilson.estimate, wilson.ci_low, wilson.ci_high, est.n, est.unit,
                    "wilson over items (the cluster bootstrap collapsed)", {**est.extra, "k": k, "n_items": n})


def cluster_bootstrap(
    values: ArrayLike,
    clusters: ArrayLike,
    stat: Callable[[np.ndarray], float] = np.mean,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str = "prompt",
) -> Estimate:
    """stat(values) with a percentile interval from resampling whole clusters.

    Resampling unit: the cluster (e.g. both presentation orders of a pair, or all
    stories of a prompt), because items within a cluster are not independent and an
    item-level bootstrap would understate the uncertainty. n = number of clusters.
    """
    _check_settings(confidence, n_boot)
    vals = _vector(values, "values")
    _no_nan(vals, "values")
    groups = _groups(clusters, vals.size, "values")
    n_clusters = int(groups.max()) + 1 if groups.size else 0
    point = float(stat(vals)) if vals.size else np.nan
    dist = _bootstrap(lambda idx: stat(vals[idx]), groups, n_boot, seed) if n_clusters >= 2 else np.array([])
    return _percentile_estimate(
        point, dist, confidence=confidence, n=n_clusters, unit=unit,
        method="cluster-bootstrap", extra={"n_items": int(vals.size)},
    )


# ---------------------------------------------------------------- discrimination and agreement


def auroc_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    clusters: ArrayLike | None = None,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    unit: str | None = None,
) -> Estimate:
    """ROC AUC (sklearn) with a percentile bootstrap interval.

    Resampling unit: the cluster (e.g. prompt id) when clusters is given, else the
    item. The larger label is the positive class. Resamples lacking a class are skipped.
    """
    _check_settings(confidence, n_boot)
    y_raw, s = _vector(labels, "labels", dtype=None), _vector(scores, "scores")
    n_items = _same_length(labels=y_raw, scores=s)
    _no_nan(s, "scores")
    classes = _codes(y_raw, "labels")[0]
    if classes.size != 2:
        raise ValueError(f"labels must contain exactly two classes, got {classes.tolist()}")
    y = y_raw == classes[1]
    groups = np.arange(n_items) if clusters is None else _groups(clusters, n_items, "labels")

    def stat(idx: np.ndarray) -> float:
        yy = y[idx]
        return roc_auc_score(yy, s[idx]) if 0 < yy.sum() < yy.size else np.nan

    return _percentile_estimate(
        roc_auc_score(y, s), _bootstrap(stat, groups, n_boot, seed), confidence=confidence,
        n=int(groups.max()) + 1, unit=unit or ("cluster" if clusters is not None else "item"),
        method="bootstrap", extra={"n_items": n_items, "n_pos": int(y.sum()), "n_neg": int((~y).sum())},
    )


def correlation_ci(
    x: ArrayLike,
    y: ArrayLike,
    *,
    method: Literal["spearman", "kendall"] = "spearman",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Rank correlation (scipy) with its p-value and a percentile bootstrap interval.

    Resampling unit: the item (x, y pair). Pairs with a NaN are dropped and counted
    in extra["n_dropped"].
    """
    _check_settings(confidence, n_boot)
    funcs = {"spearman": sps.spearmanr, "kendall": sps.kendalltau}
    if method not in funcs:
        raise ValueError(f"method must be 'spearman' or 'kendall', got {method!r}")
    xs, ys = _vector(x, "x"), _vector(y, "y")
    _same_length(x=xs, y=ys)
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    corr = funcs[method]

    def stat(idx: np.ndarray) -> float:
        return corr(xs[idx], ys[idx]).statistic

    extra = {"n_dropped": int((~keep).sum())}
    if xs.size < 2:
        return Estimate(np.nan, np.nan, np.nan, int(xs.size), "item", f"{method}-bootstrap", {**extra, "p_value": np.nan})
    res = corr(xs, ys)
    return _percentile_estimate(
        res.statistic, _bootstrap(stat, np.arange(xs.size), n_boot, seed), confidence=confidence,
        n=int(xs.size), unit="item", method=f"{method}-bootstrap", extra={**extra, "p_value": float(res.pvalue)},
    )


# ---------------------------------------------------------------- comparing judges


def plain(obj: Any) -> Any:
    """Estimates, numpy numbers and NaN -> dicts, Python numbers and None: the one way a result becomes strict
    JSON (summary.json, agreement.json, frontier.json, templates.json, lm-eval results)."""
    if isinstance(obj, Estimate):
        return plain(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def sample_ci(items: Sequence[float], bounds: tuple[float, float] | None = None) -> Estimate:
    """The interval of per-sample values, by the one rule: Wilson when they are 0/1 outcomes (rates), t otherwise
    (cut to `bounds`); NaN (invalid judgements) dropped; no values at all give NaN bounds."""
    values = [float(v) for v in items if not math.isnan(float(v))]
    if not values:
        return Estimate(math.nan, math.nan, math.nan, 0, "item", "none: no values")
    if set(values) <= {0.0, 1.0}:
        return proportion_ci(int(sum(values)), len(values))
    return mean_ci(values, bounds=bounds)


def fmt_estimate(e: dict | None, digits: int = 2) -> str:
    """`0.50 [0.29, 0.71]`; `0.67 (n too small for a CI)` below `MIN_N`, where an interval would look
    informative and is not; `–` for a missing or undefined estimate."""
    if not e or e.get("estimate") is None:
        return "–"
    if e.get("ci_low") is None:
        return f"{e['estimate']:.{digits}f}"
    if e.get("n") is not None and e["n"] < MIN_N:
        return f"{e['estimate']:.{digits}f} (n too small for a CI)"
    return f"{e['estimate']:.{digits}f} [{e['ci_low']:.{digits}f}, {e['ci_high']:.{digits}f}]"
