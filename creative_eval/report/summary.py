"""The report's numbers: ratings and probe scores per condition, pairwise win rates, judges against human
labels, run metadata and lm-eval results, as one JSON-ready dict (the object CI checks address).

Ratings and probe scores per condition are means with a cluster bootstrap over prompts; pairwise win rates and
agreement with humans are proportions with a cluster bootstrap over prompts (the two orders of a pair and all
pairs of a prompt are one unit); a tie or an invalid judgement never counts as a win. The pairwise reference
label: of a baseline story and an induced (or creative) story, the non-baseline one is the more creative.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from itertools import combinations
from typing import Any, Iterable

import numpy as np

from creative_eval import rater_stats, stats
from creative_eval.people import agreement
from creative_eval.people.humans import SOURCE_RATER, as_preferences, inter_rater_agreement
from creative_eval.records import CONDITIONS, HumanLabel, Preference, Rating, Story, split_story_id

CHANCE = 0.5


def _prompt(story_id: str) -> str:
    return split_story_id(story_id)[0]


def _condition(story_id: str) -> str:
    return split_story_id(story_id)[1]


def ordered_conditions(conditions: Iterable[str]) -> list[str]:
    """The paper's conditions first, in their order, then any other condition or source label."""
    present = set(conditions)
    return [c for c in CONDITIONS if c in present] + sorted(present - set(CONDITIONS))


def _est(e: stats.Estimate) -> dict:
    return stats.plain(e)


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
    for cond in ordered_conditions(_condition(i) for i in values):
        ids = [i for i in values if _condition(i) == cond]
        v = [values[i] for i in ids]
        est = stats.cluster_bootstrap(v, [_prompt(i) for i in ids], n_boot=n_boot) if v else None
        out[cond] = {**_est(est), "values": v} if est else {"n": 0}
    return out


def rating_summary(ratings: list[Rating], n_boot: int = 2000) -> dict[str, dict]:
    """Per judge: `conditions` (mean 0-9 rating per condition) beside the judgement and invalid counts."""
    out = {}
    for judge, rs in _by_judge(ratings).items():
        ok = {r.story_id: float(r.expected) for r in rs if _valid(r)}
        per = {c: {k: v for k, v in e.items() if k != "values"} for c, e in _mean_by_prompt(ok, n_boot).items()}
        out[judge] = {"conditions": per, "n_judgements": len(rs), "n_invalid": len(rs) - len(ok)}
    return out


def _expected(p: Preference) -> str | None:
    """The reference label: the non-baseline story of a baseline-vs-other pair; None for other pairs."""
    a, b = _condition(p.story_a), _condition(p.story_b)
    if (a == "baseline") == (b == "baseline"):
        return None
    return "B" if a == "baseline" else "A"


