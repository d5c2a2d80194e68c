"""What each CLI command does: load, call the library modules in data-flow order, write files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import agreement as agreement_mod
from . import annotate as annotate_mod
from . import direction as direction_mod
from . import export as export_mod
from . import generate as generate_mod
from . import (coherence, commands_llamacpp, controls, criteria, frontier, humans, judges, models, outputs, pairs,
               pipeline, probe, selection, sources, suite, sweeps)
from . import scores as scores_mod
from . import report as report_mod
from .records import Preference, Story, read_records, read_stories


def _load(args: argparse.Namespace):
    return models.load(args.model, args.dtype, args.device_map)


def _direction(args: argparse.Namespace, model, tokenizer) -> tuple[direction_mod.Direction, str]:
    return sources.resolve(args.direction, model, tokenizer, args.model, args.layer, progress=True)


def direction(args: argparse.Namespace) -> None:
    if args.source != "prompts":
        model, tokenizer = _load(args)
        d, path = sources.resolve(args.source, model, tokenizer, args.model, args.layer, progress=True)
        direction_mod.save(d, args.out)
        print(f"wrote {args.out} (source {d.source}, cached at {path}): layer {d.layer}, raw norm {d.raw_norm:.3g}")
        return
    selected = pairs.load_pairs(args.pairs, args.split)  # a bad file fails before the model loads
    model, tokenizer = _load(args)
    layer = args.layer if args.layer is not None else direction_mod.default_layer(model)
    models.check_layer(model, layer)
    d = direction_mod.extract(
        model, tokenizer, selected, layer, model_id=args.model,
        pairs_hash=pairs.file_hash(args.pairs), pooling=args.pooling, template=not args.no_template, progress=True,
    )
    direction_mod.save(d, args.out)
    print(f"wrote {args.out}: layer {d.layer}, raw norm {d.raw_norm:.3g}, residual norm {d.resid_norm:.3g}")


def sweep(args: argparse.Namespace) -> None:
    if args.criteria:
        return criteria_sweep(args)
    model, tokenizer = _load(args)
    result = sweeps.layer_sweep(
        model, tokenizer, pairs.load_pairs(args.pairs, "validation"), pairs.load_pairs(args.pairs, "test"),
        pairs.load_pairs(args.robustness), pairs.load_pairs(pairs.HARD), model_id=args.model, pairs_hash=pairs.file_hash(args.pairs),
        pooling=args.pooling, template=not args.no_template, n_boot=args.n_boot, progress=not args.json,
    )
    if args.plot:
        report_mod.plot_sweep(result, args.plot)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'layer':>5} {'AUROC':>6} {'95% CI':>15} {'robust':>7} {'hard':>6} {'hard within-pair':>22}")
    for r in result["layers"]:
        w = r["hard_within_pair"]
        print(f"{r['layer']:>5} {r['auroc']:6.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] {r['robust_auroc']:7.3f} "
              f"{r['hard_auroc']:6.3f} {w['estimate']:.2f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}] of {w['n']}")
    lex = result["lexical_baseline"]
    print(f"recommended layer {result['best_layer']}: AUROC {result['best_auroc']:.3f}, robustness "
          f"{result['robust_auroc']:.3f}, hard {result['hard_auroc']:.3f} (TF-IDF baseline: {lex['test_auroc']:.3f} / "
          f"{lex['robust_auroc']:.3f} / {lex['hard_auroc']:.3f}); story-level criteria: `sweep --criteria`")


def criteria_sweep(args: argparse.Namespace) -> None:
    """`sweep --criteria`: prompt, held-out story and WQ criteria per layer and source, with controls."""
    sets = {"validation": pairs.load_pairs(args.pairs, "validation"), "test": pairs.load_pairs(args.pairs, "test"),
            "robustness": pairs.load_pairs(args.robustness), "hard": pairs.load_pairs(pairs.HARD)}
    wq = humans.wq_pairs()  # a missing WQ folder fails before the model loads
    model, tokenizer = _load(args)
    for layer in args.layers:
        models.check_layer(model, layer)
    result = criteria.sweep(model, tokenizer, args.layers, **sets, wq=wq, model_id=args.model, n_boot=args.n_boot,
                            fit_pairs=args.fit_pairs, story_fit=args.story_fit, progress=not args.json)
    print(json.dumps(result) if args.json else report_mod.criteria_table(result))


def generate(args: argparse.Namespace) -> None:
    if args.backend == "llamacpp":
        return commands_llamacpp.generate(args)
    sampling = generate_mod.Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                     top_p=args.top_p, seed=args.seed, batch_size=args.batch_size)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    generate_mod.check_out(args.out, selected, args.conditions, alpha=args.alpha, norm=args.norm,
                           positions=args.positions, sampling=sampling, model_id=args.model)
    model, tokenizer = _load(args)
    d, path = _direction(args, model, tokenizer)
    out = generate_mod.resume(args.out, model, tokenizer, selected, d, alpha=args.alpha, norm=args.norm,
                              positions=args.positions, conditions=args.conditions, sampling=sampling,
                              model_id=args.model, direction_file=path, progress=True)
    print(f"{len(out)} stories in {args.out} (appended as made; a re-run with the same settings resumes)")


def steer_sweep(args: argparse.Namespace) -> None:
    if args.extra_layers and args.direction != "auto":
        raise ValueError("--extra-layers extracts the direction at each layer from the shipped pairs; "
                         "use --direction auto with it, or drop --extra-layers")
    if args.judge_direction != "auto" and args.judge_layer is not None:
        raise ValueError("--judge-layer applies to --judge-direction auto; a direction file has its own layer")
    judges.presets.load(args.judge)  # a bad preset fails before the model loads
    selected = pairs.load_pairs(args.pairs, "test")[: args.limit]
    model, tokenizer = _load(args)
    d, _ = _direction(args, model, tokenizer)
    directions = {d.layer: d, **{layer: direction_mod.auto(model, tokenizer, args.model, layer)[0]
                                 for layer in args.extra_layers if layer != d.layer}}
    judge_layer = (args.judge_layer or max(1, d.layer - 3)) if args.judge_direction == "auto" else None
    judge_d, judge_path = sources.resolve(args.judge_direction, model, tokenizer, args.model, judge_layer)
    judge = judges.load_judge(args.judge, *((model, tokenizer) if args.judge == "self" else ()))
    arms = frontier.plan(args.alphas, at=args.at, layers=args.extra_layers, positions=args.extra_positions,
                         gate=args.gate, gate_window=args.gate_window, gate_alpha=args.gate_alpha,
                         negated=args.negated)
    result = frontier.run(model, tokenizer, selected, directions, judge_d, arms, layer=d.layer, judge=judge,
                          out=args.out, norm=args.norm, seed=args.random_seed,
                          sampling=generate_mod.Sampling(max_new_tokens=args.max_new_tokens, seed=args.seed),
                          coherence_template=args.coherence_template or coherence.COHERENCE_TEMPLATE,
                          ppl_bound=args.ppl_bound, rep_bound=args.rep_bound, judge_source=judge_path)
    if args.json:
        print(json.dumps(result))
        return
    print(report_mod.frontier_markdown(result, str(Path(args.out) / "frontier.png")))


def demo(args: argparse.Namespace) -> None:
    path = pipeline.demo(args.out, n=args.n, max_new_tokens=args.max_new_tokens, alpha=args.alpha,
                         wq_pairs=args.wq)
    report_mod.print_summary(report_mod.read_summary(path)["summary"])
    print(f"report: {path} (figure: {path.parent / 'figure1.png'})")


def score(args: argparse.Namespace) -> None:
    stories = read_stories(args.input)
    model, tokenizer = _load(args)
    d, _ = _direction(args, model, tokenizer)
    scorer = probe.Probe(model, tokenizer, d, tokens=args.tokens)
    scores = scores_mod.resume(args.out, scorer, stories) if args.out else scorer.score(
        [s.prompt for s in stories], [s.text for s in stories], progress=True)
    cut = sum(p.truncated_tokens > 0 for p in scores)
    if cut:
        print(f"note: {cut} of {len(stories)} stories are longer than the probe's {scorer.max_length} tokens and "
              "were scored on their first tokens (recorded as truncated_tokens)")
    scores = [p.score for p in scores]
    same, cross = pipeline.probe_states(model, tokenizer, stories, d, args.tokens)
    by: dict[str, list[float]] = {}
    for s, p in zip(stories, scores):
        by.setdefault(s.condition, []).append(p)
    for condition, values in by.items():
        print(f"{condition:>10}: mean probe {sum(values) / len(values):+.4f} (n={len(values)}, {args.tokens} tokens)")
    for name, line in controls.describe(controls.condition_comparisons(stories, same, cross, d.vector,
                                                                       args.tokens)).items():
        print(f"{name}: {line}")


def annotate(args: argparse.Namespace) -> None:
    if args.action == "export":
        if args.compare:
            stories = read_stories(args.input)
            for pair in args.compare:
                _pairs_of(args.input, stories, pair)
        key = annotate_mod.export(args.input, args.out, compare=args.compare, seed=args.seed)
        print(f"wrote pack {key.pack_id} to {args.out}: {len(key.items)} pairs (seed {key.seed}); send raters "
              f"{Path(args.out) / annotate_mod.PAGE_FILE} only and keep {annotate_mod.KEY_FILE}")
        return
    with outputs.writing(args.out):
        new = annotate_mod.import_results(args.pack, args.results, args.out)
    labels = humans.load_labels(args.out) if Path(args.out).exists() else []
    raters = sorted({h.rater for h in labels})
    print(f"imported {len(new)} new labels into {args.out}: {len(labels)} labels from {len(raters)} rater(s)")
    alpha = humans.inter_rater_agreement(labels)
    if alpha is not None:
        print(f"inter-rater agreement: Krippendorff's alpha {alpha.estimate:.3f} "
              f"[{alpha.ci_low:.3f}, {alpha.ci_high:.3f}] (nominal A/B/tie, n={alpha.n} items)")


def _report_inputs(args: argparse.Namespace) -> report_mod.Run:
    run = report_mod.load_runs(args.runs)
    run.humans += [label for spec in args.humans for label in humans.load(spec)]
    return run


def report(args: argparse.Namespace) -> int:
    run = _report_inputs(args)
    name = args.name or Path(args.runs[0]).resolve().stem
    path = report_mod.build(name, run.stories, run.ratings, run.preferences, run.probe, run.humans, run.notes,
                            lm_eval=run.lm_eval, checks=args.check, out_root=args.out_root, n_boot=args.n_boot)
    result = report_mod.read_summary(path)
    report_mod.print_summary(result["summary"])
    print(f"report: {path} (CI summary: {path.parent / 'summary.md'}, {path.parent / 'summary.json'})")
    for c in result["checks"]:
        print(f"check {'passed' if c['passed'] else 'FAILED'}: {c['expr']} (value {c['value']}) {c['error']}")
    return 0 if result["passed"] else 1


def compare_judges(args: argparse.Namespace) -> None:
    run = _report_inputs(args)
    if not run.humans:
        raise ValueError("no human labels; pass --humans FILE (CSV/JSONL) or --humans hanna")
    # a source label (HANNA: which story a human wrote) is reported apart, never as agreement with people
    people = [h for h in run.humans if h.rater != humans.SOURCE_RATER]
    source = [h for h in run.humans if h.rater == humans.SOURCE_RATER]
    result = report_mod.compare_judges(run.preferences, run.ratings, people, n_boot=args.n_boot)
    result["source_label"] = report_mod.compare_judges(run.preferences, [], source, n_boot=args.n_boot)
    if not result["judges"] and not result["source_label"]["judges"]:
        raise ValueError("no judgement matches a human-labelled pair or rated story; judgements and labels must "
                         "name the same story ids (<prompt_id>:<condition>)")
    if args.json:
        print(json.dumps(result))
        return
    for title, header, rows in report_mod.compare_tables(result):
        print(f"## {title}\n\n{report_mod.markdown_table(header, rows)}\n")
    for title, header, rows in report_mod.compare_tables(result["source_label"]):
        print(f"## Source label, not a judgement: {title}\n\n{report_mod.markdown_table(header, rows)}\n")


def lm_eval(args: argparse.Namespace) -> int:
    """lm-eval's own CLI, with steered_hf and the creative tasks registered in this process (imported here:
    lm-eval is heavy and only this command needs it)."""
    from lm_eval.__main__ import cli_evaluate

    from .harness import autoload

    autoload.install()
    sys.argv = ["lm_eval", *args.lm_eval_args]
    cli_evaluate()
    return 0


def export(args: argparse.Namespace) -> None:
    if args.format == "llamacpp-cvec":
        return commands_llamacpp.export(args)
    model, tokenizer = _load(args)
    d, path = _direction(args, model, tokenizer)
    out = export_mod.lm_eval_steered(d, model, args.alpha, args.norm, args.out)
    print(f"wrote {out} from {path}: use `lm_eval --model steered --model_args "
          f"pretrained={models.resolve(args.model)},steer_path={out}`")


def _pairs_of(path: str, stories: list[Story], compare: tuple[str, str]) -> list[judges.PairItem]:
    """The story pairs of two conditions; a condition no story carries, or no prompt with both, is an error."""
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
    stories = read_stories(args.input)
    items = stories if args.mode == "rating" else _pairs_of(args.input, stories, args.compare)
    out = judges.run(judges.load_judge(args.judge), args.mode, items, args.out, progress=True)
    invalid = sum(not r["status"].startswith("ok") for r in out)
    cut = sum(r.get("truncated_tokens", 0) > 0 for r in out)
    print(f"{len(out)} judgements in {args.out} ({invalid} invalid, {cut} on stories cut to the judge's input limit)")
    if args.mode == "pairwise":
        words = {s.id: len(s.text.split()) for s in stories}
        for name, e in report_mod.pair_biases(read_records(args.out, Preference), words).items():
            if e is not None:
                print(f"{name.replace('_', ' ')}: {report_mod.fmt_estimate(e)} (n={e['n']} pairs)")


def _human_set(args: argparse.Namespace) -> suite.HumanSet:
    return suite.human_set(args.humans, args.limit, args.seed, args.stories)


def agreement(args: argparse.Namespace) -> None:
    hs = _human_set(args)
    for spec in args.judge:
        judges.presets.load(spec)  # a bad preset fails before any model loads
    modes = suite.MODES if args.mode == "both" else (args.mode,)
    judged, rated = [], {}
    for spec in args.judge:
        judge = judges.load_judge(spec)
        prefs, ratings = suite.collect(judge, hs, args.out, modes, progress=True)
        judged += suite.verdicts(judge.id, prefs, ratings, hs, from_ratings=hasattr(judge, "templates"))
        rated[judge.id] = ratings
    result = report_mod.clean(agreement_mod.as_plain(suite.table(hs, judged, rated, args.n_boot, args.seed)))
    out = Path(args.out)
    (out / "agreement.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    report_mod.agreement_figure(result, out / "agreement.png")
    for title, header, rows in report_mod.agreement_tables(result):
        print(f"## {title}\n\n{report_mod.markdown_table(header, rows)}\n")
    print(f"wrote {out / 'agreement.json'} and {out / 'agreement.png'}")


def templates(args: argparse.Namespace) -> None:
    hs = _human_set(args)
    if not hs.pairwise:
        raise ValueError(f"--humans {args.humans}: templates are chosen on pairwise labels (e.g. wq)")
    names = suite.check_templates(args.templates)
    judges.presets.load(args.judge)
    candidates = suite.template_candidates(judges.load_judge(args.judge), hs, args.out, names, progress=True)
    result = report_mod.clean(agreement_mod.as_plain(selection.choose(candidates, agreement_mod.human_choices(hs.labels),
                                                                   {s.id: s.text for s in hs.stories}, hs.label,
                                                                   args.seed)))
    (Path(args.out) / "templates.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    for title, header, rows in report_mod.template_tables(result):
        print(f"## {title}\n\n{report_mod.markdown_table(header, rows)}\n")
