"""The report as tables, Markdown, HTML and the short CI summary; every document reads the same tables."""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from creative_eval.report.checks import Check, check_rows
from creative_eval.stats import fmt_estimate


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
            for judge, entry in summary["ratings"].items() for cond, e in entry["conditions"].items()]
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
    rows = [[j, fmt_estimate(e.get("position_bias")), fmt_estimate(e.get("position_consistency")),
             str(e.get("position_consistency", {}).get("n", 0)), fmt_estimate(e.get("longer_wins")),
             str(e.get("longer_wins", {}).get("n", 0))] for j, e in summary["pairwise"].items()]
    out.append(("Pairwise judges' biases (95% CI over pairs)",
                ["judge", "position bias: mean P(first)", "order consistency", "n", "longer story wins",
                 "n decisive, lengths differ"], rows))
    if summary.get("people"):
        out.append((f"Agreement with people: {summary['people']['label']} (Wilson 95% CI over distinct pairs; "
                    "a tie or an invalid verdict counts as wrong)", PEOPLE_HEADER, people_rows(summary["people"]["rows"])))
    out += compare_tables(summary["humans"])
    if summary.get("source_label"):
        out += [(f"Source label, not a judgement: {t}", h, r) for t, h, r in compare_tables(summary["source_label"])]
    for task, metrics in summary["lm_eval"].items():
        rows = [[m, fmt_estimate(v.get("ci") or {"estimate": v.get("value")}, 3), _p(v.get("stderr")),
                 str((v.get("ci") or {}).get("n") or "–")] for m, v in metrics.items()]
        out.append((f"lm-eval task {task}", ["metric", "value [95% CI]", "lm-eval stderr", "n"], rows))
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
            "mean. Right: pairwise judges' agreement with people (the label named in the title; Wilson 95% CIs "
            "over distinct pairs, ties and invalid verdicts count as wrong) beside the trivial judges "
            "(longer wins, shorter wins, random) in grey. Left and centre: 95% CIs resampling prompts.")


def render_markdown(name: str, summary: dict[str, Any], checks: list[Check] = ()) -> str:
    parts = [f"# creative-eval report: {name}", "", "![Figure 1](figure1.png)", "", _CAPTION, ""]
    for title, header, rows in tables(summary):
        parts += [f"## {title}", "", markdown_table(header, rows) if rows else "_none_", ""]
    if checks:
        parts += ["## Checks", "", markdown_table(*check_rows(checks)), ""]
    return "\n".join(parts)


def render_html(name: str, summary: dict[str, Any], checks: list[Check] = ()) -> str:
    title = html.escape(f"creative-eval report: {name}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>", f"<h1>{title}</h1>",
             "<img src='figure1.png' alt='Figure 1' style='max-width:100%'>", f"<p>{html.escape(_CAPTION)}</p>"]
    for t, header, rows in tables(summary):
        parts += [f"<h2>{html.escape(t)}</h2>", _html_table(header, rows) if rows else "<p>none</p>"]
    if checks:
        parts += ["<h2>Checks</h2>", _html_table(*check_rows(checks))]
    return "\n".join(parts + ["</body></html>"])


def ci_markdown(name: str, summary: dict[str, Any], checks: list[Check], report_path: str | Path) -> str:
    """A short summary for a CI step summary or a pull-request comment: key numbers and the checks."""
    status = "all checks passed" if all(c.passed for c in checks) else "CHECKS FAILED"
    lines = [f"### creative-eval: {name} — {status if checks else 'no checks'}", ""]
    key = [[j, c, fmt_estimate(e)] for j, entry in summary["ratings"].items() for c, e in entry["conditions"].items()]
    key += [[j, "pairwise win rate", fmt_estimate(e.get("win_rate"))] for j, e in summary["pairwise"].items()]
    key += [[j, "agreement with humans", fmt_estimate(e.get("agreement"))] for j, e in summary["humans"]["judges"].items()
            if "agreement" in e]
    key += [["probe", c, fmt_estimate(e, 4)] for c, e in summary["probe"].items()]
    if key:
        lines += [markdown_table(["judge", "measure", "estimate [95% CI]"], key), ""]
    if checks:
        lines += [markdown_table(*check_rows(checks)), ""]
    lines.append(f"Full report: `{report_path}`")
    return "\n".join(lines) + "\n"