def _agreement(decisions: list[str], labels: list[str], clusters: list[str], n_boot: int) -> dict:
    parts = rater_stats.pairwise_agreement(decisions, labels, clusters=clusters, n_boot=n_boot, unit="prompt")
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
    """Three biases of a pairwise judge over its valid judgements: position bias (mean P(first shown is better)
    over both orders, t interval; 0.5 is none; LLM judges only), position consistency (both orders name the
    same story) and how often the longer story wins among decisive judgements of stories of different length
    (`words`: story id -> word count; pairs with unknown lengths are left out). Wilson intervals over pairs."""
    ok = [p for p in preferences if _valid(p)]
    sized = [(p, words[p.story_a], words[p.story_b]) for p in ok if p.decision in ("A", "B")
             and p.story_a in words and p.story_b in words and words[p.story_a] != words[p.story_b]]
    longer = sum((p.decision == "A") == (a > b) for p, a, b in sized)
    first = [(p.p_first_ab + p.p_first_ba) / 2 for p in ok if p.p_first_ab is not None and p.p_first_ba is not None]
    return {"position_bias": _est(stats.mean_ci(first, unit="pair", bounds=(0, 1))) if first else None,
            "position_consistency": _est(stats.proportion_ci(sum(bool(p.consistent) for p in ok), len(ok), unit="pair")),
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
            entry["kappa"] = _est(rater_stats.cohen_kappa([r[1] for r in ok], [r[2] for r in ok], n_boot=n_boot))
            entry["n_ties"] = entry["tie_rate"]["extra"]["judge_ties"]
            correct[judge] = {r[0]: r[1] == r[2] for r in ok}
        judges[judge] = entry
    for judge, aspects in _rating_agreement(ratings, humans, n_boot).items():
        judges.setdefault(judge, {})["spearman"] = aspects
    tests = []
    for a, b in combinations(sorted(correct), 2):
        common = sorted(set(correct[a]) & set(correct[b]))
        if common:
            test = rater_stats.mcnemar_exact([correct[a][k] for k in common], [correct[b][k] for k in common])
            tests.append({"judge_a": a, "judge_b": b, **test})
    for t, p in zip(tests, rater_stats.holm([t["p_value"] for t in tests])):
        t["p_holm"] = p
    return stats.plain({"judges": judges, "mcnemar": tests})


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
    """lm-eval results per task and metric: value, lm-eval's stderr, and one 95% CI, the task's own
    (`<metric>_ci95_low/_high`, folded into their metric's row) or else the per-sample one by `stats.sample_ci`,
    so the report shows the interval lm-eval printed."""
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
                out.setdefault(task, {}).setdefault(metric, {})["samples"] = _est(stats.sample_ci(vals))
    return stats.plain({task: _fold_bounds(metrics) for task, metrics in out.items()})


def _fold_bounds(metrics: dict[str, dict]) -> dict[str, dict]:
    """`m_ci95_low` and `m_ci95_high` become m's `ci`; every metric gets one `ci` (its samples' when no bounds)."""
    bounds = {f"{m}_ci95_{side}" for m in metrics for side in ("low", "high")}
    folded = {}
    for m, v in metrics.items():
        if m in bounds:
            continue
        low, high = metrics.get(f"{m}_ci95_low", {}).get("value"), metrics.get(f"{m}_ci95_high", {}).get("value")
        n = v.get("samples", {}).get("n")
        ci = ({"estimate": v.get("value"), "ci_low": low, "ci_high": high, "n": n} if low is not None
              else v.get("samples"))
        folded[m] = {**v, "ci": ci}
    return folded


def people_summary(preferences: list[Preference], humans: list[HumanLabel], texts: dict[str, str],
                   n_boot: int = 2000) -> dict[str, Any] | None:
    """Agreement with people's pairwise labels (never a source label) for every judge that judged those pairs,
    then the trivial judges (longer-wins, shorter-wins, random) on the same pairs; None without such labels."""
    labels = [h for h in humans if h.choice is not None and h.story_b and h.rater != SOURCE_RATER]
    keys = {frozenset((h.story_a, h.story_b)) for h in labels}
    mine = [p for p in preferences if frozenset((p.story_a, p.story_b)) in keys]
    if not labels or not mine:
        return None
    rows = agreement.pairwise_agreement_table(agreement.verdicts_from_preferences(mine), labels, texts, n_boot=n_boot)
    return {"label": agreement.label_kind(labels), "rows": stats.plain(rows)}


def summarize(stories: list[Story], ratings: list[Rating], preferences: list[Preference],
              probe_scores: dict[str, float], humans: list[HumanLabel] | None = None, meta: dict | None = None,
              lm_eval: dict[str, Any] | None = None, n_boot: int = 2000,
              human_stories: list[Story] | None = None) -> dict[str, Any]:
    """All the report's numbers as one JSON-ready dict (the object CI checks address).

    `humans` holds people's labels and reference labels; a source label (HANNA: which story a human wrote) is
    reported apart (`source_label`) and never as agreement with people. `human_stories` are the texts of the
    labelled pairs that are not among `stories` (e.g. WQ's), for the people's length-controlled agreement."""
    humans = humans or []
    people = [h for h in humans if h.rater != SOURCE_RATER]
    source = [h for h in humans if h.rater == SOURCE_RATER]
    texts = {s.id: s.text for s in [*stories, *(human_stories or [])]}
    return stats.plain({
        "meta": run_meta(stories, meta),
        "ratings": rating_summary(ratings, n_boot),
        "probe": _mean_by_prompt(probe_scores, n_boot),
        "pairwise": pairwise_summary(preferences + as_preferences(people), n_boot,
                                     {s.id: len(s.text.split()) for s in stories}),
        "humans": {**compare_judges(preferences, ratings, people, n_boot),
                   "inter_rater": _est(alpha) if (alpha := inter_rater_agreement(people)) else None},
        "people": people_summary(preferences, people, texts, n_boot),
        "source_label": compare_judges(preferences, [], source, n_boot) if source else None,
        "lm_eval": lm_eval_summary(lm_eval or {}),
    })
