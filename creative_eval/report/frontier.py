"""The steering frontier as a figure and tables, from the dict `frontier.run` returns (frontier.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from creative_eval import stats  # noqa: E402
from creative_eval.report.figures import _save  # noqa: E402
from creative_eval.report.render import fmt_estimate, markdown_table  # noqa: E402

LINES = {"real": "tab:red", "random": "tab:grey", "negated": "tab:blue"}
CAPTION = ("Each point is one way of steering the negated test prompts (same prompts and seeds), measured against "
           "the unsteered story of the same prompt. Lines: the creativity direction, a random unit vector at the "
           "same layer and norm, and (if run) the negated direction, one point per lambda. Markers: the direction "
           "at other positions or layers, and probe-gated steering. Left: the pairwise judge's win rate over the "
           "unsteered story (position-debiased; Wilson 95% CI). Centre: the gain in a probe from another layer or "
           "source than the steering direction (t 95% CI). x: perplexity under the unsteered model as a ratio to "
           "the unsteered story's (geometric mean, 95% CI), and the repeated 3-gram rate. The star marks the "
           "recommended lambda; dashed lines the coherence bounds.")


def _xy(arms: list[dict], x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points and their CI half-widths (undefined intervals drawn as none)."""
    def values(key: str) -> tuple[np.ndarray, np.ndarray]:
        e = np.array([[a[key][k] if a[key][k] is not None else np.nan for k in ("estimate", "ci_low", "ci_high")]
                      for a in arms], dtype=float)
        return e[:, 0], np.clip(np.nan_to_num(np.vstack([e[:, 0] - e[:, 1], e[:, 2] - e[:, 0]])), 0, None)

    (xs, xe), (ys, ye) = values(x), values(y)
    return xs, ys, xe, ye


def _grid(a: dict, layer: int) -> bool:
    return a["positions"] == "all" and a["gate"] is None and a["layer"] in (None, layer)


def _panel(ax: plt.Axes, result: dict[str, Any], x: str, y: str) -> None:
    layer, rec = result["settings"]["layer"], result["recommendation"]
    arms = result["arms"]
    for kind, colour in LINES.items():
        line = sorted((a for a in arms if a["kind"] == kind and _grid(a, layer)), key=lambda a: a["alpha"])
        if not line:
            continue
        xs, ys, xe, ye = _xy(line, x, y)
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt="o-", color=colour, capsize=3, label=f"{kind} direction")
        for a, xi, yi in zip(line, xs, ys):
            ax.annotate(f"λ={a['alpha']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    others = [a for a in arms if a["kind"] == "real" and not _grid(a, layer)]
    for a, marker in zip(others, "sD^vP<>"):
        xs, ys, xe, ye = _xy([a], x, y)
        ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=marker, capsize=3, label=a["arm"])
    for a in arms:
        if a["arm"] == rec.get("arm"):
            ax.plot(a[x]["estimate"], a[y]["estimate"], "*", color="gold", markersize=16, markeredgecolor="black",
                    zorder=5, label="recommended")
    if x == "ppl_ratio":
        ax.axvline(rec["ppl_bound"], color="black", linestyle="--", linewidth=0.8)
    else:
        ax.axvline(result["baseline"]["repetition"]["estimate"] + rec["rep_bound"], color="black", linestyle="--",
                   linewidth=0.8)
    ax.axhline(0.5 if y == "win_rate" else 0.0, color="grey", linewidth=0.8)