def print_summary(summary: dict[str, Any], file: TextIO = sys.stdout) -> None:
    """The key numbers with their CIs, one line each."""
    for judge, entry in summary["ratings"].items():
        for cond, e in entry["conditions"].items():
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


def _n_ci(e: dict | None) -> str:
    return "–" if not e or not e.get("n") else f"{fmt_estimate(e)} (n={e['n']})"


def _coef(lc: dict) -> str:
    if lc.get("coef") is None:
        return f"– ({lc.get('reason') or 'not fitted'})"
    return f"{lc['coef']:+.2f} [{lc['ci_low']:+.2f}, {lc['ci_high']:+.2f}]"


def people_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per judge of `agreement.pairwise_agreement_table` (plain dicts)."""
    return [[r["judge"], str(r["n"]), str(r["ties"]), str(r["invalid"]), fmt_estimate(r["accuracy"]),
             fmt_estimate(r["accuracy_excl_ties"]), fmt_estimate(r.get("auroc")), fmt_estimate(r.get("position_bias")),
             fmt_estimate(r.get("order_consistency")), _n_ci(r["agree_when_longer_chosen"]), _n_ci(r["agree_when_shorter_chosen"]), _coef(r["length_logit"]),
             _random(r)]
            for r in rows]


def _random(row: dict[str, Any]) -> str:
    """A probe's value among random directions: `r58 (99th: 0.61)`; – for judges without a direction."""
    c = row.get("random")
    return f"r{100 * c['percentile']:.0f} (99th: {c['null_p99']:.2f})" if c else "–"


PEOPLE_HEADER = ["judge", "n pairs", "ties", "invalid", "accuracy [95% CI]", "excl. ties", "AUROC of margin",
                 "position bias P(first)", "order consistency", "agree when people chose the longer", "... the shorter",
                 "length-controlled coef. of margin [95% CI]", "probe: percentile among random directions"]


def agreement_tables(result: dict[str, Any]) -> list[Table]:
    """The agreement suite as tables: pairwise rows (judges, then trivial judges) and rating correlations."""
    out: list[Table] = []
    if result["pairwise"]:
        out.append((f"Agreement with people on {result['set']}: {result['label']} (Wilson 95% CI over distinct "
                    "pairs; a tie or an invalid verdict counts as wrong)", PEOPLE_HEADER, people_rows(result["pairwise"])))
    if result["ratings"]:
        out.append((f"Ratings vs people on {result['set']}: Spearman (bootstrap 95% CI over stories)",
                    ["judge", "label", "aspect", "n stories", "missing", "Spearman [95% CI]",
                     "length-controlled coef. per SD [95% CI]", "probe: percentile among random directions"],
                    [[r["judge"], r["label"], r["aspect"], str(r["n"]), str(r["n_missing"]), fmt_estimate(r["spearman"]),
                      _coef(r["length_ols"]) if "length_ols" in r else "–", _random(r)] for r in result["ratings"]]))
    return out


def template_tables(result: dict[str, Any]) -> list[Table]:
    """Template choice: per fold the chosen template and its held-out numbers, then every candidate's accuracy
    on the half it could be chosen on (never a validation number)."""
    held = [[str(i + 1), f["chosen"], str(f["n_choose"]), *people_rows([f["held_out"]])[0][1:]]
            for i, f in enumerate(result["folds"])]
    held.append(["both", "(chosen per fold)", "–", *people_rows([result["pooled_held_out"]])[0][1:]])
    names = list(result["folds"][0]["choose_accuracy"])
    cands = [[n, *(f"{f['choose_accuracy'][n]:.2f}" for f in result["folds"])] for n in names]
    return [(f"Chosen template, reported on the held-out half only: {result['label']} (seed {result['seed']})",
             ["fold", "chosen", "n choose"] + PEOPLE_HEADER[1:], held),
            ("Candidates' accuracy on the half they were chosen on (selection only, not a validation)",
             ["template", "fold 1 choose half", "fold 2 choose half"], cands)]
