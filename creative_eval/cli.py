"""`creative-eval` command line: argument parsing only; every command calls the library modules."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import __version__


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded", help="HF id, local folder, .gguf file, or 'embedded' (default)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 on GPU, else fp32)")
    p.add_argument("--device-map", default=None, help="passed to transformers, e.g. 'auto' or 'cuda'")


def _direction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--direction", default="auto", help="direction .safetensors, or 'auto' (shipped pairs, cached)")
    p.add_argument("--layer", type=int, default=None, help="layer for --direction auto (default: the sweep's)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import activations, pairs, probe, steering

    parser = argparse.ArgumentParser(prog="creative-eval", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("direction", help="extract the creativity direction at one layer")
    _model_args(p)
    p.add_argument("--pairs", default=pairs.SHIPPED, help="pairs file (JSONL/CSV) or 'pairs' (shipped)")
    p.add_argument("--split", default="validation", help="which split to extract from (default validation)")
    p.add_argument("--layer", type=int, default=None, help="output of decoder block l (default: the sweep's)")
    p.add_argument("--pooling", choices=activations.POOLINGS, default="mean")
    p.add_argument("--no-template", action="store_true", help="read prompts without the chat template")
    p.add_argument("--out", required=True, help="where to write the .safetensors file")

    p = sub.add_parser("sweep", help="AUROC of the probe at every layer; recommends a layer")
    _model_args(p)
    p.add_argument("--pairs", default=pairs.SHIPPED)
    p.add_argument("--robustness", default=pairs.ROBUSTNESS)
    p.add_argument("--pooling", choices=activations.POOLINGS, default="mean")
    p.add_argument("--no-template", action="store_true")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--plot", default=None, help="PNG path for the AUROC-per-layer plot")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("generate", help="stories for the test split: baseline / induced / creative")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--pairs", default=pairs.SHIPPED)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="first N pairs only")
    p.add_argument("--alpha", type=_finite, default=None, help="lambda (default: the documented default)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--positions", choices=steering.POSITIONS, default="all")
    p.add_argument("--conditions", default="baseline,induced,creative")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=_finite, default=1.0)
    p.add_argument("--top-p", type=_finite, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", required=True, help="stories JSONL")

    p = sub.add_parser("score", help="probe scores of stories (re-scored on the unsteered model)")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--input", required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--tokens", choices=probe.TOKENS, default="input+response")
    p.add_argument("--out", default=None, help="JSONL of scores (default: print a summary only)")

    p = sub.add_parser("demo", help="the main job end to end on the embedded model")
    p.add_argument("--n", type=int, default=8, help="number of test prompts")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--out", default="reports/demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import commands

    try:
        return getattr(commands, args.command.replace("-", "_"))(args) or 0
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"creative-eval {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
