"""Commands that read what was judged: `report` (Figure 1, summaries, CI checks), `compare-judges` (each judge
against people), `which-judge` (one table over `agreement` runs: which judge to trust) and `annotate` (a blinded
page for people, and the import of their answers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from creative_eval import outputs
from creative_eval.cli import args as a


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotate", help="blinded pairwise human annotation: export a page, import its results")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("export", help="write a self-contained annotation page (index.html) and its key")
    q.add_argument("--input", type=a.existing_file, required=True, help="stories JSONL (from `generate`)")
    q.add_argument("--out", required=True, help="pack folder; give raters index.html only, keep key.json")
    q.add_argument("--compare", action="append", type=a.condition_pair, default=None, metavar="COND:COND",
                   help="condition pair to compare, e.g. baseline:induced (repeatable; default: all pairs)")
    q.add_argument("--seed", type=a.whole, default=None, help="order/side shuffling seed (default: random, recorded)")
    q.set_defaults(run=annotate_export, outputs=lambda args: outputs.check_folder(args.out, inputs=[args.input]),
                   saves=lambda args: [])  # a page and its key, written at the end
    q = actions.add_parser("import", help="un-blind downloaded results into human labels (JSONL)")
    q.add_argument("results", nargs="+", type=a.existing_file, help="JSON or CSV files downloaded from the annotation page")
    q.add_argument("--pack", type=a.existing_folder, required=True, help="the pack folder written by `annotate export` (holds key.json)")
    q.add_argument("--out", required=True, help="human labels JSONL (appended; re-imports are skipped)")
    q.set_defaults(run=annotate_import, outputs=lambda args: outputs.check_file(
        args.out, inputs=[*args.results, Path(args.pack) / "key.json"], kind="human"),
                   saves=lambda args: [(args.out, "labels")])

    p = sub.add_parser("report", help="Figure-1 report (md, html, png) from judgement and lm-eval files; CI checks")
    p.add_argument("runs", nargs="+", help="run folders or files: stories, ratings, preferences, probe scores, "
                                           "human labels (JSONL), lm-eval results_*.json / samples_*.jsonl")
    p.add_argument("--name", default=None, help="report folder name under --out-root (default: first run's name)")
    p.add_argument("--out-root", default="reports", help="folder the report folder (--name) is written in")
    p.add_argument("--humans", action="append", default=[], help="human-label file (CSV/JSONL) or 'hanna'")
    p.add_argument("--check", action="append", default=[], metavar="EXPR",
                   help="e.g. 'pairwise.self.win_rate.ci_low>=0.5'; exit 1 when one fails (repeatable)")
    p.add_argument("--n-boot", type=a.positive_int, default=2000, help="bootstrap resamples of each interval")
    # it writes only its own report files, beside the runs it reads when asked to
    p.set_defaults(run=report, outputs=report_outputs)

    p = sub.add_parser("compare-judges", help="each judge vs human labels; McNemar between judges (Holm)")
    p.add_argument("runs", nargs="+", help="judgement files or folders (ratings / preferences JSONL)")
    p.add_argument("--humans", action="append", default=[], help="human-label file (CSV/JSONL) or 'hanna'")
    p.add_argument("--n-boot", type=a.positive_int, default=2000, help="bootstrap resamples of each interval")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(run=compare_judges)

    p = sub.add_parser("which-judge", help="which judge to trust: each judge's agreement with people on each set, "
                                           "beside the trivial judges and length, with a verdict")
    p.add_argument("folders", nargs="+", type=a.existing_folder,
                   help="`creative-eval agreement --out` folders, one per human set (each holds agreement.json)")
    p.add_argument("--out", default=None, help="also write the table as markdown to this file (default: print only)")
    p.set_defaults(run=which_judge,
                   outputs=lambda args: args.out and outputs.check_file(args.out, inputs=args.folders))


def report_outputs(args: argparse.Namespace) -> None:
    """The inputs first, then the report folder: a missing input makes no folder."""
    from creative_eval.report.runs import check_inputs

    check_inputs(args.runs)
    outputs.check_folder(Path(args.out_root) / _name(args))


def _name(args: argparse.Namespace) -> str:
    return args.name or Path(args.runs[0]).resolve().stem


def annotate_export(args: argparse.Namespace) -> None:
    from creative_eval.cli.judge import pairs_of
    from creative_eval.people import annotate
    from creative_eval.records import read_stories

    if args.compare:
        stories = read_stories(args.input)
        for pair in args.compare:
            pairs_of(args.input, stories, pair)
    key = annotate.export(args.input, args.out, compare=args.compare, seed=args.seed)
    print(f"wrote pack {key.pack_id} to {args.out}: {len(key.items)} pairs (seed {key.seed}); send raters "
          f"{Path(args.out) / annotate.PAGE_FILE} only and keep {annotate.KEY_FILE}")


def annotate_import(args: argparse.Namespace) -> None:
    from creative_eval.people import annotate, humans

    with outputs.writing(args.out):
        new = annotate.import_results(args.pack, args.results, args.out)
    labels = humans.load_labels(args.out) if Path(args.out).exists() else []
    raters = sorted({h.rater for h in labels})
    print(f"imported {len(new)} new labels into {args.out}: {len(labels)} labels from {len(raters)} rater(s)")
    alpha = humans.inter_rater_agreement(labels)
    if alpha is not None:
        print(f"inter-rater agreement: Krippendorff's alpha {alpha.estimate:.3f} "
              f"[{alpha.ci_low:.3f}, {alpha.ci_high:.3f}] (nominal A/B/tie, n={alpha.n} items)")


def _inputs(args: argparse.Namespace):
    from creative_eval import report
    from creative_eval.people import humans

    run = report.load_runs(args.runs)
    run.humans += [label for spec in args.humans for label in humans.load(spec)]
    return run


def report(args: argparse.Namespace) -> int:
    from creative_eval import report as report_mod

    run = _inputs(args)
    path = report_mod.build(_name(args), run.stories, run.ratings, run.preferences, run.probe, run.humans, run.notes,
                            lm_eval=run.lm_eval, checks=args.check, out_root=args.out_root, n_boot=args.n_boot)
    result = report_mod.read_summary(path)
    report_mod.print_summary(result["summary"])
    print(f"report: {path} (CI summary: {path.parent / 'summary.md'}, {path.parent / 'summary.json'})")
    for c in result["checks"]:
        print(f"check {'passed' if c['passed'] else 'FAILED'}: {c['expr']} (value {c['value']}) {c['error']}")
    return 0 if result["passed"] else 1


def compare_judges(args: argparse.Namespace) -> None:
    from creative_eval import report
    from creative_eval.people import humans

    run = _inputs(args)
    if not run.humans:
        raise ValueError("no human labels; pass --humans FILE (CSV/JSONL) or --humans hanna")
    # a source label (HANNA: which story a human wrote) is reported apart, never as agreement with people
    people = [h for h in run.humans if h.rater != humans.SOURCE_RATER]
    source = [h for h in run.humans if h.rater == humans.SOURCE_RATER]
    result = report.compare_judges(run.preferences, run.ratings, people, n_boot=args.n_boot)
    result["source_label"] = report.compare_judges(run.preferences, [], source, n_boot=args.n_boot)
    if not result["judges"] and not result["source_label"]["judges"]:
        raise ValueError("no judgement matches a human-labelled pair or rated story; judgements and labels must "
                         "name the same story ids (<prompt_id>:<condition>)")
    if args.json:
        print(json.dumps(result))
        return
    for title, header, rows in report.compare_tables(result):
        print(f"## {title}\n\n{report.markdown_table(header, rows)}\n")
    for title, header, rows in report.compare_tables(result["source_label"]):
        print(f"## Source label, not a judgement: {title}\n\n{report.markdown_table(header, rows)}\n")


def which_judge(args: argparse.Namespace) -> None:
    from creative_eval import report
    from creative_eval.report import trust

    title, header, rows = trust.table(trust.read(args.folders))
    text = f"## {title}\n\n{report.markdown_table(header, rows)}\n\n{trust.recommendation(rows)}\n"
    print(text, end="")
    if args.out:
        with outputs.replacing(args.out) as tmp:
            tmp.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
