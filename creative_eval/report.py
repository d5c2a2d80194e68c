"""The Figure-1 report, the judge comparison and CI checks, from judgement files (never re-running models).

From code (what `make demo` calls):

    path = report.build("demo", stories, ratings, preferences, probe_scores, humans=labels, meta=direction.meta)
    report.print_summary(report.read_summary(path)["summary"])   # key numbers with CIs

`build` writes `reports/<name>/report.md`, `report.html`, `figure1.png`, `summary.json` and `summary.md` and
returns the path of report.md. `probe_scores` maps story id -> probe score. From files: `load_runs(paths)`
reads stories / Rating / Preference / probe-score / human-label JSONL files and lm-eval results + samples.

Statistics (all from `stats`): ratings and probe scores per condition are means with a cluster bootstrap over
prompts; pairwise win rates and agreement with humans are proportions with a cluster bootstrap over prompts
(the two orders of a pair and all pairs of a prompt are one unit); a tie or an invalid judgement never
counts as a win. The pairwise reference label: of a baseline story and an induced (or creative) story, the
non-baseline one is the more creative.

CI checks: `PATH OP NUMBER`, PATH a dotted path into summary.json (`pairwise.<judge>.win_rate.ci_low>=0.5`,
`ratings.<judge>.induced.estimate>3`), OP one of >= <= > < == !=. A missing or NaN value fails.
"""

from __future__ import annotations

import html
import json
import math
import operator
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, TextIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import stats  # noqa: E402
from .humans import as_preferences, inter_rater_agreement, load_labels  # noqa: E402
from .records import CONDITIONS, HumanLabel, Preference, Rating, Story, iter_jsonl, read_records  # noqa: E402

CHANCE = 0.5


# ---------------------------------------------------------------- reading runs


@dataclass
class Run:
    """Everything a report reads: creative-eval records and lm-eval outputs."""

    stories: list[Story] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)
    probe: dict[str, float] = field(default_factory=dict)
    humans: list[HumanLabel] = field(default_factory=list)
    lm_eval: dict[str, Any] = field(default_factory=dict)


_KINDS = {  # the fields that identify a JSONL record type
    "rating": {"judge", "story_id", "expected"},
    "preference": {"judge", "pair_id", "decision"},
    "story": {"prompt_id", "condition", "text"},
    "probe": {"story_id", "probe"},
    "human": {"item_id", "story_a"},
}


def _kind(path: Path) -> str:
    first = next(iter_jsonl(path), None)
    if first is None:
        raise ValueError(f"{path}: empty file; remove it from the report inputs")
    keys = set(first[1])
    for kind, needed in _KINDS.items():
        if needed <= keys:
            return kind
    raise ValueError(f"{path}: records with fields {sorted(keys)} are not stories, ratings, preferences, probe "
                     "scores or human labels; pass only creative-eval and lm-eval output files")


def load_runs(paths: Iterable[str | Path]) -> Run:
    """Read run folders or files; JSONL files are told apart by their fields, lm-eval files by their names."""
    run = Run()
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"report input {p} not found; pass run folders or JSONL/JSON files")
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if f.name.startswith("results") and f.suffix == ".json":
            run.lm_eval.setdefault("results", []).append(json.loads(f.read_text(encoding="utf-8")))
        elif f.name.startswith("samples_") and f.suffix == ".jsonl":
            run.lm_eval.setdefault("samples", {})[f.stem] = [obj for _, obj in iter_jsonl(f)]
        elif f.suffix == ".jsonl":
            kind = _kind(f)
            if kind == "probe":
                run.probe.update({o["story_id"]: float(o["probe"]) for _, o in iter_jsonl(f)})
            elif kind == "human":
                run.humans += load_labels(f)
            else:
                cls = {"rating": Rating, "preference": Preference, "story": Story}[kind]
                getattr(run, {"rating": "ratings", "preference": "preferences", "story": "stories"}[kind]).extend(
                    read_records(f, cls))
    return run


# ---------------------------------------------------------------- statistics


