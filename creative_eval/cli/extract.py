"""Commands that make or export a direction: `direction`, `sweep` (and `sweep --criteria`), `export`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from creative_eval import outputs, pairs
from creative_eval.cli import args as a
from creative_eval.cli.stopping import WHOLE
from creative_eval.records import POOLINGS

POOLING_HELP = "how a prompt's token states become one vector: mean over its tokens, or its last token"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("direction", help="extract the creativity direction at one layer")
    a.model_args(p)
    p.add_argument("--source", choices=("prompts", "stories", "humans", "hanna"), default="prompts",
                   help="prompts: the pairs' prompts; stories: the shipped validation pairs' unsteered "
                        "stories (generated once, cached); humans: WQ's expert pairs (writing quality); hanna: "
                        "HANNA's human stories paired by crowd Surprise; the last two are printed with their "
                        "agreement cross-validated by groups of pairs sharing a text")
    a.length_control_args(p)
    p.add_argument("--hold-out-wq", type=a.count, default=0, metavar="N",
                   help="humans source: fit without the first N pairs of the fixed WQ judging sample (the pairs "
                        "`agreement --humans wq --limit N` and the demo judge) and every pair sharing a text with "
                        "them, so a probe with this direction can be measured on them")
    p.add_argument("--pairs", type=a.pairs_source, default=pairs.SHIPPED,
                   help="pairs file (JSONL/CSV) or 'pairs' (shipped); --source prompts only")
    p.add_argument("--split", default="validation", help="which split of the pairs to extract from")
    p.add_argument("--layer", type=a.positive_int, default=None,
                   help="output of decoder block l (default: the sweep's)")
    p.add_argument("--pooling", choices=POOLINGS, default="mean", help=POOLING_HELP)
    p.add_argument("--no-template", action="store_true", help="read prompts without the chat template")
    p.add_argument("--out", required=True, help="where to write the .safetensors file")
    p.set_defaults(run=direction, outputs=lambda args: a.check_new_file(args.out, a.pairs_inputs(args)),
                   saves=lambda args: [(args.out, WHOLE)])

    p = sub.add_parser("sweep", help="AUROC of the probe at every layer; recommends a layer")
    a.model_args(p)
    p.add_argument("--pairs", type=a.pairs_source, default=pairs.SHIPPED,
                   help="pairs file (JSONL/CSV) or a shipped set: the validation split fits, the test split scores")
    p.add_argument("--robustness", type=a.pairs_source, default=pairs.ROBUSTNESS,
                   help="vocabulary-swapped pairs, never used to fit: does the AUROC hold without the usual words")
    p.add_argument("--pooling", choices=POOLINGS, default="mean", help=POOLING_HELP)
    p.add_argument("--no-template", action="store_true", help="read prompts without the chat template")
    p.add_argument("--n-boot", type=a.positive_int, default=1000, help="bootstrap resamples of each AUROC interval")
    p.add_argument("--plot", default=None, help="PNG path for the AUROC-per-layer plot")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--criteria", action="store_true",
                   help="three criteria per layer and source (prompts, stories, humans): prompt AUROC, held-out "
                        "story AUROC, WQ agreement, each with random-direction controls; plus robustness and hard sets")
    p.add_argument("--layers", type=a.layers, default="8,12,17,22", help="--criteria: comma-separated layers")
    p.add_argument("--fit-pairs", type=a.positive_int, default=None,
                   help="--criteria: fit the stories source on the first N validation pairs' stories (default: all)")
    p.add_argument("--story-fit", choices=("validation", "crossfit"), default="validation",
                   help="--criteria: fit the stories source on validation stories, or cross-fit it by "
                        "pair on the test stories (5 folds; no validation stories to generate)")
    a.length_control_args(p)
    p.set_defaults(run=sweep, outputs=lambda args: args.plot and outputs.check_file(args.plot,
                                                                                     inputs=a.pairs_inputs(args)))

    p = sub.add_parser("export", help="write the direction in another tool's format")
    a.model_args(p)
    a.direction_args(p)
    p.add_argument("--format", choices=["lm-eval-steered", "llamacpp-cvec"], required=True,
                   help="lm-eval-steered: the .pt file of lm-eval's built-in `steered` model (steer_path=...); "
                        "llamacpp-cvec: a llama.cpp control-vector .gguf (--control-vector FILE)")
    a.steering_args(p, positions=False)
    p.add_argument("--out", required=True, help="the .pt (lm-eval-steered) or .gguf (llamacpp-cvec) file to write")
    p.set_defaults(run=export, outputs=export_outputs, saves=lambda args: [(args.out, WHOLE)])


def export_outputs(args: argparse.Namespace) -> None:
    """The export file is new and is none of the inputs (the pairs, a direction file)."""
    from creative_eval import sources

    a.check_new_file(args.out, a.pairs_inputs(args) + ([] if args.direction in sources.SOURCES else [args.direction]))


def direction(args: argparse.Namespace) -> None:
    from creative_eval import direction as direction_mod
    from creative_eval import models, sources

    if args.hold_out_wq:
        return held_out_direction(args)
    if args.source != "prompts":
        model, tokenizer = a.load_model(args)
        d, path = sources.resolve(args.source, model, tokenizer, args.model, args.layer, fitting=args.fitting,
                                  progress=True)
        direction_mod.save(d, args.out)
        print(f"wrote {args.out} (source {d.source}, cached at {path}): layer {d.layer}, raw norm {d.raw_norm:.3g}")
        if args.source in sources.HUMAN_SOURCES:
            print(human_validation(model, tokenizer, d, args.fitting))
        return
    selected = pairs.load_pairs(args.pairs, args.split)  # a bad file fails before the model loads
    model, tokenizer = a.load_model(args)
    layer = args.layer if args.layer is not None else direction_mod.default_layer(model)
    models.check_layer(model, layer)
    d = direction_mod.extract(
        model, tokenizer, selected, layer, model_id=args.model,
        pairs_hash=pairs.file_hash(args.pairs), pooling=args.pooling, template=not args.no_template, progress=True,
    )
    direction_mod.save(d, args.out)
    print(f"wrote {args.out}: layer {d.layer}, raw norm {d.raw_norm:.3g}, residual norm {d.resid_norm:.3g}")


def human_validation(model, tokenizer, d, fitting) -> str:
    """A human source's agreement with its people on pairs it was not fitted on, beside its controls and length."""
    from creative_eval import stats
    from creative_eval.sources import calibration, label_set, label_states

    good_st, bad_st, good, bad = label_states(model, tokenizer, d.layer, d.source, progress=True)
    v = calibration.validate(good_st, bad_st, good, bad, fitting)
    est, lc = v["agreement"], v["length_logit"]
    side = lambda e: f"{stats.fmt_estimate(e)} (n={e['n']} {e['unit']}s)"  # noqa: E731
    coef = (f"{lc['coef']:+.2f} [{lc['ci_low']:+.2f}, {lc['ci_high']:+.2f}]" if lc["coef"] is not None
            else f"not fitted ({lc['reason']})")
    scores = {s.text: float(x) for s, x in zip(good + bad, [*good_st.scores(d.vector), *bad_st.scores(d.vector)])}
    rho = stats.correlation_ci(list(scores.values()), [len(t.split()) for t in scores])
    return (f"{label_set(d.source).label}: {v['pairs']} pairs in {v['groups']} groups sharing a text, {v['folds']}-fold "
            f"cross-validated by group, fit {v['fit']}: agreement {side(est)}; percentile "
            f"{100 * v['random']['percentile']:.0f} among random directions, {100 * v['shuffled']['percentile']:.0f} "
            f"among shuffled-label fits; where the people chose the longer {side(v['agree_when_longer_chosen'])}, "
            f"the shorter {side(v['agree_when_shorter_chosen'])}; length-controlled coefficient {coef} per SD; "
            f"Spearman of this direction's scores with words on its {rho.n} training texts (a property of the fit, "
            f"not a validation) {rho.estimate:+.2f} [{rho.ci_low:+.2f}, {rho.ci_high:+.2f}]")


