"""What each CLI command does: load, call the library modules in data-flow order, write files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import direction as direction_mod
from . import generate as generate_mod
from . import models, pairs, pipeline, probe, steering
from .records import Story, read_records, write_jsonl



def _load(args: argparse.Namespace):
    return models.load(args.model, args.dtype, args.device_map)


def _direction(args: argparse.Namespace, model, tokenizer) -> tuple[direction_mod.Direction, str]:
    if args.direction == "auto":
        d, path = direction_mod.auto(model, tokenizer, args.model, args.layer, progress=True)
        return d, str(path)
    return direction_mod.load(args.direction, model), args.direction


def direction(args: argparse.Namespace) -> None:
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
    model, tokenizer = _load(args)
    result = direction_mod.sweep(
        model, tokenizer, pairs.load_pairs(args.pairs, "validation"), pairs.load_pairs(args.pairs, "test"),
        pairs.load_pairs(args.robustness), model_id=args.model, pairs_hash=pairs.file_hash(args.pairs),
        pooling=args.pooling, template=not args.no_template, n_boot=args.n_boot, progress=not args.json,
    )
    if args.plot:
        from .report import plot_sweep

        plot_sweep(result, args.plot)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'layer':>5} {'AUROC':>6} {'95% CI':>15} {'robust':>7}")
    for r in result["layers"]:
        print(f"{r['layer']:>5} {r['auroc']:6.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] {r['robust_auroc']:7.3f}")
    lex = result["lexical_baseline"]
    print(f"recommended layer {result['best_layer']}: AUROC {result['best_auroc']:.3f}, robustness "
          f"{result['robust_auroc']:.3f} (TF-IDF baseline: {lex['test_auroc']:.3f} / {lex['robust_auroc']:.3f})")


def generate(args: argparse.Namespace) -> None:
    if args.backend == "llamacpp":
        from . import commands_llamacpp

        return commands_llamacpp.generate(args)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    sampling = generate_mod.Sampling(args.max_new_tokens, args.temperature, args.top_p, args.seed, args.batch_size)
    alpha = steering.DEFAULT_ALPHA if args.alpha is None else args.alpha
    steering.check(alpha, args.norm, args.positions)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    model, tokenizer = _load(args)
    d, path = _direction(args, model, tokenizer)
    out = generate_mod.stories(model, tokenizer, selected, d, alpha=alpha, norm=args.norm, positions=args.positions,
                               conditions=conditions, sampling=sampling, model_id=args.model, direction_file=path,
                               progress=True)
    write_jsonl(args.out, out)
    print(f"wrote {len(out)} stories to {args.out}")


def steer_sweep(args: argparse.Namespace) -> None:
    for alpha in args.alphas:
        steering.check(alpha, args.norm)
    selected = pairs.load_pairs(args.pairs, "test")[: args.limit]
    model, tokenizer = _load(args)
    d, _ = _direction(args, model, tokenizer)
    result = pipeline.steer_sweep(model, tokenizer, selected, d, args.alphas, norm=args.norm,
                                  sampling=generate_mod.Sampling(args.max_new_tokens, seed=args.seed),
                                  progress=not args.json)
    if args.json:
        print(json.dumps(result))
        return
    print(f"layer {result['layer']}, norm {result['norm']}, baseline median perplexity {result['baseline_median_ppl']:.1f}")
    print(f"{'alpha':>6} {'probe gain':>11} {'95% CI':>20} {'median ppl':>11}")
    for r in result["rows"]:
        print(f"{r['alpha']:>6} {r['probe_diff']:+11.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] {r['median_ppl']:11.1f}")


def demo(args: argparse.Namespace) -> None:
    from . import report

    path = pipeline.demo(args.out, n=args.n, max_new_tokens=args.max_new_tokens, alpha=args.alpha,
                         hanna_prompts=args.hanna)
    report.print_summary(report.read_summary(path)["summary"])
    print(f"report: {path} (figure: {path.parent / 'figure1.png'})")


def score(args: argparse.Namespace) -> None:
    stories = read_records(args.input, Story)
    model, tokenizer = _load(args)
    d, _ = _direction(args, model, tokenizer)
    scores = probe.Probe(model, tokenizer, d, tokens=args.tokens).score(
        [s.prompt for s in stories], [s.text for s in stories], progress=True)
    if args.out:
        write_jsonl(args.out, [{"story_id": s.id, "condition": s.condition, "probe": p.score, "n_tokens": p.n_tokens}
                               for s, p in zip(stories, scores)])
    by: dict[str, list[float]] = {}
    for s, p in zip(stories, scores):
        by.setdefault(s.condition, []).append(p.score)
    for condition, values in by.items():
        print(f"{condition:>10}: mean probe {sum(values) / len(values):+.4f} (n={len(values)})")


def annotate(args: argparse.Namespace) -> None:
    from . import annotate as annotate_mod
    from .humans import inter_rater_agreement, load_labels

    if args.action == "export":
        key = annotate_mod.export(args.input, args.out, compare=args.compare, seed=args.seed)
        print(f"wrote pack {key.pack_id} to {args.out}: {len(key.items)} pairs (seed {key.seed}); send raters "
              f"{Path(args.out) / annotate_mod.PAGE_FILE} only and keep {annotate_mod.KEY_FILE}")
        return
    new = annotate_mod.import_results(args.pack, args.results, args.out)
    labels = load_labels(args.out) if Path(args.out).exists() else []
    raters = sorted({h.rater for h in labels})
    print(f"imported {len(new)} new labels into {args.out}: {len(labels)} labels from {len(raters)} rater(s)")
    alpha = inter_rater_agreement(labels)
    if alpha is not None:
        print(f"inter-rater agreement: Krippendorff's alpha {alpha.estimate:.3f} "
              f"[{alpha.ci_low:.3f}, {alpha.ci_high:.3f}] (nominal A/B/tie, n={alpha.n} items)")


def _report_inputs(args: argparse.Namespace):
    from . import humans, report

    run = report.load_runs(args.runs)
    run.humans += [label for spec in args.humans for label in humans.load(spec)]
    return run


def report(args: argparse.Namespace) -> int:
    from . import report as report_mod

    run = _report_inputs(args)
    name = args.name or Path(args.runs[0]).resolve().stem
    path = report_mod.build(name, run.stories, run.ratings, run.preferences, run.probe, run.humans,
                            lm_eval=run.lm_eval, checks=args.check, out_root=args.out_root, n_boot=args.n_boot)
    result = report_mod.read_summary(path)
    report_mod.print_summary(result["summary"])
    print(f"report: {path} (CI summary: {path.parent / 'summary.md'}, {path.parent / 'summary.json'})")
    for c in result["checks"]:
        print(f"check {'passed' if c['passed'] else 'FAILED'}: {c['expr']} (value {c['value']}) {c['error']}")
    return 0 if result["passed"] else 1


def compare_judges(args: argparse.Namespace) -> None:
    from . import report as report_mod

    run = _report_inputs(args)
    if not run.humans:
        raise ValueError("no human labels; pass --humans FILE (CSV/JSONL) or --humans hanna")
    result = report_mod.compare_judges(run.preferences, run.ratings, run.humans, n_boot=args.n_boot)
    if not result["judges"]:
        raise ValueError("no judgement matches a human-labelled pair or rated story; judgements and labels must "
                         "name the same story ids (<prompt_id>:<condition>)")
    if args.json:
        print(json.dumps(result))
        return
    for title, header, rows in report_mod.compare_tables(result):
        print(f"## {title}\n\n{report_mod.markdown_table(header, rows)}\n")


def lm_eval(args: argparse.Namespace) -> int:
    """lm-eval's own CLI, with steered_hf and the creative tasks registered in this process."""
    import sys

    from lm_eval.__main__ import cli_evaluate

    from . import lm_eval_hook

    lm_eval_hook.install()
    sys.argv = ["lm_eval", *args.lm_eval_args]
    cli_evaluate()
    return 0