def _prompt(story_id: str) -> str:
    return story_id.rsplit(":", 1)[0]


def _condition(story_id: str) -> str:
    return story_id.rsplit(":", 1)[-1]


def _conditions(ids: Iterable[str]) -> list[str]:
    present = {_condition(i) for i in ids}
    return [c for c in CONDITIONS if c in present] + sorted(present - set(CONDITIONS))


def _est(e: stats.Estimate) -> dict:
    return _clean(e.to_dict())


def _clean(obj: Any) -> Any:
    """NaN -> None, numpy -> Python, so summary.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if math.isnan(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _valid(r: Rating | Preference) -> bool:
    value = r.expected if isinstance(r, Rating) else r.decision
    return r.status == "ok" and value is not None


def _by_judge(records: Iterable[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        out[r.judge].append(r)
    return dict(sorted(out.items()))


def _mean_by_prompt(values: dict[str, float], n_boot: int) -> dict[str, dict]:
    """Per condition: mean over stories, CI by resampling prompts."""
    out = {}
    for cond in _conditions(values):
        ids = [i for i in values if _condition(i) == cond]
        v = [values[i] for i in ids]
        est = stats.cluster_bootstrap(v, [_prompt(i) for i in ids], n_boot=n_boot) if v else None
        out[cond] = {**_est(est), "values": v} if est else {"n": 0}
    return out


def rating_summary(ratings: list[Rating], n_boot: int = 2000) -> dict[str, dict]:
    """Per judge: mean 0-9 rating per condition, with the invalid count."""
    out = {}
    for judge, rs in _by_judge(ratings).items():
        ok = {r.story_id: float(r.expected) for r in rs if _valid(r)}
        per = {c: {k: v for k, v in e.items() if k != "values"} for c, e in _mean_by_prompt(ok, n_boot).items()}
        out[judge] = {**per, "n_judgements": len(rs), "n_invalid": len(rs) - len(ok)}
    return out


def _expected(p: Preference) -> str | None:
    """The reference label: the non-baseline story of a baseline-vs-other pair; None for other pairs."""
    a, b = _condition(p.story_a), _condition(p.story_b)
    if (a == "baseline") == (b == "baseline"):
        return None
    return "B" if a == "baseline" else "A"


def _agreement(decisions: list[str], labels: list[str], clusters: list[str], n_boot: int) -> dict:
    parts = stats.pairwise_agreement(decisions, labels, clusters=clusters, n_boot=n_boot, unit="prompt")
    return {"agreement": _est(parts["accuracy_incl_ties"]), "agreement_excl_ties": _est(parts["accuracy_excl_ties"]),
            "tie_rate": _est(parts["tie_rate"]), "n": len(decisions)}


def _comparison(p: Preference, expected: str) -> str:
    """"induced>baseline": the reference winner, then the baseline."""
    winner, loser = (p.story_a, p.story_b) if expected == "A" else (p.story_b, p.story_a)
    return f"{_condition(winner)}>{_condition(loser)}"


def _win_rates(scored: list[tuple[Preference, str]], n_boot: int) -> dict:
    ok = [(p, e) for p, e in scored if _valid(p)]
    entry: dict[str, Any] = {"n_judgements": len(scored), "n_invalid": len(scored) - len(ok)}
    if ok:
        agree = _agreement([p.decision for p, _ in ok], [e for _, e in ok], [_prompt(p.story_a) for p, _ in ok], n_boot)
        entry.update(win_rate=agree["agreement"], win_rate_excl_ties=agree["agreement_excl_ties"],
                     tie_rate=agree["tie_rate"], n_ties=agree["tie_rate"]["extra"]["judge_ties"])
    return entry


def pair_biases(preferences: Iterable[Preference], words: dict[str, int]) -> dict[str, dict]:
    """Two biases of a pairwise judge over its valid judgements: position consistency (both orders agree) and
    how often the longer story wins among decisive judgements of stories of different length (`words`: story
    id -> word count; pairs with unknown lengths are left out). Wilson intervals over pairs."""
    ok = [p for p in preferences if _valid(p)]
    sized = [(p, words[p.story_a], words[p.story_b]) for p in ok if p.decision in ("A", "B")
             and p.story_a in words and p.story_b in words and words[p.story_a] != words[p.story_b]]
    longer = sum((p.decision == "A") == (a > b) for p, a, b in sized)
    return {"position_consistency": _est(stats.proportion_ci(sum(bool(p.consistent) for p in ok), len(ok), unit="pair")),
            "longer_wins": _est(stats.proportion_ci(longer, len(sized), unit="pair"))}


def pairwise_summary(preferences: list[Preference], n_boot: int = 2000,
                     words: dict[str, int] | None = None) -> dict[str, dict]:
    """Per judge: win rate of the more creative condition (the reference label) over all baseline pairs and per
    comparison (`comparisons["induced>baseline"]`), ties and invalid counts, and the judge's biases."""
    out = {}
    for judge, ps in _by_judge(preferences).items():
        scored = [(p, e) for p in ps if (e := _expected(p)) is not None]
        groups: dict[str, list] = defaultdict(list)
        for p, e in scored:
            groups[_comparison(p, e)].append((p, e))
        out[judge] = {**_win_rates(scored, n_boot), **pair_biases(ps, words or {}),
                      "comparisons": {c: _win_rates(g, n_boot) for c, g in sorted(groups.items())}}
    return out