def held_out_direction(args: argparse.Namespace) -> None:
    """`direction --source humans --hold-out-wq N`: the humans fit without a judging sample, to be measured on it."""
    from creative_eval import direction as direction_mod
    from creative_eval import sources
    from creative_eval.people import humans

    if args.source != "humans":
        raise ValueError(f"--hold-out-wq keeps WQ pairs out of the humans source's fit, not out of {args.source!r}; "
                         "add --source humans or drop it")
    sample, _ = humans.wq_sample(args.hold_out_wq, root=humans.WQ_DIR)  # no WQ or too large an N: before the model
    model, tokenizer = a.load_model(args)
    d, path = sources.humans_direction(model, tokenizer, args.model, args.layer, fitting=args.fitting,
                                       held_out=frozenset(s.prompt_id for s in sample), progress=True)
    direction_mod.save(d, args.out)
    print(f"wrote {args.out} (source humans, fit {args.fitting.name}, cached at {path}): layer {d.layer}, fitted on "
          f"{d.meta['n_pairs']} WQ pairs, none of the first {args.hold_out_wq} of the judging sample nor any pair "
          f"sharing a text with them; measure it there with a probe preset naming `direction: {args.out}` and "
          f"`creative-eval agreement --judge PRESET.yaml --humans wq --limit {args.hold_out_wq}`")


