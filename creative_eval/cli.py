"""`creative-eval` command line: argument parsing only; every command calls the library modules."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import __version__
from .records import CONDITIONS


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded", help="HF id, local folder, .gguf file, or 'embedded' (default)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 on GPU, else fp32)")
    p.add_argument("--device-map", default=None, help="passed to transformers, e.g. 'auto' or 'cuda'")


def _direction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--direction", type=_direction_source, default="auto",
                   help="direction .safetensors, or 'auto' (shipped pairs, cached)")
    p.add_argument("--layer", type=_positive_int, default=None,
                   help="layer for --direction auto (default: the sweep's)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _temperature(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; use 0 for greedy decoding or a positive temperature")
    return value


def _top_p(text: str) -> float:
    value = _finite(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, 1]")
    return value


def _existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


def _direction_source(text: str) -> str:
    """'auto' or an existing file: checked here so that a typo fails before the model loads."""
    if text != "auto" and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such direction file; pass a .safetensors path or 'auto'")
    return text


def _pairs_source(text: str) -> str:
    """A shipped set name or an existing pairs file (its lines are validated when it is read)."""
    from .pairs import PairsError, path_of

    try:
        path_of(text)
    except PairsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _conditions(text: str) -> str:
    """Comma-separated conditions, all known, so a typo fails before anything is generated."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONDITIONS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown condition(s) {unknown or [text]}; choose from {', '.join(CONDITIONS)}")
    return text