def _matched(preferences: list[Preference], humans: list[HumanLabel]) -> dict[str, list[tuple[str, str, str, str]]]:
    """Per judge: (item key, judge decision, human choice in the judge's A/B order, prompt) for each label."""
    labels: dict[frozenset, list[HumanLabel]] = defaultdict(list)
    for h in humans:
        if h.choice is not None:
            labels[frozenset((h.story_a, h.story_b))].append(h)
    flip = {"A": "B", "B": "A", "tie": "tie"}
    out: dict[str, list] = {}
    for judge, ps in _by_judge(preferences).items():
        rows = []
        for p in ps:
            for h in labels.get(frozenset((p.story_a, p.story_b)), []):
                choice = h.choice if h.story_a == p.story_a else flip[h.choice]
                decision = p.decision if _valid(p) else None
                rows.append((f"{p.pair_id}|{h.item_id}|{h.rater}", decision, choice, _prompt(p.story_a)))
        if rows:
            out[judge] = rows
    return out


def _rating_agreement(ratings: list[Rating], humans: list[HumanLabel], n_boot: int) -> dict[str, dict]:
    """Per judge and human aspect (item id suffix after '#'): Spearman of judge rating vs mean human rating."""
    human: dict[tuple[str, str], list[float]] = defaultdict(list)
    for h in humans:
        if h.rating is not None:
            human[(h.item_id.partition("#")[2] or "rating", h.story_a)].append(h.rating)
    out: dict[str, dict] = {}
    for judge, rs in _by_judge(ratings).items():
        mine = {r.story_id: float(r.expected) for r in rs if _valid(r)}
        for aspect in sorted({a for a, _ in human}):
            ids = [s for a, s in human if a == aspect and s in mine]
            if len(ids) >= 3:
                est = stats.correlation_ci([mine[s] for s in ids], [np.mean(human[(aspect, s)]) for s in ids],
                                           n_boot=n_boot)
                out.setdefault(judge, {})[aspect] = _est(est)
    return out


