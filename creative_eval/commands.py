"""What each CLI command does: load, call the library modules in data-flow order, write files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import direction as direction_mod
from . import generate as generate_mod
from . import models, pairs, probe, steering
from .records import Story, read_records, write_jsonl

DEFAULT_ALPHA = 0.5  # relative norm: lambda * |a| = half the mean residual norm at the layer; see README


def _load(args: argparse.Namespace):
    return models.load(args.model, args.dtype, args.device_map)


def _direction(args: argparse.Namespace, model, tokenizer) -> tuple[direction_mod.Direction, str]:
    if args.direction == "auto":
        d, path = direction_mod.auto(model, tokenizer, args.model, args.layer, progress=True)
        return d, str(path)
    return direction_mod.load(args.direction, model), args.direction


def direction(args: argparse.Namespace) -> None:
    model, tokenizer = _load(args)
    layer = args.layer if args.layer is not None else direction_mod.default_layer(model)
    models.check_layer(model, layer)
    d = direction_mod.extract(
        model, tokenizer, pairs.load_pairs(args.pairs, args.split), layer, model_id=args.model,
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
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    sampling = generate_mod.Sampling(args.max_new_tokens, args.temperature, args.top_p, args.seed, args.batch_size)
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    steering.check(alpha, args.norm, args.positions)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    model, tokenizer = _load(args)
    d, path = _direction(args, model, tokenizer)
    out = generate_mod.stories(model, tokenizer, selected, d, alpha=alpha, norm=args.norm, positions=args.positions,
                               conditions=conditions, sampling=sampling, model_id=args.model, direction_file=path,
                               progress=True)
    write_jsonl(args.out, out)
    print(f"wrote {len(out)} stories to {args.out}")


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