def _condition_pair(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(":")
    if not sep or not a or not b or a == b:
        raise argparse.ArgumentTypeError(f"{text!r} is not two different conditions like baseline:induced")
    return a, b


def build_parser() -> argparse.ArgumentParser:
    from . import activations, pairs, probe, steering

    parser = argparse.ArgumentParser(prog="creative-eval", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("direction", help="extract the creativity direction at one layer")
    _model_args(p)
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED,
                   help="pairs file (JSONL/CSV) or 'pairs' (shipped)")
    p.add_argument("--split", default="validation", help="which split to extract from (default validation)")
    p.add_argument("--layer", type=_positive_int, default=None,
                   help="output of decoder block l (default: the sweep's)")
    p.add_argument("--pooling", choices=activations.POOLINGS, default="mean")
    p.add_argument("--no-template", action="store_true", help="read prompts without the chat template")
    p.add_argument("--out", required=True, help="where to write the .safetensors file")

    p = sub.add_parser("sweep", help="AUROC of the probe at every layer; recommends a layer")
    _model_args(p)
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED)
    p.add_argument("--robustness", type=_pairs_source, default=pairs.ROBUSTNESS)
    p.add_argument("--pooling", choices=activations.POOLINGS, default="mean")
    p.add_argument("--no-template", action="store_true")
    p.add_argument("--n-boot", type=_positive_int, default=1000)
    p.add_argument("--plot", default=None, help="PNG path for the AUROC-per-layer plot")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("generate", help="stories for the test split: baseline / induced / creative")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N pairs only")
    p.add_argument("--alpha", type=_finite, default=None, help="lambda (default: the documented default)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--positions", choices=steering.POSITIONS, default="all")
    p.add_argument("--conditions", type=_conditions, default=",".join(CONDITIONS))
    p.add_argument("--max-new-tokens", type=_positive_int, default=256)
    p.add_argument("--temperature", type=_temperature, default=1.0)
    p.add_argument("--top-p", type=_top_p, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--backend", choices=("hf", "llamacpp"), default="hf",
                   help="hf (transformers, default) or llamacpp (a .gguf or 'embedded' through llama-cpp-python)")
    p.add_argument("--threads", type=_positive_int, default=None, help="llamacpp: CPU threads (default: all cores)")
    p.add_argument("--out", required=True, help="stories JSONL")

    p = sub.add_parser("steer-sweep", help="choose lambda: probe gain (with CI) and perplexity per alpha")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--alphas", type=lambda t: [_finite(x) for x in t.split(",")], default=[0.1, 0.2, 0.35, 0.5],
                   help="comma-separated alphas (default 0.1,0.2,0.35,0.5)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED)
    p.add_argument("--limit", type=_positive_int, default=32, help="first N negated test prompts (default 32)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("score", help="probe scores of stories (re-scored on the unsteered model)")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--input", type=_existing_file, required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--tokens", choices=probe.TOKENS, default="input+response")
    p.add_argument("--out", default=None, help="JSONL of scores (default: print a summary only)")

    p = sub.add_parser("demo", help="the main job end to end on the embedded model")
    p.add_argument("--n", type=int, default=30, help="number of test prompts (default 30)")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--alpha", type=_finite, default=steering.DEFAULT_ALPHA, help="lambda, relative norm")
    p.add_argument("--hanna", type=int, default=24, help="HANNA prompts for the human-label panel (0: none)")
    p.add_argument("--out", default="reports/demo", help="run and report folder (a re-run resumes)")

    p = sub.add_parser("annotate", help="blinded pairwise human annotation: export a page, import its results")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("export", help="write a self-contained annotation page (index.html) and its key")
    q.add_argument("--input", required=True, help="stories JSONL (from `generate`)")
    q.add_argument("--out", required=True, help="pack folder; give raters index.html only, keep key.json")
    q.add_argument("--compare", action="append", type=_condition_pair, default=None, metavar="COND:COND",
                   help="condition pair to compare, e.g. baseline:induced (repeatable; default: all pairs)")
    q.add_argument("--seed", type=int, default=None, help="order/side shuffling seed (default: random, recorded)")
    q = actions.add_parser("import", help="un-blind downloaded results into human labels (JSONL)")
    q.add_argument("results", nargs="+", help="JSON or CSV files downloaded from the annotation page")
    q.add_argument("--pack", required=True, help="the pack folder written by `annotate export` (holds key.json)")
    q.add_argument("--out", required=True, help="human labels JSONL (appended; re-imports are skipped)")

    p = sub.add_parser("report", help="Figure-1 report (md, html, png) from judgement and lm-eval files; CI checks")
    p.add_argument("runs", nargs="+", help="run folders or files: stories, ratings, preferences, probe scores, "
                                           "human labels (JSONL), lm-eval results_*.json / samples_*.jsonl")
    p.add_argument("--name", default=None, help="report folder name under --out-root (default: first run's name)")
    p.add_argument("--out-root", default="reports")
    p.add_argument("--humans", action="append", default=[], help="human-label file (CSV/JSONL) or 'hanna'")
    p.add_argument("--check", action="append", default=[], metavar="EXPR",
                   help="e.g. 'pairwise.self.win_rate.ci_low>=0.5'; exit 1 when one fails (repeatable)")
    p.add_argument("--n-boot", type=int, default=2000)

    p = sub.add_parser("compare-judges", help="each judge vs human labels; McNemar between judges (Holm)")
    p.add_argument("runs", nargs="+", help="judgement files or folders (ratings / preferences JSONL)")
    p.add_argument("--humans", action="append", default=[], help="human-label file (CSV/JSONL) or 'hanna'")
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")

    p = sub.add_parser("lm-eval", help="run lm-eval with steered_hf and the creative tasks available",
                       prefix_chars="+",  # so that lm-eval's own --options all reach lm_eval_args
                       description="Everything after `lm-eval` goes to lm-eval's own command line, e.g. "
                                   "`creative-eval lm-eval --model steered_hf --tasks creative --limit 20`.")
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="lm-eval arguments")

    p = sub.add_parser("export", help="write the direction in another tool's format")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--format", choices=["lm-eval-steered", "llamacpp-cvec"], required=True,
                   help="lm-eval-steered: the .pt file of lm-eval's built-in `steered` model (steer_path=...); "
                        "llamacpp-cvec: a llama.cpp control-vector .gguf (--control-vector FILE)")
    p.add_argument("--alpha", type=_finite, default=None, help="lambda (default: the documented default)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--out", required=True, help="the .pt (lm-eval-steered) or .gguf (llamacpp-cvec) file to write")
    p = sub.add_parser("judge", help="0-9 ratings or pairwise preferences of stories by a judge preset")
    p.add_argument("--judge", required=True, help="preset name in judges/ (embedded, self, probe, ...) or a .yaml path")
    p.add_argument("--mode", choices=("rating", "pairwise"), default="rating")
    p.add_argument("--input", type=_existing_file, required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--pair", default="induced,baseline", help="pairwise: conditions A,B paired per prompt id")
    p.add_argument("--out", required=True, help="judgements JSONL (appended as made; a re-run resumes)")
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
