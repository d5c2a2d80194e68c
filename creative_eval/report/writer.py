"""Writing a report folder: report.md, report.html, figure1.png, summary.json and summary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from creative_eval import stats
from creative_eval.records import HumanLabel, Preference, Rating, Story
from creative_eval.report.checks import Check, parse_check, run_checks
from creative_eval.report.figures import figure1
from creative_eval.report.frontier import frontier_markdown
from creative_eval.report.render import ci_markdown, render_html, render_markdown
from creative_eval.report.summary import summarize


def write(name: str, summary: dict[str, Any], out_root: str | Path = "reports", checks: list[Check] = ()) -> Path:
    """Write report.md, report.html, figure1.png, summary.json and summary.md under out_root/name."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"report name {name!r} must be a plain folder name, e.g. 'demo'")
    folder = Path(out_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    figure1(summary, folder / "figure1.png")
    report = folder / "report.md"
    frontier = summary.get("frontier")
    report.write_text(render_markdown(name, summary, checks)
                      + (f"\n{frontier_markdown(frontier, frontier['figure'])}" if frontier else ""), encoding="utf-8")
    (folder / "report.html").write_text(render_html(name, summary, checks), encoding="utf-8")
    doc = {"name": name, "summary": summary, "checks": [c.__dict__ for c in checks],
           "passed": all(c.passed for c in checks)}
    (folder / "summary.json").write_text(json.dumps(stats.plain(doc), indent=1), encoding="utf-8")
    (folder / "summary.md").write_text(ci_markdown(name, summary, checks, report), encoding="utf-8")
    return report


def build(name: str, stories: list[Story], ratings: list[Rating], preferences: list[Preference],
          probe_scores: dict[str, float], humans: list[HumanLabel] | None = None, meta: dict | None = None,
          *, lm_eval: dict[str, Any] | None = None, checks: Iterable[str] = (), out_root: str | Path = "reports",
          n_boot: int = 2000, human_stories: list[Story] | None = None,
          frontier: dict[str, Any] | None = None) -> Path:
    """Summarize, run the checks and write the report; returns the path of report.md. A steering `frontier`
    (frontier.run, with its `figure` path relative to the report folder) adds its section and `summary.frontier`."""
    exprs = list(checks)
    for e in exprs:
        parse_check(e)  # fail on a malformed check before spending time on statistics
    summary = summarize(stories, ratings, preferences, probe_scores, humans, meta, lm_eval, n_boot, human_stories)
    if frontier:
        summary["frontier"] = stats.plain(frontier)
    return write(name, summary, out_root, run_checks(summary, exprs))


def read_summary(report_path: str | Path) -> dict[str, Any]:
    """summary.json next to a report.md: {"name", "summary", "checks", "passed"}."""
    return json.loads((Path(report_path).parent / "summary.json").read_text(encoding="utf-8"))
