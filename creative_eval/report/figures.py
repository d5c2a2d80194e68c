"""Figure 1 (ratings | probe | pairwise agreement) and the layer-sweep plot, from summary dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from creative_eval.people.agreement import TRIVIAL_JUDGES  # noqa: E402
from creative_eval.report.summary import CHANCE, ordered_conditions  # noqa: E402


def _ci_err(ests: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    mid = np.array([e.get("estimate") if e.get("estimate") is not None else np.nan for e in ests], dtype=float)
    lo = np.array([e.get("ci_low") if e.get("ci_low") is not None else np.nan for e in ests], dtype=float)
    hi = np.array([e.get("ci_high") if e.get("ci_high") is not None else np.nan for e in ests], dtype=float)
    return mid, np.clip(np.nan_to_num(np.vstack([mid - lo, hi - mid])), 0, None)  # Wilson at 0 or 1: -1e-17


def _empty(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _panel_ratings(ax: plt.Axes, ratings: dict[str, dict]) -> None:
    ax.set_title("Judge ratings per condition")
    conds = ordered_conditions(c for e in ratings.values() for c in e["conditions"])
    if not conds:
        return _empty(ax, "no ratings")
    width = 0.8 / len(ratings)
    for j, (judge, entry) in enumerate(ratings.items()):
        mid, err = _ci_err([entry["conditions"].get(c, {}) for c in conds])
        ax.bar(np.arange(len(conds)) + (j - (len(ratings) - 1) / 2) * width, mid, width, yerr=err, capsize=4,
               label=f"{judge} (invalid {entry['n_invalid']})")
    ax.set_xticks(range(len(conds)), conds)
    ax.set_ylim(0, 9)
    ax.set_ylabel("mean rating, 0-9 (95% CI over prompts)")
    ax.legend(fontsize=8, loc="upper left")


def _panel_probe(ax: plt.Axes, probe: dict[str, dict]) -> None:
    ax.set_title("Probe score per condition")
    conds = [c for c, e in probe.items() if e.get("values")]
    if not conds:
        return _empty(ax, "no probe scores")
    ax.violinplot([probe[c]["values"] for c in conds], positions=range(len(conds)), showextrema=False)
    rng = np.random.default_rng(0)
    for i, c in enumerate(conds):
        v = probe[c]["values"]
        ax.scatter(i + rng.uniform(-0.08, 0.08, len(v)), v, s=8, color="grey", alpha=0.6, zorder=2)
    mid, err = _ci_err([probe[c] for c in conds])
    ax.errorbar(range(len(conds)), mid, yerr=err, fmt="o", color="black", capsize=6, zorder=3, label="mean, 95% CI")
    ax.set_xticks(range(len(conds)), [f"{c}\n(n={probe[c]['n']})" for c in conds])
    ax.set_ylabel("probe score (mean cosine with direction)")
    ax.legend(fontsize=8)


def _panel_people(ax: plt.Axes, rows: list[dict], title: str) -> None:
    """Each judge's agreement with people (trivial judges in grey beside them), n, ties and invalid shown."""
    ax.set_title(title, fontsize=10)
    if not rows:
        return _empty(ax, "no pairs with people's labels judged")
    x = np.arange(len(rows))
    mid, err = _ci_err([r["accuracy"] for r in rows])
    colors = ["lightgrey" if r["judge"].startswith(TRIVIAL_JUDGES) else f"C{i}" for i, r in enumerate(rows)]
    ax.bar(x, mid, 0.7, yerr=err, capsize=4, color=colors)
    for xi, r, m, up in zip(x, rows, mid, err[1]):
        ax.text(xi, np.nan_to_num(m) + up + 0.01, f"{m:.2f}\nn={r['n']}\nties {r['ties']}\ninv. {r['invalid']}",
                ha="center", va="bottom", fontsize=6.5)
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, [r["judge"] for r in rows], rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("agreement with people (ties, invalid = wrong; Wilson 95% CI)", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")


def _panel_spearman(ax: plt.Axes, rows: list[dict], title: str) -> None:
    ax.set_title(title, fontsize=10)
    x = np.arange(len(rows))
    mid, err = _ci_err([r["spearman"] or {} for r in rows])
    ax.bar(x, mid, 0.7, yerr=err, capsize=4, color=[f"C{i}" for i in range(len(rows))])
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(x, [f"{r['judge']}\n{r['aspect']} (n={r['n']})" for r in rows], fontsize=8)
    ax.set_ylabel("Spearman with the people's mean rating (95% CI)", fontsize=8)


def agreement_figure(result: dict[str, Any], path: str | Path) -> Path:
    """The agreement suite's figure: pairwise agreement beside the trivial judges, and rating correlations."""
    panels = [p for p in ("pairwise", "ratings") if result[p]] or ["pairwise"]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    for ax, kind in zip(axes[0], panels):
        if kind == "pairwise":
            _panel_people(ax, result["pairwise"], f"{result['set']}: {result['label']}")
        else:
            _panel_spearman(ax, result["ratings"], f"{result['set']}: {result['label']}")
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure1(summary: dict[str, Any], path: str | Path) -> Path:
    """Figure 1: ratings per condition and judge | probe score per condition | judges' agreement with people."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    _panel_ratings(axes[0], summary["ratings"])
    _panel_probe(axes[1], summary["probe"])
    people = summary.get("people") or {"rows": [], "label": "no people's labels"}
    _panel_people(axes[2], people["rows"], f"Agreement with people: {people['label']}")
    return _save(fig, path)


def plot_sweep(result: dict[str, Any], path: str | Path) -> Path:
    """AUROC per layer with its CI, the robustness AUROC, the TF-IDF baseline and the chosen layer."""
    layers = result["layers"]
    x = [r["layer"] for r in layers]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    mid, err = _ci_err([{"estimate": r["auroc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]} for r in layers])
    ax.errorbar(x, mid, yerr=err, fmt="o-", capsize=3, label="test AUROC (95% CI)")
    ax.plot(x, [r["robust_auroc"] for r in layers], "s--", label="robustness AUROC")
    lex = result.get("lexical_baseline", {})
    if "test_auroc" in lex:
        ax.axhline(lex["test_auroc"], color="grey", linestyle=":", label="TF-IDF baseline (test)")
    ax.axvline(result["best_layer"], color="green", alpha=0.4, linewidth=6, label=f"chosen layer {result['best_layer']}")
    ax.axhline(CHANCE, color="black", linewidth=0.8)
    ax.set_xlabel("layer (output of decoder block l)")
    ax.set_ylabel("AUROC, creative vs negated prompt")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