def plot_frontier(result: dict[str, Any], path: str | Path) -> Path:
    """Creativity gain (judge win rate; other-source probe gain) against coherence cost (perplexity ratio;
    repetition), one line per direction with 95% CIs."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    panels = [("ppl_ratio", "win_rate", "pairwise judge: steered preferred over unsteered"),
              ("ppl_ratio", "probe_gain", "probe of another source: gain over unsteered"),
              ("repetition", "win_rate", "pairwise judge vs repetition")]
    for ax, (x, y, title) in zip(axes, panels):
        _panel(ax, result, x, y)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("perplexity ratio to unsteered (geometric mean)" if x == "ppl_ratio"
                      else "repeated 3-gram rate")
        ax.set_ylabel("win rate (ties lose)" if y == "win_rate" else "probe score gain")
    axes[0].legend(fontsize=7, loc="best")
    return _save(fig, path)


def _at_equal_length(lc: dict[str, Any] | None, digits: int) -> str:
    """A `rater_stats.length_ols` estimate, or why there is none."""
    if not lc:
        return "–"
    return fmt_estimate(lc, digits) if lc.get("estimate") is not None else f"– ({lc['reason']})"


def frontier_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per arm: the creativity measures, then the coherence measures, then length."""
    header = ["arm", "n", "win rate", "P(steered>base)", "P at equal length", "rating gain", "probe gain (other)",
              "other probe at equal length", "probe gain (own)", "ppl ratio", "repetition", "coherence gain", "words",
              "vs random: win diff", "vs random: other probe diff", "steered share"]
    rows = []
    for a in result["arms"]:
        vs = a.get("vs_random") or {}
        rows.append([a["arm"], str(a["n"]), fmt_estimate(a["win_rate"]), fmt_estimate(a["p_win"], 3),
                     _at_equal_length(a["p_win_length_controlled"], 3),
                     fmt_estimate(a["rating_gain"]), fmt_estimate(a["probe_gain"], 4),
                     _at_equal_length(a.get("probe_gain_length_controlled"), 4),
                     fmt_estimate(a["own_probe_gain"], 4), fmt_estimate(a["ppl_ratio"]),
                     fmt_estimate(a["repetition"], 3), fmt_estimate(a["coherence_gain"]), fmt_estimate(a["words"], 0),
                     fmt_estimate(vs.get("win_rate_diff")), fmt_estimate(vs.get("probe_gain_diff"), 4),
                     fmt_estimate(a.get("steered_share"))])
    return header, rows


def frontier_markdown(result: dict[str, Any], figure: str = "frontier.png") -> str:
    """The frontier section: figure, caption, table, the recommendation with its rule, gated vs constant."""
    b, rec, s = result["baseline"], result["recommendation"], result["settings"]
    parts = ["## Steering frontier: creativity gain vs coherence cost", "", f"![steering frontier]({figure})", "",
             CAPTION, "",
             f"Settings: {s['n_prompts']} negated test prompts, {s['max_new_tokens']} new tokens, seed {s['seed']}, "
             f"layer {s['layer']}, norm {s['norm']}; judge `{s['judge']}`; other-source probe at layer "
             f"{s['judge_probe']['layer']} ({s['judge_probe']['source']}, "
             f"{s['judge_probe'].get('tokens', 'input+response')} tokens, cosine with the steering direction "
             f"{s['judge_probe']['cosine_with_steering_direction']:.2f}).", "",
             f"Unsteered: median perplexity {b['median_ppl']:.1f}, repetition {fmt_estimate(b['repetition'], 3)}, "
             f"words {fmt_estimate(b['words'], 0)}, rating {fmt_estimate(b['rating'])}.", "",
             markdown_table(*frontier_rows(result)), "", f"**Rule.** {rec['rule']}", ""]
    if rec["alpha"] is None:
        parts.append(f"**Recommendation: none** — {rec['reason']}.")
    else:
        parts.append(f"**Recommended λ = {rec['alpha']:g}** ({rec['arm']}): win rate {fmt_estimate(rec['win_rate'])}, "
                     f"over the random direction {fmt_estimate(rec['win_rate_diff_vs_random'])}; goal "
                     f"{'met' if rec['goal_met'] else 'NOT met'}.")
    parts += ["", markdown_table(["λ", "eligible", "win-rate gain over random", "excluded because"],
                                 [[f"{g['alpha']:g}", str(g["eligible"]), "–" if g["gain_over_random"] is None
                                   else f"{g['gain_over_random']:+.2f}", g["excluded_because"] or "–"]
                                  for g in rec["grid"]]), ""]
    for g in result["gated_vs_constant"]:
        parts.append(f"Gated `{g['gated']}` vs constant `{g['against']}`: own-probe gain difference "
                     f"{fmt_estimate(g['own_probe_gain_diff'], 4)}, other-probe {fmt_estimate(g['probe_gain_diff'], 4)}, "
                     f"perplexity ratio {fmt_estimate(g['ppl_ratio'])}, repetition difference "
                     f"{fmt_estimate(g['repetition_diff'], 3)}, win-rate difference {fmt_estimate(g['win_rate_diff'])}: "
                     f"{'reaches' if g['reaches_probe_gain'] else 'does not reach'} the constant probe gain, "
                     f"{'at a lower' if g['lower_coherence_cost'] else 'not shown at a lower'} coherence cost.")
    return "\n".join(parts) + "\n"


def write_frontier(result: dict[str, Any], out: str | Path) -> None:
    """frontier.json, frontier.png and frontier.md of a `frontier.run` result, in its folder `out`."""
    out = Path(out)
    (out / "frontier.json").write_text(json.dumps(stats.plain(result), indent=1), encoding="utf-8")
    plot_frontier(result, out / "frontier.png")
    (out / "frontier.md").write_text(frontier_markdown(result, "frontier.png"), encoding="utf-8")