def compare_judges(preferences: list[Preference], ratings: list[Rating], humans: list[HumanLabel],
                   n_boot: int = 2000) -> dict[str, Any]:
    """Each judge against human labels, and judges against each other (exact McNemar, Holm-adjusted).

    Pairwise: agreement (a tie is right only if the human tied; an invalid judgement is counted apart and left
    out), its CI resampling prompts, Cohen's kappa over A/B/tie. Ratings: Spearman with the mean human rating.
    McNemar compares two judges' correctness on the items both judged validly.
    """
    matched = _matched(preferences, humans)
    judges: dict[str, dict] = {}
    correct: dict[str, dict[str, bool]] = {}
    for judge, rows in matched.items():
        ok = [r for r in rows if r[1] is not None]
        entry = {"n_labels": len(rows), "n_invalid": len(rows) - len(ok)}
        if ok:
            entry.update(_agreement([r[1] for r in ok], [r[2] for r in ok], [r[3] for r in ok], n_boot))
            entry["kappa"] = _est(stats.cohen_kappa([r[1] for r in ok], [r[2] for r in ok], n_boot=n_boot))
            entry["n_ties"] = entry["tie_rate"]["extra"]["judge_ties"]
            correct[judge] = {r[0]: r[1] == r[2] for r in ok}
        judges[judge] = entry
    for judge, aspects in _rating_agreement(ratings, humans, n_boot).items():
        judges.setdefault(judge, {})["spearman"] = aspects
    tests = []
    for a, b in combinations(sorted(correct), 2):
        common = sorted(set(correct[a]) & set(correct[b]))
        if common:
            test = stats.mcnemar_exact([correct[a][k] for k in common], [correct[b][k] for k in common])
            tests.append({"judge_a": a, "judge_b": b, **test})
    for t, p in zip(tests, stats.holm([t["p_value"] for t in tests])):
        t["p_holm"] = p
    return _clean({"judges": judges, "mcnemar": tests})


def run_meta(stories: list[Story], meta: dict | None = None) -> dict[str, Any]:
    """Model, direction, lambda and seeds as recorded on the stories, plus caller-given metadata."""
    def values(key: str, subset: Iterable[Story]) -> list:
        return sorted({json.dumps(s.settings.get(key)) for s in subset if key in s.settings})

    induced = [s for s in stories if s.condition == "induced"]
    out = {key: [json.loads(v) for v in values(key, stories)]
           for key in ("model", "direction", "layer", "norm", "positions", "temperature", "max_new_tokens")}
    out["lambda"] = [json.loads(v) for v in values("alpha", induced)]
    out["seeds"] = [json.loads(v) for v in values("seed", stories)]
    out["n_prompts"] = len({s.prompt_id for s in stories})
    out["n_stories"] = len(stories)
    return {**{k: v for k, v in out.items() if v not in ([], None)}, **(meta or {})}


