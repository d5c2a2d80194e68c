"""The frontier's statistics, from its per-story table: per-arm gains over the unsteered stories of the same
prompts, the random-direction control, length control, gated vs constant steering, and the recommended lambda.

Pure functions over plain rows (no model), so the rule that picks lambda can be checked on a hand-made table.
Every gain is paired per prompt (arm story - baseline story of the same prompt and seed) with a t interval
over prompts; win rates are Wilson intervals over prompts, a tie or an invalid judgement counting as no win.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from creative_eval import rater_stats, stats

PPL_BOUND = 1.5  # coherence bound: geometric-mean perplexity ratio (arm / baseline) at most this
REP_BOUND = 0.05  # coherence bound: repeated 3-gram rate at most the baseline's plus this
RULE = ("among the real direction's constant-lambda arms (steering layer, positions all), those with perplexity "
        "ratio <= {ppl:g} x baseline and repeated 3-gram rate <= baseline + {rep:g} are eligible; the recommended "
        "lambda is the eligible one with the largest gain in pairwise win rate over the random direction at the "
        "same lambda, provided that gain is above 0. Goal: its win rate's 95% CI lower bound > 0.5 and the paired "
        "win-rate difference to the random direction has a 95% CI lower bound > 0.")
Rows = Sequence[Mapping[str, Any]]


def _num(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _est(e: stats.Estimate | None) -> dict[str, Any] | None:
    return None if e is None else e.to_dict()


def paired(a: Mapping[str, Mapping], b: Mapping[str, Mapping], key: str, *, log: bool = False) -> stats.Estimate:
    """Mean over prompts of a[key] - b[key] (log ratio when `log`), t 95% CI; missing values are dropped."""
    diffs = []
    for pid in a.keys() & b.keys():
        x, y = _num(a[pid].get(key)), _num(b[pid].get(key))
        diffs.append(math.log(x / y) if log and x > 0 and y > 0 else (float("nan") if log else x - y))
    return stats.mean_ci(diffs, unit="prompt")


def _exp(e: stats.Estimate) -> dict[str, Any]:
    """A mean log ratio as a geometric-mean ratio with its interval."""
    return {**e.to_dict(), "estimate": math.exp(e.estimate), "ci_low": math.exp(e.ci_low),
            "ci_high": math.exp(e.ci_high), "method": f"exp of mean log ratio ({e.method})"}


def _win(row: Mapping) -> float:
    return float(row.get("decision") == "A")


def _log_words(a: Mapping, b: Mapping) -> float:
    return math.log(max(a["words"], 1) / max(b["words"], 1))


def arm_summary(arm: Mapping[str, Any], rows: Mapping[str, Mapping], base: Mapping[str, Mapping]) -> dict[str, Any]:
    """One arm against the baseline stories of the same prompts."""
    common = sorted(rows.keys() & base.keys())
    judged = [rows[p] for p in common if rows[p].get("decision") is not None]
    wins = sum(_win(r) for r in judged)
    log_len = [_log_words(rows[p], base[p]) for p in common]
    out = {
        **{k: arm[k] for k in ("arm", "kind", "alpha", "layer", "positions", "gate", "gate_window")},
        "n": len(common),
        "win_rate": _est(stats.proportion_ci(int(wins), len(common), unit="prompt")),
        "ties": sum(r.get("decision") == "tie" for r in judged), "invalid": len(common) - len(judged),
        "p_win": _est(stats.mean_ci([_num(rows[p].get("p_win")) for p in common], unit="prompt")),
        "p_win_length_controlled": rater_stats.length_ols([_num(rows[p].get("p_win")) - 0.5 for p in common], log_len,
                                                     offset=0.5),
        "rating_gain": _est(paired(rows, base, "rating")),
        "rating_gain_length_controlled": rater_stats.length_ols(
            [_num(rows[p].get("rating")) - _num(base[p].get("rating")) for p in common], log_len),
        "probe_gain": _est(paired(rows, base, "probe")),
        "probe_gain_length_controlled": rater_stats.length_ols(
            [_num(rows[p].get("probe")) - _num(base[p].get("probe")) for p in common], log_len),
        "own_probe_gain": _est(paired(rows, base, "own_probe")),
        "ppl_ratio": _exp(paired(rows, base, "ppl", log=True)),
        "median_ppl": float(np.nanmedian([_num(rows[p].get("ppl")) for p in common])) if common else None,
        "repetition": _est(stats.mean_ci([_num(rows[p].get("repetition")) for p in common], unit="prompt")),
        "repetition_gain": _est(paired(rows, base, "repetition")),
        "distinct2": _est(stats.mean_ci([_num(rows[p].get("distinct2")) for p in common], unit="prompt")),
        "coherence_gain": _est(paired(rows, base, "coherence")),
        "words": _est(stats.mean_ci([_num(rows[p]["words"]) for p in common], unit="prompt")),
        "words_gain": _est(paired(rows, base, "words")),
        "steered_share": None,
    }
    shares = [r["steered_steps"] / r["gate_steps"] for r in rows.values() if r.get("gate_steps")]
    if arm.get("gate") is not None:
        out["steered_share"] = _est(stats.mean_ci(shares, unit="prompt"))
    return out


def baseline_summary(base: Mapping[str, Mapping]) -> dict[str, Any]:
    def mean(key: str) -> dict[str, Any] | None:
        return _est(stats.mean_ci([_num(r.get(key)) for r in base.values()], unit="prompt"))

    return {"n": len(base), "median_ppl": float(np.nanmedian([_num(r.get("ppl")) for r in base.values()])),
            **{k: mean(k) for k in ("words", "repetition", "distinct2", "rating", "coherence", "probe", "own_probe")}}


def _twin(arm: Mapping, arms: Sequence[Mapping], **change: Any) -> Mapping | None:
    """The arm with the same settings as `arm` except `change`."""
    keys = ("kind", "alpha", "layer", "positions", "gate")
    want = {k: change.get(k, arm[k]) for k in keys}
    return next((a for a in arms if all(a[k] == want[k] for k in keys)), None)


def constants(gated: Mapping, arms: Sequence[Mapping]) -> list[Mapping]:
    """The constant steers a gated arm is set beside: the same direction and layer, ungated, at positions
    `generated` (where a gate acts) or `all`, at every lambda."""
    return [a for a in arms if a["kind"] == gated["kind"] and a["layer"] == gated["layer"] and a["gate"] is None
            and a["positions"] in ("generated", "all")]


def versus(a: Mapping[str, Mapping], b: Mapping[str, Mapping]) -> dict[str, Any]:
    """Arm a - arm b on the same prompts: win indicator (the judge preferring each over its baseline story),
    both probe gains, log perplexity and repetition; paired t intervals over prompts."""
    wins_a = {p: {"w": _win(r)} for p, r in a.items()}
    wins_b = {p: {"w": _win(r)} for p, r in b.items()}
    return {"win_rate_diff": _est(paired(wins_a, wins_b, "w")), "probe_gain_diff": _est(paired(a, b, "probe")),
            "own_probe_gain_diff": _est(paired(a, b, "own_probe")), "ppl_ratio": _exp(paired(a, b, "ppl", log=True)),
            "repetition_diff": _est(paired(a, b, "repetition"))}


def gate_verdict(diff: Mapping[str, Any], against: str) -> dict[str, Any]:
    """Gated vs a constant steer: it reaches the constant's probe gain unless the paired difference is shown
    negative (CI upper bound < 0), and costs less coherence if its perplexity ratio or repetition difference is
    shown lower (CI upper bound < 1, resp. < 0)."""
    own = diff["own_probe_gain_diff"]
    reaches = own["ci_high"] is not None and math.isfinite(own["ci_high"]) and own["ci_high"] >= 0
    cheaper = diff["ppl_ratio"]["ci_high"] < 1 or diff["repetition_diff"]["ci_high"] < 0
    return {"against": against, **diff, "reaches_probe_gain": bool(reaches), "lower_coherence_cost": bool(cheaper),
            "rule": "reaches: gated - constant own-probe gain not shown below 0 (CI upper >= 0); lower cost: "
                    "perplexity ratio gated/constant CI upper < 1 or repetition difference CI upper < 0"}


def recommend(arms: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any], *, layer: int,
              ppl_bound: float = PPL_BOUND, rep_bound: float = REP_BOUND) -> dict[str, Any]:
    """The lambda chosen by `RULE` from the arm summaries, with why each grid lambda is in or out."""
    grid = [a for a in arms if a["kind"] == "real" and a["positions"] == "all" and a["gate"] is None
            and a["layer"] in (None, layer)]
    limit = baseline["repetition"]["estimate"] + rep_bound
    table, best = [], None
    for a in sorted(grid, key=lambda a: a["alpha"]):
        vs = a.get("vs_random") or {}
        gain = (vs.get("win_rate_diff") or {}).get("estimate")
        why = []
        if not a["ppl_ratio"]["estimate"] <= ppl_bound:
            why.append(f"perplexity ratio {a['ppl_ratio']['estimate']:.2f} > {ppl_bound:g}")
        if not a["repetition"]["estimate"] <= limit:
            why.append(f"repetition {a['repetition']['estimate']:.3f} > {limit:.3f}")
        if gain is None:
            why.append("no random control at this lambda")
        table.append({"alpha": a["alpha"], "arm": a["arm"], "eligible": not why, "gain_over_random": gain,
                      "excluded_because": "; ".join(why)})
        if not why and gain > 0 and (best is None or gain > best[1]):
            best = (a, gain)
    out: dict[str, Any] = {"rule": RULE.format(ppl=ppl_bound, rep=rep_bound), "ppl_bound": ppl_bound,
                           "rep_bound": rep_bound, "grid": table, "alpha": None, "arm": None, "goal_met": False}
    if best is None:
        return {**out, "reason": "no eligible lambda gains over the random direction in pairwise win rate"}
    a = best[0]
    above_half = a["win_rate"]["ci_low"] > 0.5
    above_random = (a["vs_random"]["win_rate_diff"]["ci_low"] or -1) > 0
    return {**out, "alpha": a["alpha"], "arm": a["arm"], "reason": None, "win_rate": a["win_rate"],
            "win_rate_diff_vs_random": a["vs_random"]["win_rate_diff"], "win_rate_ci_low_above_half": above_half,
            "above_random": above_random, "goal_met": above_half and above_random}


def summarize(rows: Rows, arms: Sequence[Mapping[str, Any]], *, layer: int, ppl_bound: float = PPL_BOUND,
              rep_bound: float = REP_BOUND) -> dict[str, Any]:
    """Per-arm summaries, the random control beside each real or negated arm, gated vs constant, and the
    recommendation."""
    by: dict[str, dict[str, Mapping]] = {}
    for r in rows:
        by.setdefault(r["arm"], {})[r["prompt_id"]] = r
    if "baseline" not in by:
        raise ValueError("the frontier table has no baseline rows; every arm is measured against the baseline")
    base = by["baseline"]
    steered = [a for a in arms if a["kind"] != "baseline"]
    out_arms = [arm_summary(a, by.get(a["arm"], {}), base) for a in steered]
    gates = []
    for a, s in zip(steered, out_arms):
        rand = _twin(a, steered, kind="random") if a["kind"] != "random" else None
        s["vs_random"] = versus(by[a["arm"]], by[rand["arm"]]) if rand else None
        if a["gate"] is not None:
            for const in constants(a, steered):
                gates.append({"gated": a["arm"], **gate_verdict(versus(by[a["arm"]], by[const["arm"]]), const["arm"])})
    summary = baseline_summary(base)
    return {"baseline": summary, "arms": out_arms, "gated_vs_constant": gates,
            "recommendation": recommend(out_arms, summary, layer=layer, ppl_bound=ppl_bound, rep_bound=rep_bound)}
