"""Controls for every probe claim: the same statistic for random unit directions at the same layer, and for
difference-of-means directions fitted with shuffled labels, with the real direction's percentile among them.

Everything works on cached per-text states (`textstates.States`): no model is run per control direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from creative_eval import stats
from creative_eval.probe.textstates import States
from creative_eval.records import CONDITIONS, Story

N_RANDOM = 200


def random_directions(hidden: int, n: int = N_RANDOM, seed: int = 0) -> torch.Tensor:
    """n unit vectors drawn uniformly on the sphere [n, hidden] (normalised Gaussians), reproducible by seed."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, hidden, generator=g), dim=-1)


def percentile(value: float, null: np.ndarray) -> float:
    """Share of the null strictly below `value`, ties counted half: 0.5 means typical of the null, 1.0 above all."""
    null = np.asarray(null, dtype=float)
    null = null[~np.isnan(null)]
    if null.size == 0:
        return float("nan")
    return float(((null < value).sum() + 0.5 * (null == value).sum()) / null.size)


@dataclass(frozen=True)
class Control:
    """The real statistic beside a null distribution: its percentile and the null's 50th / 99th percentile."""

    name: str
    value: float
    percentile: float
    null_median: float
    null_p99: float
    n: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def control(name: str, value: float, null: np.ndarray) -> Control:
    null = np.asarray(null, dtype=float)
    kept = null[~np.isnan(null)]
    med, p99 = (np.percentile(kept, [50, 99]) if kept.size else (np.nan, np.nan))
    return Control(name=name, value=float(value), percentile=percentile(value, kept), null_median=float(med),
                   null_p99=float(p99), n=int(kept.size))


def random_control(value: float, statistic: Callable[[torch.Tensor], float], hidden: int,
                   n: int = N_RANDOM, seed: int = 0) -> Control:
    """`statistic(vector)` for n random unit directions, against the real direction's `value`."""
    null = np.array([statistic(v) for v in random_directions(hidden, n, seed)])
    return control(f"{n} random directions", value, null)


def shuffled_directions(creative: torch.Tensor, negated: torch.Tensor, n: int = N_RANDOM, seed: int = 0) -> torch.Tensor:
    """Difference-of-means directions [n, hidden] from paired rows whose creative/negated labels are swapped at
    random within each pair (the null for paired data: the sign of each pair's difference is a coin)."""
    if creative.shape != negated.shape:
        raise ValueError(f"paired states must have equal shapes, got {tuple(creative.shape)} and {tuple(negated.shape)}")
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n, creative.shape[0]), generator=g).float() * 2 - 1
    diffs = signs @ (creative - negated) / creative.shape[0]
    return torch.nn.functional.normalize(diffs, dim=-1)


def shuffled_control(value: float, statistic: Callable[[torch.Tensor], float], creative: torch.Tensor,
                     negated: torch.Tensor, n: int = N_RANDOM, seed: int = 0) -> Control:
    """`statistic(vector)` for n shuffled-label difference-of-means directions, against the real `value`."""
    null = np.array([statistic(v) for v in shuffled_directions(creative, negated, n, seed)])
    return control(f"{n} shuffled-label directions", value, null)


def auroc_columns(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of every column of `scores` [n, k] against 0/1 `labels` (Mann-Whitney from ranks, ties averaged)."""
    labels = np.asarray(labels).astype(bool)
    ranks = rankdata(np.asarray(scores), axis=0)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return (ranks[labels].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def condition_comparisons(stories: Sequence[Story], same: States, cross: States, vector: torch.Tensor, tokens: str,
                          n: int = N_RANDOM, seed: int = 0) -> dict:
    """For every two conditions sharing prompt ids, the later one (in CONDITIONS order: induced, creative) first,
    as the question is asked ("does the induced story beat the baseline?"): the share of prompts whose
    first-condition story scores higher (Wilson CI) and its percentile among random directions; stories of
    different prompts are compared on `cross` (response-token) states, same-prompt ones on `same` (`tokens`).
    Plus the Spearman correlation of the score with story length in words, which a probe that reads length
    would show."""
    rand = random_directions(vector.shape[0], n, seed)
    where = {(s.prompt_id, s.condition): i for i, s in enumerate(stories)}
    rank = {c: i for i, c in enumerate(CONDITIONS)}
    conditions = sorted({s.condition for s in stories}, key=lambda c: (rank.get(c, len(rank)), c))
    rows = []
    for b, a in combinations(conditions, 2):
        shared = sorted({p for p, c in where if c == a} & {p for p, c in where if c == b})
        if not shared:
            continue
        ia, ib = [where[(p, a)] for p in shared], [where[(p, b)] for p in shared]
        is_cross = any(stories[i].prompt != stories[j].prompt for i, j in zip(ia, ib))
        st = cross if is_cross else same
        est = stats.proportion_ci(int((st.scores(vector)[ia] > st.scores(vector)[ib]).sum()), len(shared), unit="prompt")
        null = (st.scores(rand)[ia] > st.scores(rand)[ib]).float().mean(0).numpy()
        rows.append({"a": a, "b": b, "tokens": "response" if is_cross else tokens, "win_rate": est.to_dict(),
                     "random": control(f"{n} random directions", est.estimate, null).to_dict()})
    words = [len(s.text.split()) for s in stories]
    rho = stats.correlation_ci(same.scores(vector).numpy(), words) if len(set(words)) > 1 else None
    return {"comparisons": rows, "length_spearman": rho.to_dict() if rho else None}


def describe(summary: dict) -> dict[str, str]:
    """One line per comparison (and the length correlation), for the score command and the report."""
    out = {}
    for r in summary["comparisons"]:
        w, c = r["win_rate"], r["random"]
        out[f"probe {r['a']} > {r['b']}"] = (
            f"{stats.fmt_estimate(w)} of {w['n']} prompts ({r['tokens']} tokens); "
            f"percentile {100 * c['percentile']:.0f} among {c['n']} random directions (their 99th: {c['null_p99']:.2f})")
    rho = summary["length_spearman"]
    if rho:
        out["probe vs story length"] = f"Spearman {stats.fmt_estimate(rho)} (n={rho['n']} stories)"
    return out


def paired_auroc(scores: np.ndarray, n_boot: int = 1000, seed: int = 0) -> stats.Estimate:
    """AUROC of creative (first half of `scores`) vs negated (second half) rows, with a percentile bootstrap
    over pairs: every resample draws whole pairs and is scored in one vectorised rank pass."""
    scores = np.asarray(scores, dtype=float)
    n = scores.size // 2
    if n < 2 or scores.size != 2 * n:
        raise ValueError(f"need an even number of scores from at least 2 pairs, got {scores.size}")
    labels = np.r_[np.ones(n), np.zeros(n)]
    point = float(auroc_columns(labels, scores[:, None])[0])
    pick = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = auroc_columns(labels, np.concatenate([scores[:n][pick], scores[n:][pick]], axis=1).T)
    low, high = np.percentile(boot, [2.5, 97.5])
    return stats.Estimate(point, float(low), float(high), n, "pair", "bootstrap",
                          {"n_boot": n_boot, "n_items": 2 * n})
