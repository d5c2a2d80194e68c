"""The Figure-1 report, the judge comparison and CI checks, from judgement files (never re-running models).

From code (what `make demo` calls):

    path = report.build("demo", stories, ratings, preferences, probe_scores, humans=labels, meta=direction.meta)
    report.print_summary(report.read_summary(path)["summary"])   # key numbers with CIs

`build` writes `reports/<name>/report.md`, `report.html`, `figure1.png`, `summary.json` and `summary.md` and
returns the path of report.md. `load_runs(paths)` reads stories / Rating / Preference / probe-score /
human-label JSONL files and lm-eval results + samples. One module per part: runs (reading), summary
(statistics), figures, render (tables and documents), checks (CI checks), writer (the report folder).
"""

from creative_eval.report.checks import Check, parse_check, run_checks
from creative_eval.report.figures import agreement_figure, figure1, plot_sweep
from creative_eval.report.frontier import frontier_markdown, plot_frontier, write_frontier
from creative_eval.report.probe_controls import criteria_table
from creative_eval.report.render import (agreement_tables, compare_tables, fmt_estimate, markdown_table,
                                         print_summary, tables, template_tables)
from creative_eval.report.runs import Run, load_runs
from creative_eval.report.summary import (compare_judges, lm_eval_summary, pair_biases, pairwise_summary,
                                          rating_summary, summarize)
from creative_eval.report.writer import build, read_summary, write

__all__ = [
    "Check", "Run", "agreement_figure", "agreement_tables", "build", "compare_judges", "compare_tables", "criteria_table",
    "figure1", "fmt_estimate", "frontier_markdown", "lm_eval_summary", "template_tables",
    "load_runs", "markdown_table", "pair_biases", "pairwise_summary", "parse_check", "plot_frontier", "plot_sweep",
    "print_summary", "rating_summary", "read_summary", "run_checks", "summarize", "tables", "write", "write_frontier",
]
