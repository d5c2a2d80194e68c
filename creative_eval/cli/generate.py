"""Commands that generate stories: `generate` (the three conditions, on the HF, llama.cpp or vLLM backend) and
`steer-sweep` (the steering frontier)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from creative_eval import outputs, pairs
from creative_eval.cli import args as a
from creative_eval.cli import stopping
from creative_eval.records import CONDITIONS
from creative_eval.steering import settings

BACKENDS = ("hf", "llamacpp", "vllm")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="stories for the test split: baseline / induced / creative")
    a.model_args(p)
    a.direction_args(p)
    p.add_argument("--pairs", type=a.pairs_source, default=pairs.SHIPPED,
                   help="pairs file (JSONL/CSV) or a shipped set whose prompts are written from")
    p.add_argument("--split", default="test", help="which split of the pairs to write stories for")
    p.add_argument("--limit", type=a.positive_int, default=None, help="first N pairs only (default: all)")
    a.steering_args(p)
    p.add_argument("--conditions", type=a.conditions, default=",".join(CONDITIONS),
                   help="comma-separated conditions to write (baseline: negated prompt; induced: negated prompt, "
                        "steered; creative: creative prompt)")
    p.add_argument("--max-new-tokens", type=a.positive_int, default=256, help="tokens per story at most")
    p.add_argument("--temperature", type=a.temperature, default=1.0, help="sampling temperature; 0: greedy")
    p.add_argument("--top-p", type=a.top_p, default=1.0, help="nucleus sampling: the smallest set of tokens "
                   "holding this much probability; 1: all")
    p.add_argument("--seed", type=a.whole, default=0, help="sampling seed (each batch is seeded from it)")
    p.add_argument("--batch-size", type=a.positive_int, default=8, help="prompts decoded together")
    p.add_argument("--backend", choices=BACKENDS, default="hf",
                   help="hf (transformers), llamacpp (a .gguf or 'embedded' through llama-cpp-python) or "
                        "vllm (vLLM in its own environment, .venv-vllm)")
    p.add_argument("--threads", type=a.positive_int, default=None, help="llamacpp: CPU threads (default: all cores)")
    vllm_args(p)
    p.add_argument("--out", required=True, help="stories JSONL")
    p.set_defaults(run=generate, outputs=lambda args: outputs.check_file(args.out, inputs=a.pairs_inputs(args),
                                                                         kind="story"),
                   saves=lambda args: [(args.out, "stories")])

    p = sub.add_parser("steer-sweep", help="the steering frontier: creativity gain by other judges vs coherence "
                                           "cost, against a random direction; recommends lambda")
    a.model_args(p)
    a.direction_args(p)
    p.add_argument("--alphas", type=a.alphas, default="0.1,0.2,0.35",
                   help="comma-separated lambdas for the direction and the random control")
    p.add_argument("--norm", choices=settings.NORMS, default="relative",
                   help="unit of lambda: relative (x the mean residual norm at the layer), unit (the paper's), "
                        "raw (x |mean difference|)")
    p.add_argument("--pairs", type=a.pairs_source, default=pairs.SHIPPED,
                   help="pairs file (JSONL/CSV) or a shipped set whose negated test prompts are steered")
    p.add_argument("--limit", type=a.positive_int, default=24, help="first N negated test prompts")
    p.add_argument("--max-new-tokens", type=a.positive_int, default=96, help="tokens per story at most")
    p.add_argument("--seed", type=a.whole, default=0, help="sampling seed")
    p.add_argument("--judge", type=a.preset, default="self",
                   help="judge preset for pairwise and ratings (self: the model itself)")
    p.add_argument("--judge-direction", type=a.direction_source, default="auto",
                   help="the judging probe: 'auto' (shipped pairs at --judge-layer), 'humans' (fitted on WQ's "
                        "expert pairs: an independent, human-calibrated judge, read on response tokens), 'stories', "
                        "or a direction file; never the steering direction itself")
    p.add_argument("--judge-layer", type=a.positive_int, default=None,
                   help="layer of a --judge-direction source (default: auto 3 before the steering layer, other "
                        "sources the default layer)")
    p.add_argument("--at", type=a.finite, default=settings.DEFAULT_ALPHA,
                   help="lambda of the positions, layers and gate arms")
    p.add_argument("--extra-positions", type=a.positions, default=[], help="e.g. generated: the direction there at --at")
    p.add_argument("--extra-layers", type=a.layers, default=[], help="e.g. 12,22: the direction there at --at")
    p.add_argument("--gate", type=a.finite, default=None, metavar="TARGET",
                   help="a probe-gated arm: steer while the running probe cosine mean is below TARGET")
    p.add_argument("--gate-window", type=a.positive_int, default=16, help="tokens in the gate's running mean")
    p.add_argument("--gate-alpha", type=a.finite, default=None, help="lambda while the gate is open (default: --at)")
    p.add_argument("--negated", action="store_true", help="also steer with the negated direction at every lambda")
    p.add_argument("--random-seed", type=a.whole, default=0, help="seed of the random control direction")
    p.add_argument("--coherence-template", type=a.rate_template, default=None,
                   help="rating template for the judge's coherence rating, with {prompt} and {story}, or a "
                        "shipped one by name (e.g. rate-quality: the judge's writing-quality rating instead)")
    p.add_argument("--ppl-bound", type=a.finite, default=1.5, help="eligible: perplexity ratio at most this")
    p.add_argument("--rep-bound", type=a.finite, default=0.05, help="eligible: repetition at most baseline + this")
    p.add_argument("--out", default="reports/frontier", help="folder of stories, judgements, table and figure")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(run=steer_sweep)


VLLM_ARGS = {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "distributed_executor_backend": None}


def vllm_args(p: argparse.ArgumentParser) -> None:
    """How vLLM spreads the model; passed through to `vllm.LLM`."""
    p.add_argument("--tensor-parallel-size", type=a.positive_int, default=1, help="vllm: GPUs per model replica "
                   "that split each layer")
    p.add_argument("--pipeline-parallel-size", type=a.positive_int, default=1, help="vllm: stages the layers are "
                   "split into")
    p.add_argument("--distributed-executor-backend", choices=("mp", "ray"), default=None,
                   help="vllm: mp (processes on this machine) or ray (a Ray cluster, several machines) "
                        "(default: vLLM's choice)")


def check_no_vllm_args(args: argparse.Namespace) -> None:
    given = [f"--{k.replace('_', '-')}" for k, default in VLLM_ARGS.items() if getattr(args, k) != default]
    if given:
        raise ValueError(f"{', '.join(given)} apply to --backend vllm; drop them or pass --backend vllm")


def vllm_engine_args(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in VLLM_ARGS}


def sampling_of(args: argparse.Namespace):
    from creative_eval.steering.generate import Sampling

    return Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                    seed=args.seed, batch_size=args.batch_size)


def kept_and_made(stories: list, kept: int, path: str, backend: str = "") -> str:
    """The closing line of a resumable `generate`: what the file holds, and how much of it this run made."""
    return (f"{len(stories)} stories in {path} ({kept} kept, {len(stories) - kept} made; {backend}appended as made; "
            "a re-run with the same settings resumes)")


def generate(args: argparse.Namespace) -> None:
    stopping.expect(args.out, len(pairs.load_pairs(args.pairs, args.split)[: args.limit]) * len(args.conditions))
    if args.backend == "vllm":
        return generate_vllm(args)
    check_no_vllm_args(args)
    if args.backend == "llamacpp":
        return generate_llamacpp(args)
    from creative_eval.steering import generate as generate_mod

    sampling = sampling_of(args)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    kept = generate_mod.check_out(args.out, selected, args.conditions, steering=args.steering, sampling=sampling,
                                  model_id=args.model)
    model, tokenizer = a.load_model(args)
    d, path = a.resolve_direction(args, model, tokenizer)
    out = generate_mod.resume(args.out, model, tokenizer, selected, d, steering=args.steering,
                              conditions=args.conditions, sampling=sampling, model_id=args.model,
                              direction_file=path, progress=True)
    print(kept_and_made(out, kept, args.out))


def generate_llamacpp(args: argparse.Namespace) -> None:
    """`generate` through llama.cpp: the same conditions and Story records as the HF backend. Every input is
    checked before a model loads; with a direction file nothing but llama.cpp loads, which is what a large GGUF
    needs (a source name needs the HF model for extraction, loaded de-quantised from the GGUF and cached)."""
    from creative_eval.backends import llamacpp
    from creative_eval.backends.llamacpp import cvec
    from creative_eval.records import write_jsonl

    llamacpp.check_steering(args.steering)
    if args.dtype or args.device_map:
        raise ValueError("--dtype and --device-map apply to --backend hf; llama.cpp runs the GGUF's own weights")
    cvec.model_gguf(args.model)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    if args.direction.loaded is None:
        model, tokenizer = a.load_model(args)
        d, path = a.resolve_direction(args, model, tokenizer)
    else:
        d, path = llamacpp.check_direction(args.direction.loaded, args.model, args.direction), str(args.direction)
    out = llamacpp.stories(args.model, selected, d, steering=args.steering, conditions=args.conditions,
                           sampling=sampling_of(args), direction_file=path, n_threads=args.threads)
    write_jsonl(args.out, out)
    print(f"wrote {len(out)} stories to {args.out} (llama.cpp, layer {d.layer}, alpha {args.alpha} {args.norm})")


def generate_vllm(args: argparse.Namespace) -> None:
    """`generate` through vLLM: the same conditions, Story records and resume as the HF backend, with
    `backend: vllm`. Every input is checked before vLLM starts; with a direction file only the tokenizer loads
    here (a source name loads the HF model to extract the direction, cached)."""
    from creative_eval.backends import vllm
    from creative_eval.steering import generate as generate_mod

    vllm.check_steering(args.steering)
    if args.device_map:
        raise ValueError("--device-map applies to --backend hf; vLLM places the model itself "
                         "(--tensor-parallel-size, --pipeline-parallel-size)")
    sampling = sampling_of(args)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    kept = generate_mod.check_out(args.out, selected, args.conditions, steering=args.steering, sampling=sampling,
                                  model_id=args.model, backend=vllm.BACKEND)
    source = vllm.source_of(args.model)
    if args.direction.loaded is None:
        model, tokenizer = a.load_model(args)
        d, path = a.resolve_direction(args, model, tokenizer)
    else:
        tokenizer = vllm.tokenizer_of(source)
        d, path = vllm.check_direction(args.direction.loaded, source, str(args.direction)), str(args.direction)
    prompts = [settings.prompt_of(p, c) for c in args.conditions for p in selected]
    with vllm.Engine(source, dtype=args.dtype, max_num_seqs=sampling.batch_size,
                     max_model_len=vllm.max_model_len(tokenizer, prompts, sampling, d.template),
                     **vllm_engine_args(args)) as engine:
        out = vllm.resume(args.out, engine, tokenizer, selected, d, steering=args.steering,
                          conditions=args.conditions, sampling=sampling, model_id=args.model, direction_file=path,
                          progress=True)
    print(kept_and_made(out, kept, args.out, f"vLLM, layer {d.layer} = block index {d.layer - 1}; "))


def steer_sweep(args: argparse.Namespace) -> None:
    from creative_eval import judges, report, sources
    from creative_eval.evals import coherence, frontier
    from creative_eval.steering.generate import Sampling

    if args.extra_layers and args.direction != "auto":
        raise ValueError("--extra-layers extracts the direction at each layer from the shipped pairs; "
                         "use --direction auto with it, or drop --extra-layers")
    if args.judge_direction.loaded is not None and args.judge_layer is not None:
        raise ValueError("--judge-layer applies to a --judge-direction source; a direction file has its own layer")
    selected = pairs.load_pairs(args.pairs, "test")[: args.limit]
    model, tokenizer = a.load_model(args)
    d, _ = a.resolve_direction(args, model, tokenizer)
    directions = {d.layer: d, **{layer: sources.resolve("auto", model, tokenizer, args.model, layer)[0]
                                 for layer in args.extra_layers if layer != d.layer}}
    judge_layer = args.judge_layer or (frontier.judge_layer(d.layer) if args.judge_direction == "auto" else None)
    judge_d, judge_path = sources.resolve(args.judge_direction, model, tokenizer, args.model, judge_layer)
    judge = judges.load_judge(args.judge, *((model, tokenizer) if args.judge["id"] == "self" else ()))
    arms = frontier.plan(args.alphas, at=args.at, layers=args.extra_layers, positions=args.extra_positions,
                         gate=args.gate, gate_window=args.gate_window, gate_alpha=args.gate_alpha,
                         negated=args.negated)
    result = frontier.run(model, tokenizer, selected, directions, judge_d, arms, layer=d.layer, judge=judge,
                          out=args.out, norm=args.norm, seed=args.random_seed,
                          sampling=Sampling(max_new_tokens=args.max_new_tokens, seed=args.seed),
                          coherence_template=args.coherence_template or coherence.COHERENCE_TEMPLATE,
                          ppl_bound=args.ppl_bound, rep_bound=args.rep_bound, judge_source=judge_path)
    report.write_frontier(result, args.out)
    if args.json:
        print(json.dumps(result))
        return
    print(report.frontier_markdown(result, str(Path(args.out) / "frontier.png")))