def export(args: argparse.Namespace) -> None:
    if args.format == "llamacpp-cvec":
        from . import commands_llamacpp

        return commands_llamacpp.export(args)
    from . import lm_eval_glue

    alpha = steering.DEFAULT_ALPHA if args.alpha is None else args.alpha
    steering.check(alpha, args.norm)
    model, tokenizer = _load(args)
    d, path = _direction(args, model, tokenizer)
    out = lm_eval_glue.export_steered(d, model, alpha, args.norm, args.out)
    print(f"wrote {out} from {path}: use `lm_eval --model steered --model_args "
          f"pretrained={models.resolve(args.model)},steer_path={out}`")


def judge(args: argparse.Namespace) -> None:
    from . import judges

    stories = read_records(args.input, Story)
    items = stories if args.mode == "rating" else judges.pairs_by_condition(stories, *args.pair.split(",", 1))
    out = judges.run(judges.load_judge(args.judge), args.mode, items, args.out, progress=True)
    invalid = sum(not r["status"].startswith("ok") for r in out)
    print(f"{len(out)} judgements in {args.out} ({invalid} invalid)")
    if args.mode == "pairwise":
        from .records import Preference
        from .report import fmt_estimate, pair_biases

        words = {s.id: len(s.text.split()) for s in stories}
        for name, e in pair_biases(read_records(args.out, Preference), words).items():
            print(f"{name.replace('_', ' ')}: {fmt_estimate(e)} (n={e['n']} pairs)")
