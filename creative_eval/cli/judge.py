"""Commands that judge stories: `score` (the probe), `judge` (a preset's ratings or preferences), `agreement`
(judges against people) and `templates` (a judge's template chosen on people's labels)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from creative_eval import outputs
from creative_eval.cli import args as a
from creative_eval.cli import stopping
from creative_eval.records import TOKENS, Story


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="probe scores of stories (re-scored on the unsteered model)")
    a.model_args(p)
    a.direction_args(p)
    p.add_argument("--input", type=a.existing_file, required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--tokens", choices=TOKENS, default="input+response",
                   help="the tokens a score averages over: the prompt and the story, the story only, or the prompt")
    p.add_argument("--out", default=None, help="JSONL of scores (default: print a summary only)")
    p.set_defaults(run=score, outputs=lambda args: args.out and outputs.check_file(args.out, inputs=[args.input],
                                                                                   kind="probe"),
                   saves=lambda args: [(args.out, "scores")])

    p = sub.add_parser("judge", help="0-9 ratings or pairwise preferences of stories by a judge preset")
    p.add_argument("--judge", type=a.preset, required=True,
                   help="preset name in judges/preset_files/ (embedded, self, probe, ...) or a .yaml path")
    p.add_argument("--mode", choices=("rating", "pairwise"), default="rating",
                   help="rating: a 0-9 score per story; pairwise: the two stories of a prompt (--compare) compared "
                        "in both orders")
    p.add_argument("--input", type=a.existing_file, required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--compare", type=a.condition_pair, default="induced:baseline", metavar="COND:COND",
                   help="pairwise: the conditions (or source labels) paired per prompt id")
    p.add_argument("--out", required=True, help="judgements JSONL (appended as made; a re-run resumes)")
    p.set_defaults(run=judge, outputs=lambda args: outputs.check_file(
        args.out, inputs=[args.input], kind="rating" if args.mode == "rating" else "preference"),
                   saves=lambda args: [(args.out, "judgements")])

    p = sub.add_parser("agreement", help="judges vs people: accuracy, AUROC, length control, beside trivial judges")
    p.add_argument("--judge", type=a.preset, nargs="+", required=True,
                   help="judge presets (embedded, self, probe, ...) or .yaml paths")
    a.people_args(p)
    p.add_argument("--mode", choices=("both", "pairwise", "rating"), default="both",
                   help="pairwise (both orders, debiased), rating (and pairwise from ratings), or both")
    p.add_argument("--out", default="reports/agreement",
                   help="folder: judgements (appended as made; a re-run resumes), agreement.json, agreement.png")
    p.set_defaults(run=agreement)

    p = sub.add_parser("templates", help="choose a judge's template on half the labelled pairs, report it on the other")
    p.add_argument("--judge", type=a.preset, required=True, help="an LLM judge preset (the probe has no template)")
    a.people_args(p)
    p.add_argument("--templates", type=a.names, default=None,
                   help="comma-separated template names from judges/template_files/ (default: all)")
    p.add_argument("--out", default="reports/templates", help="folder: judgements (resumed) and templates.json")
    p.set_defaults(run=templates)


def score(args: argparse.Namespace) -> None:
    from creative_eval import probe
    from creative_eval.probe import controls, store, textstates
    from creative_eval.records import read_stories

    stories = read_stories(args.input)
    stopping.expect(args.out, len(stories))
    model, tokenizer = a.load_model(args)
    d, _ = a.resolve_direction(args, model, tokenizer)
    scorer = probe.Probe(model, tokenizer, d, tokens=args.tokens)
    kept = store.kept(args.out, scorer, stories) if args.out else 0
    scores = store.resume(args.out, scorer, stories, progress=True) if args.out else scorer.score(
        [s.prompt for s in stories], [s.text for s in stories], progress=True)
    cut = sum(p.truncated_tokens > 0 for p in scores)
    if cut:
        print(f"note: {cut} of {len(stories)} stories are longer than the probe's {scorer.max_length} tokens and "
              "were scored on their first tokens (recorded as truncated_tokens)")
    values = [p.score for p in scores]
    same, cross = textstates.story_states(model, tokenizer, stories, d, args.tokens)
    by: dict[str, list[float]] = {}
    for s, v in zip(stories, values):
        by.setdefault(s.condition, []).append(v)
    for condition, vs in by.items():
        print(f"{condition:>10}: mean probe {sum(vs) / len(vs):+.4f} (n={len(vs)}, {args.tokens} tokens)")
    for name, line in controls.describe(controls.condition_comparisons(stories, same, cross, d.vector,
                                                                       args.tokens)).items():
        print(f"{name}: {line}")
    print(f"{len(scores)} probe scores in {args.out} ({kept} kept, {len(scores) - kept} made; appended as made; "
          "a re-run resumes)" if args.out else
          "scores were not kept: add --out scores.jsonl to write them (`report` reads that file)")


def pairs_of(path: str, stories: list[Story], compare: tuple[str, str]) -> list:
    """The story pairs of two conditions; a condition no story carries, or no prompt with both, is an error."""
    from creative_eval import judges

    present = sorted({s.condition for s in stories})
    absent = [c for c in compare if c not in present]
    if absent:
        raise ValueError(f"--compare {':'.join(compare)}: no story in {path} has condition {absent[0]!r}; "
                         f"its conditions are {', '.join(present)}")
    items = judges.pairs_by_condition(stories, *compare)
    if not items:
        raise ValueError(f"--compare {':'.join(compare)}: no prompt in {path} has a story of both conditions; "
                         "generate both for the same prompts")
    return items


def judge(args: argparse.Namespace) -> None:
    from creative_eval import judges, report
    from creative_eval.records import Preference, Rating, read_records, read_stories

    stories = read_stories(args.input)
    items = stories if args.mode == "rating" else pairs_of(args.input, stories, args.compare)
    stopping.expect(args.out, len(items))
    judge = judges.load_judge(args.judge)
    kept = judges.kept(judge, args.mode, items, args.out)
    out = judges.run(judge, args.mode, items, args.out, progress=True)
    invalid = sum(not r["status"].startswith("ok") for r in out)
    cut = sum(r.get("truncated_tokens", 0) > 0 for r in out)
    print(f"{len(out)} judgements in {args.out} ({kept} kept, {len(items) - kept} made; {invalid} invalid, {cut} on "
          "stories cut to the judge's input limit)")
    if args.mode == "rating":
        for summary in report.rating_summary(read_records(args.out, Rating)).values():
            for condition, e in summary["conditions"].items():
                print(f"mean rating, {condition}: {report.fmt_estimate(e)} (n={e['n']} prompts)")
        return
    words = {s.id: len(s.text.split()) for s in stories}
    for summary in report.pairwise_summary(read_records(args.out, Preference), words=words).values():
        for comparison, e in summary["comparisons"].items():
            if "win_rate" in e:  # the more creative condition beats the baseline, ties counted as losses
                print(f"win rate {comparison}: {report.fmt_estimate(e['win_rate'])} (n={e['n_judgements']} pairs)")
        for name in ("position_bias", "position_consistency", "longer_wins"):  # report.pair_biases, per judge
            if (e := summary[name]) is not None:
                print(f"{name.replace('_', ' ')}: {report.fmt_estimate(e)} (n={e['n']} pairs)")


def _human_set(args: argparse.Namespace):
    from creative_eval.evals import suite

    return suite.human_set(args.humans, args.limit, args.seed, args.stories)


def agreement(args: argparse.Namespace) -> None:
    from creative_eval import judges, report, stats
    from creative_eval.evals import suite

    hs = _human_set(args)
    modes = suite.MODES if args.mode == "both" else (args.mode,)
    judged, rated, probes = [], {}, []
    for preset in args.judge:
        judge = judges.load_judge(preset)
        prefs, ratings = suite.collect(judge, hs, args.out, modes, progress=True)
        judged += suite.verdicts(judge.id, prefs, ratings, hs, from_ratings=hasattr(judge, "templates"))
        rated[judge.id] = ratings
        probes += [judge] if preset["backend"] == "probe" else []
    result = suite.table(hs, judged, rated, args.n_boot, args.seed)
    for judge in probes:
        suite.beside_random_directions(judge, hs, result, seed=args.seed)
    result = stats.plain(result)
    out = Path(args.out)
    (out / "agreement.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    report.agreement_figure(result, out / "agreement.png")
    for title, header, rows in report.agreement_tables(result):
        print(f"## {title}\n\n{report.markdown_table(header, rows)}\n")
    print(f"wrote {out / 'agreement.json'} and {out / 'agreement.png'}")


def templates(args: argparse.Namespace) -> None:
    from creative_eval import judges, report, stats
    from creative_eval.evals import selection, suite
    from creative_eval.people import agreement as people_agreement

    hs = _human_set(args)
    if not hs.pairwise:
        raise ValueError(f"--humans {args.humans}: templates are chosen on pairwise labels (e.g. wq)")
    names = suite.check_templates(args.templates)
    candidates = suite.template_candidates(judges.load_judge(args.judge), hs, args.out, names, progress=True)
    result = stats.plain(selection.choose(candidates, people_agreement.human_choices(hs.labels),
                                          {s.id: s.text for s in hs.stories}, hs.label, args.seed))
    (Path(args.out) / "templates.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    for title, header, rows in report.template_tables(result):
        print(f"## {title}\n\n{report.markdown_table(header, rows)}\n")