def lm_eval_summary(lm_eval: dict[str, Any]) -> dict[str, dict]:
    """lm-eval results (value ± stderr per task and metric) and per-sample means with t intervals."""
    out: dict[str, dict] = {}
    for result in lm_eval.get("results", []):
        for task, metrics in result.get("results", {}).items():
            for key, value in metrics.items():
                name, _, filt = key.partition(",")
                if isinstance(value, (int, float)) and not name.endswith("_stderr"):
                    stderr = metrics.get(f"{name}_stderr,{filt}" if filt else f"{name}_stderr")
                    out.setdefault(task, {})[name] = {"value": value, "stderr": stderr
                                                      if isinstance(stderr, (int, float)) else None}
    for stem, rows in lm_eval.get("samples", {}).items():
        task = re.sub(r"^samples_|_\d{4}-\d{2}-\d{2}T.*$", "", stem)
        for metric in sorted({m for r in rows for m in r.get("metrics", [])}):
            vals = [float(r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
            if vals:
                out.setdefault(task, {}).setdefault(metric, {})["samples"] = _est(stats.mean_ci(vals, unit="sample"))
    return _clean(out)


def summarize(stories: list[Story], ratings: list[Rating], preferences: list[Preference],
              probe_scores: dict[str, float], humans: list[HumanLabel] | None = None, meta: dict | None = None,
              lm_eval: dict[str, Any] | None = None, n_boot: int = 2000) -> dict[str, Any]:
    """All the report's numbers as one JSON-ready dict (the object CI checks address)."""
    return _clean({
        "meta": run_meta(stories, meta),
        "ratings": rating_summary(ratings, n_boot),
        "probe": _mean_by_prompt(probe_scores, n_boot),
        "pairwise": pairwise_summary(preferences + as_preferences(humans or []), n_boot,
                                     {s.id: len(s.text.split()) for s in stories}),
        "humans": {**compare_judges(preferences, ratings, humans or [], n_boot),
                   "inter_rater": _est(alpha) if (alpha := inter_rater_agreement(humans or [])) else None},
        "lm_eval": lm_eval_summary(lm_eval or {}),
    })


# ---------------------------------------------------------------- figures


def _ci_err(ests: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    mid = np.array([e.get("estimate") if e.get("estimate") is not None else np.nan for e in ests], dtype=float)
    lo = np.array([e.get("ci_low") if e.get("ci_low") is not None else np.nan for e in ests], dtype=float)
    hi = np.array([e.get("ci_high") if e.get("ci_high") is not None else np.nan for e in ests], dtype=float)
    return mid, np.nan_to_num(np.vstack([mid - lo, hi - mid]))


def _empty(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _panel_ratings(ax: plt.Axes, ratings: dict[str, dict]) -> None:
    ax.set_title("Judge ratings per condition")
    conds = _conditions(f"x:{c}" for e in ratings.values() for c, v in e.items() if isinstance(v, dict))
    if not conds:
        return _empty(ax, "no ratings")
    width = 0.8 / len(ratings)
    for j, (judge, entry) in enumerate(ratings.items()):
        mid, err = _ci_err([entry.get(c, {}) for c in conds])
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


def _panel_agreement(ax: plt.Axes, pairwise: dict[str, dict], humans: dict[str, Any]) -> None:
    ax.set_title("Pairwise judges: agreement with labels")
    bars = [(j, "agrees with human labels", e["agreement"]) for j, e in humans["judges"].items() if "agreement" in e]
    bars += [(j, "prefers " + c.replace(">", " over "), e["win_rate"]) for j, entry in pairwise.items()
             for c, e in entry.get("comparisons", {}).items() if "win_rate" in e]
    if not bars:
        return _empty(ax, "no pairwise judgements")
    judges = sorted({b[0] for b in bars})
    kinds = list(dict.fromkeys(b[1] for b in sorted(bars, key=lambda b: (not b[1].startswith("agrees"), b[1]))))
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        sel = {j: e for j, kd, e in bars if kd == kind}
        mid, err = _ci_err([sel.get(j, {}) for j in judges])
        x = np.arange(len(judges)) + (k - (len(kinds) - 1) / 2) * width
        ax.bar(x, mid, width, yerr=err, capsize=4, label=kind)
        for xi, j, m, up in zip(x, judges, mid, err[1]):
            if j in sel:
                ax.text(xi, np.nan_to_num(m) + up + 0.01, f"{m:.2f}\nn={sel[j]['n']}", ha="center", va="bottom",
                        fontsize=7)
    ax.axhline(CHANCE, color="grey", linestyle="--", linewidth=1, label="chance (no ties)")
    ax.set_xticks(range(len(judges)), judges)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("share of pairs, ties count as wrong (95% CI)")
    ax.legend(fontsize=8, loc="upper right")


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure1(summary: dict[str, Any], path: str | Path) -> Path:
    """Figure 1: ratings per condition and judge | probe score per condition | judges' agreement."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    _panel_ratings(axes[0], summary["ratings"])
    _panel_probe(axes[1], summary["probe"])
    _panel_agreement(axes[2], summary["pairwise"], summary["humans"])
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


# ---------------------------------------------------------------- tables and documents


def fmt_estimate(e: dict | None, digits: int = 2) -> str:
    """`0.50 [0.29, 0.71]`, or `–` for a missing or undefined estimate."""
    if not e or e.get("estimate") is None:
        return "–"
    if e.get("ci_low") is None:
        return f"{e['estimate']:.{digits}f}"
    return f"{e['estimate']:.{digits}f} [{e['ci_low']:.{digits}f}, {e['ci_high']:.{digits}f}]"


Table = tuple[str, list[str], list[list[str]]]


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def tables(summary: dict[str, Any]) -> list[Table]:
    """The report's tables as (title, header, rows), rendered to Markdown and HTML alike."""
    out: list[Table] = []
    meta = summary["meta"]
    out.append(("Run", ["setting", "value"], [[k, json.dumps(v) if not isinstance(v, str) else v]
                                             for k, v in meta.items()]))
    rows = [[judge, cond, str(e.get("n", 0)), fmt_estimate(e), str(entry["n_invalid"])]
            for judge, entry in summary["ratings"].items() for cond, e in entry.items() if isinstance(e, dict)]
    out.append(("Ratings (0-9), mean per condition, 95% CI resampling prompts",
                ["judge", "condition", "n prompts", "mean [95% CI]", "invalid (judge)"], rows))
    rows = [[c, str(e.get("n", 0)), fmt_estimate(e, 4)] for c, e in summary["probe"].items()]
    out.append(("Probe score per condition, 95% CI resampling prompts", ["condition", "n prompts", "mean [95% CI]"],
                rows))
    rows = [[j, c, str(e["n_judgements"]), fmt_estimate(e.get("win_rate")), fmt_estimate(e.get("win_rate_excl_ties")),
             str(e.get("n_ties", "–")), str(e["n_invalid"])] for j, entry in summary["pairwise"].items()
            for c, e in [("all", entry), *entry.get("comparisons", {}).items()]]
    out.append(("Pairwise: the more creative condition preferred (baseline vs induced/creative)",
                ["judge", "comparison", "n pairs", "win rate (ties lose)", "win rate excl. ties", "ties", "invalid"],
                rows))
    rows = [[j, fmt_estimate(e.get("position_consistency")), str(e.get("position_consistency", {}).get("n", 0)),
             fmt_estimate(e.get("longer_wins")), str(e.get("longer_wins", {}).get("n", 0))]
            for j, e in summary["pairwise"].items()]
    out.append(("Pairwise judges' biases (Wilson 95% CI over pairs)",
                ["judge", "position consistency", "n", "longer story wins", "n decisive, lengths differ"], rows))
    out += compare_tables(summary["humans"])
    for task, metrics in summary["lm_eval"].items():
        rows = [[m, _p(v.get("value")), _p(v.get("stderr")), fmt_estimate(v.get("samples"), 3),
                 str(v.get("samples", {}).get("n", "–"))] for m, v in metrics.items()]
        out.append((f"lm-eval task {task}", ["metric", "value", "stderr", "per-sample mean [95% CI]", "n"], rows))
    return out


def compare_tables(result: dict[str, Any]) -> list[Table]:
    """compare-judges as tables: each judge vs human labels, then McNemar tests between judges."""
    rows = []
    for judge, e in result["judges"].items():
        if "n_labels" in e:
            rows.append([judge, "pairwise", str(e["n_labels"]), fmt_estimate(e.get("agreement")),
                         fmt_estimate(e.get("agreement_excl_ties")), fmt_estimate(e.get("kappa")), str(e.get("n_ties", "–")),
                         str(e["n_invalid"])])
        for aspect, est in e.get("spearman", {}).items():
            rows.append([judge, f"rating: Spearman with human {aspect}", str(est["n"]), fmt_estimate(est), "–", "–", "–", "–"])
    out: list[Table] = [("Judges vs human labels (95% CI; agreement resamples prompts)",
                         ["judge", "kind", "n", "agreement", "agreement excl. ties", "kappa", "ties", "invalid"],
                         rows)] if rows else []
    if result.get("inter_rater"):
        e = result["inter_rater"]
        out.append(("Human raters: inter-rater agreement", ["statistic", "n items", "estimate [95% CI]"],
                    [["Krippendorff's alpha (nominal A/B/tie)", str(e["n"]), fmt_estimate(e, 3)]]))
    tests = [[t["judge_a"], t["judge_b"], str(t["n"]), f"{t['b']}/{t['c']}", _p(t["p_value"]), _p(t["p_holm"])]
             for t in result["mcnemar"]]
    if tests:
        out.append(("Judge vs judge: exact McNemar on correctness, Holm-adjusted",
                    ["judge A", "judge B", "n common", "A only / B only right", "p", "p (Holm)"], tests))
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CAPTION = ("Left: mean 0-9 rating per condition and judge. Centre: probe score per story (violin, dots) with the "
            "mean. Right: pairwise judges' agreement with human labels and how often they prefer the more creative "
            "condition (induced or creative prompt over baseline). "
            "Bars: 95% CIs resampling prompts.")


def render_markdown(name: str, summary: dict[str, Any], checks: list["Check"] = ()) -> str:
    parts = [f"# creative-eval report: {name}", "", "![Figure 1](figure1.png)", "", _CAPTION, ""]
    for title, header, rows in tables(summary):
        parts += [f"## {title}", "", markdown_table(header, rows) if rows else "_none_", ""]
    if checks:
        parts += ["## Checks", "", markdown_table(*_check_rows(checks)), ""]
    return "\n".join(parts)


def render_html(name: str, summary: dict[str, Any], checks: list["Check"] = ()) -> str:
    title = html.escape(f"creative-eval report: {name}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>", f"<h1>{title}</h1>",
             "<img src='figure1.png' alt='Figure 1' style='max-width:100%'>", f"<p>{html.escape(_CAPTION)}</p>"]
    for t, header, rows in tables(summary):
        parts += [f"<h2>{html.escape(t)}</h2>", _html_table(header, rows) if rows else "<p>none</p>"]
    if checks:
        parts += ["<h2>Checks</h2>", _html_table(*_check_rows(checks))]
    return "\n".join(parts + ["</body></html>"])


# ---------------------------------------------------------------- CI checks


@dataclass
class Check:
    """One CI check and its outcome; `value` is None when the path is missing or NaN."""

    expr: str
    path: str
    op: str
    threshold: float
    value: float | None = None
    passed: bool = False
    error: str = ""


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
        "!=": operator.ne}
_CHECK = re.compile(r"^\s*(?P<path>[^<>=!\s]+)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")


def parse_check(expr: str) -> Check:
    """`PATH OP NUMBER` -> Check; a malformed expression is an error naming the expected syntax."""
    m = _CHECK.match(expr)
    if not m:
        raise ValueError(f"check {expr!r} is not PATH OP NUMBER, e.g. 'pairwise.self.win_rate.ci_low>=0.5' "
                         f"(OP one of {' '.join(_OPS)})")
    return Check(expr, m["path"], m["op"], float(m["num"]))


def _resolve(summary: dict[str, Any], path: str) -> Any:
    """Follow a dotted path; a key may itself contain dots (judge names), so the longest matching key wins."""
    node, parts = summary, path.split(".")
    while parts:
        if not isinstance(node, dict):
            raise KeyError(f"{'.'.join(parts)!r} goes below a number")
        for j in range(len(parts), 0, -1):
            key = ".".join(parts[:j])
            if key in node:
                node, parts = node[key], parts[j:]
                break
        else:
            raise KeyError(f"no {parts[0]!r} here; choose from {sorted(node)}")
    return node


def run_checks(summary: dict[str, Any], exprs: Iterable[str]) -> list[Check]:
    """Evaluate every check; a missing or non-numeric value fails with the reason in `error`."""
    out = []
    for expr in exprs:
        c = parse_check(expr)
        try:
            value = _resolve(summary, c.path)
        except KeyError as e:
            c.error = f"{c.path}: {e.args[0]}"
        else:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                c.value, c.passed = float(value), _OPS[c.op](float(value), c.threshold)
            else:
                c.error = f"{c.path} is {'missing or NaN' if value is None else 'not a number'}"
        out.append(c)
    return out


def _check_rows(checks: list[Check]) -> tuple[list[str], list[list[str]]]:
    rows = [["✅ pass" if c.passed else "❌ fail", f"`{c.expr}`", "–" if c.value is None else f"{c.value:.4g}",
             c.error] for c in checks]
    return ["result", "check", "value", "note"], rows


def ci_markdown(name: str, summary: dict[str, Any], checks: list[Check], report_path: str | Path) -> str:
    """A short summary for a CI step summary or a pull-request comment: key numbers and the checks."""
    status = "all checks passed" if all(c.passed for c in checks) else "CHECKS FAILED"
    lines = [f"### creative-eval: {name} — {status if checks else 'no checks'}", ""]
    key = [[j, c, fmt_estimate(e)] for j, entry in summary["ratings"].items() for c, e in entry.items() if isinstance(e, dict)]
    key += [[j, "pairwise win rate", fmt_estimate(e.get("win_rate"))] for j, e in summary["pairwise"].items()]
    key += [[j, "agreement with humans", fmt_estimate(e.get("agreement"))] for j, e in summary["humans"]["judges"].items()
            if "agreement" in e]
    key += [["probe", c, fmt_estimate(e, 4)] for c, e in summary["probe"].items()]
    if key:
        lines += [markdown_table(["judge", "measure", "estimate [95% CI]"], key), ""]
    if checks:
        lines += [markdown_table(*_check_rows(checks)), ""]
    lines.append(f"Full report: `{report_path}`")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- writing


def write(name: str, summary: dict[str, Any], out_root: str | Path = "reports", checks: list[Check] = ()) -> Path:
    """Write report.md, report.html, figure1.png, summary.json and summary.md under out_root/name."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"report name {name!r} must be a plain folder name, e.g. 'demo'")
    folder = Path(out_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    figure1(summary, folder / "figure1.png")
    report = folder / "report.md"
    report.write_text(render_markdown(name, summary, checks), encoding="utf-8")
    (folder / "report.html").write_text(render_html(name, summary, checks), encoding="utf-8")
    doc = {"name": name, "summary": summary, "checks": [c.__dict__ for c in checks],
           "passed": all(c.passed for c in checks)}
    (folder / "summary.json").write_text(json.dumps(_clean(doc), indent=1), encoding="utf-8")
    (folder / "summary.md").write_text(ci_markdown(name, summary, checks, report), encoding="utf-8")
    return report


def build(name: str, stories: list[Story], ratings: list[Rating], preferences: list[Preference],
          probe_scores: dict[str, float], humans: list[HumanLabel] | None = None, meta: dict | None = None,
          *, lm_eval: dict[str, Any] | None = None, checks: Iterable[str] = (), out_root: str | Path = "reports",
          n_boot: int = 2000) -> Path:
    """Summarize, run the checks and write the report; returns the path of report.md."""
    exprs = list(checks)
    for e in exprs:
        parse_check(e)  # fail on a malformed check before spending time on statistics
    summary = summarize(stories, ratings, preferences, probe_scores, humans, meta, lm_eval, n_boot)
    return write(name, summary, out_root, run_checks(summary, exprs))


def read_summary(report_path: str | Path) -> dict[str, Any]:
    """summary.json next to a report.md: {"name", "summary", "checks", "passed"}."""
    return json.loads((Path(report_path).parent / "summary.json").read_text(encoding="utf-8"))


def print_summary(summary: dict[str, Any], file: TextIO = sys.stdout) -> None:
    """The key numbers with their CIs, one line each."""
    for judge, entry in summary["ratings"].items():
        for cond, e in entry.items():
            if isinstance(e, dict):
                print(f"rating   {judge:<16} {cond:<10} {fmt_estimate(e)}  (n={e.get('n', 0)} prompts)", file=file)
    for cond, e in summary["probe"].items():
        print(f"probe    {cond:<27} {fmt_estimate(e, 4)}  (n={e.get('n', 0)} prompts)", file=file)
    for judge, entry in summary["pairwise"].items():
        for comparison, e in entry.get("comparisons", {}).items():
            print(f"pairwise {judge:<16} {comparison:<18} win rate {fmt_estimate(e.get('win_rate'))}  "
                  f"ties {e.get('n_ties', 0)}, invalid {e['n_invalid']}  (n={e['n_judgements']} pairs)", file=file)
    for judge, e in summary["humans"]["judges"].items():
        if "agreement" in e:
            print(f"humans   {judge:<16} agreement {fmt_estimate(e['agreement'])}  kappa {fmt_estimate(e.get('kappa'))}", file=file)