def sweep(args: argparse.Namespace) -> None:
    from creative_eval import report
    from creative_eval.evals import sweeps

    if args.criteria:
        return criteria_sweep(args)
    if args.length_control != "none":
        raise ValueError("--length-control applies to the humans rows of --criteria; add --criteria or drop it")
    model, tokenizer = a.load_model(args)
    result = sweeps.layer_sweep(
        model, tokenizer, pairs.load_pairs(args.pairs, "validation"), pairs.load_pairs(args.pairs, "test"),
        pairs.load_pairs(args.robustness), pairs.load_pairs(pairs.HARD), model_id=args.model, pairs_hash=pairs.file_hash(args.pairs),
        pooling=args.pooling, template=not args.no_template, n_boot=args.n_boot, progress=not args.json,
    )
    if args.plot:
        report.plot_sweep(result, args.plot)
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
    from creative_eval import models, report
    from creative_eval.evals import criteria
    from creative_eval.people import humans

    sets = {"validation": pairs.load_pairs(args.pairs, "validation"), "test": pairs.load_pairs(args.pairs, "test"),
            "robustness": pairs.load_pairs(args.robustness), "hard": pairs.load_pairs(pairs.HARD)}
    wq = humans.wq_pairs()  # a missing WQ folder fails before the model loads
    model, tokenizer = a.load_model(args)
    for layer in args.layers:
        models.check_layer(model, layer)
    result = criteria.sweep(model, tokenizer, args.layers, **sets, wq=wq, model_id=args.model, n_boot=args.n_boot,
                            fit_pairs=args.fit_pairs, story_fit=args.story_fit, human_fit=args.fitting,
                            progress=not args.json)
    print(json.dumps(result) if args.json else report.criteria_table(result))


def export(args: argparse.Namespace) -> None:
    if args.format == "llamacpp-cvec":
        return export_cvec(args)
    from creative_eval import models
    from creative_eval.harness import export as export_mod

    model, tokenizer = a.load_model(args)
    d, path = a.resolve_direction(args, model, tokenizer)
    out = export_mod.lm_eval_steered(d, model, args.steering, args.out)
    print(f"wrote {out} from {path}: use `lm_eval --model steered --model_args "
          f"pretrained={models.resolve(args.model)},steer_path={out}`")


def export_cvec(args: argparse.Namespace) -> None:
    """The scaled direction as a llama.cpp control vector (GGUF). With a direction file and a GGUF model nothing
    but the GGUF's header is read; a source name needs the HF model (extraction, de-quantised and cached)."""
    from creative_eval import models
    from creative_eval.backends.llamacpp import cvec, engine

    if Path(args.out).suffix != ".gguf":
        raise ValueError(f"--out {args.out}: llama.cpp reads control vectors from .gguf files; change the extension")
    if args.direction.loaded is not None and engine.is_gguf(args.model):
        shape = cvec.gguf_shape(cvec.model_gguf(args.model))
        d = engine.check_direction(args.direction.loaded, args.model, args.direction)
        path, hint, num_layers = str(args.direction), shape.arch, shape.num_layers
    else:
        model, tokenizer = a.load_model(args)
        d, path = a.resolve_direction(args, model, tokenizer)
        hint, num_layers = model.config.model_type, models.num_layers(model)
    out = cvec.write(d, args.steering, args.out, model_hint=hint, num_layers=num_layers)
    il = cvec.llamacpp_layer(d.layer, num_layers)
    print(f"wrote {out} from {path}: layer {d.layer} = llama.cpp direction.{il}, alpha {args.alpha} ({args.norm}); "
          f"use `llama-cli -m MODEL.gguf --control-vector {out}` (or --control-vector-scaled {out} 1.0; a scale s "
          "steers with alpha * s)")
