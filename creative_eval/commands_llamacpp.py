"""The llama.cpp side of two CLI commands: `export --format llamacpp-cvec` and `generate --backend llamacpp`.

Both check every input (output name, alpha, norm, positions, the GGUF file, a direction file against the GGUF's
shape) before a model loads. A direction `auto` needs the HF model (extraction), loaded de-quantised from the
GGUF and cached; with a direction file nothing but llama.cpp loads, which is what a large GGUF needs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import cvec, llamacpp, models, pairs, sources, steering
from .direction import Direction
from .generate import Sampling
from .records import write_jsonl


def _alpha(args: argparse.Namespace) -> float:
    steering.check(args.alpha, args.norm, getattr(args, "positions", "all"))
    return args.alpha


def _hf_direction(args: argparse.Namespace) -> tuple[Direction, str, str, int]:
    """(direction, its file, model hint, layer count) through the HF model: `auto`, or a non-GGUF model."""
    model, tokenizer = models.load(args.model, args.dtype, args.device_map)
    d, path = sources.resolve(args.direction, model, tokenizer, args.model, args.layer, progress=True)
    return d, path, model.config.model_type, models.num_layers(model)


def _is_gguf(model: str) -> bool:
    return model == models.EMBEDDED or model.endswith(".gguf")


def export(args: argparse.Namespace) -> None:
    """Write the scaled direction as a llama.cpp control vector (GGUF)."""
    alpha = _alpha(args)
    if Path(args.out).suffix != ".gguf":
        raise ValueError(f"--out {args.out}: llama.cpp reads control vectors from .gguf files; change the extension")
    if args.direction not in sources.SOURCES and _is_gguf(args.model):
        shape = cvec.gguf_shape(cvec.model_gguf(args.model))
        d = llamacpp.load_direction(args.direction, args.model)
        path, hint, num_layers = args.direction, shape.arch, shape.num_layers
    else:
        d, path, hint, num_layers = _hf_direction(args)
    out = cvec.write(d, alpha, args.norm, args.out, model_hint=hint, num_layers=num_layers)
    il = cvec.llamacpp_layer(d.layer, num_layers)
    print(f"wrote {out} from {path}: layer {d.layer} = llama.cpp direction.{il}, alpha {alpha} ({args.norm}); use "
          f"`llama-cli -m MODEL.gguf --control-vector {out}` (or --control-vector-scaled {out} 1.0; a scale s "
          "steers with alpha * s)")


def generate(args: argparse.Namespace) -> None:
    """`generate` through llama.cpp: the same three conditions and Story records as the HF backend."""
    conditions = args.conditions
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        seed=args.seed, batch_size=args.batch_size)
    alpha = _alpha(args)
    if args.positions != "all":
        raise ValueError(f"--positions {args.positions}: llama.cpp control vectors act on every position; use "
                         "--positions all with --backend llamacpp, or --backend hf")
    if args.dtype or args.device_map:
        raise ValueError("--dtype and --device-map apply to --backend hf; llama.cpp runs the GGUF's own weights")
    cvec.model_gguf(args.model)
    selected = pairs.load_pairs(args.pairs, args.split)[: args.limit]
    if args.direction in sources.SOURCES:
        d, path, _, _ = _hf_direction(args)
    else:
        d, path = llamacpp.load_direction(args.direction, args.model), args.direction
    out = llamacpp.stories(args.model, selected, d, alpha=alpha, norm=args.norm, positions=args.positions,
                           conditions=conditions, sampling=sampling, direction_file=str(path),
                           n_threads=args.threads)
    write_jsonl(args.out, out)
    print(f"wrote {len(out)} stories to {args.out} (llama.cpp, layer {d.layer}, alpha {alpha} {args.norm})")

