"""The command line's shared argument types and groups: each checks its value as it is parsed, so bad input
fails with one line before any model loads, and what a type reads (a direction file, a judge preset) is what the
command uses."""

from __future__ import annotations

import argparse
import math
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from creative_eval import outputs, pairs
from creative_eval.pairs import PairsError, path_of
from creative_eval.records import CONDITIONS, LENGTH_CONTROLS
from creative_eval.steering import settings
from creative_eval.steering.settings import Steering
from creative_eval.usage import HelpFormatter

if TYPE_CHECKING:  # the heavy modules load inside the functions that need them: `--help` imports no torch
    from creative_eval.sources import Named


def model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded", help="HF id, local folder, .gguf file, or 'embedded' (SmolLM2-135M-Instruct, shipped)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bfloat16 when a GPU is present, else float32)")
    p.add_argument("--device-map", default=None, help="passed to transformers, e.g. 'auto' (spread over the GPUs) or 'cuda' (default: the CPU)")


def direction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--direction", type=direction_source, default="auto",
                   help="direction .safetensors, or a source: 'auto'/'prompts' (shipped pairs), 'stories' (their "
                        "unsteered stories), 'humans' (WQ expert pairs), 'hanna' (HANNA stories by crowd Surprise); sources are "
                        "cached")
    p.add_argument("--layer", type=positive_int, default=None,
                   help="layer for a --direction source (default: the sweep's)")
    length_control_args(p)


def length_control_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--length-control", choices=LENGTH_CONTROLS, default="none",
                   help="humans and hanna sources only: residual fits a length-orthogonal direction (each pair difference "
                        "minus what its log length ratio explains, then the axes whose scores covary with length "
                        "projected out); none: the plain fit")


def fitting_of(args: argparse.Namespace):
    """The human sources' `calibration.Fitting`, checked against the named source before any model loads."""
    from creative_eval import sources
    from creative_eval.sources import calibration

    fitting = calibration.Fitting(length_control=args.length_control)
    named = getattr(args, "source", None) or getattr(args, "direction", None)
    if named is not None:  # `sweep --criteria` applies it to its humans rows, the one fitted source there
        sources.check_fitting(str(named), fitting)
    return fitting


def finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; write e.g. 0.2")
    return value


def alphas(text: str) -> list[float]:
    """Comma-separated lambdas, e.g. 0.1,0.2,0.35."""
    parts = text.split(",")
    if not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; write comma-separated numbers like 0.1,0.2")
    return [finite(p.strip()) for p in parts]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number; write e.g. 8")
    return value


def count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0; write e.g. 0 (none) or 24")
    return value


def temperature(text: str) -> float:
    value = finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; use 0 for greedy decoding or a positive temperature")
    return value


def top_p(text: str) -> float:
    value = finite(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not in (0, 1]")
    return value


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; write e.g. 0") from None


def existing_file(text: str) -> str:
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; pass a file inside it")
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file; check the path")
    return text


def existing_folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder; check the path")
    return text


def direction_source(text: str) -> Named:
    """A source name, or a direction file read and checked here, once: a bad file fails before the model loads
    and the command uses what was read."""
    from creative_eval import sources

    try:
        return sources.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def preset(text: str) -> dict:
    """A judge preset, read and checked field by field before any model loads; the command uses what was read."""
    from creative_eval.judges import presets

    try:
        return presets.load(text)
    except presets.PresetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def pairs_source(text: str) -> str:
    """A shipped set name or an existing pairs file (its lines are validated when it is read)."""
    try:
        path_of(text)
    except PairsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def layers(text: str) -> list[int]:
    """Comma-separated layers, e.g. 12,22."""
    return [positive_int(t.strip()) for t in text.split(",")]


def positions(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    bad = [n for n in names if n not in settings.POSITIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown position(s) {bad}; choose from {', '.join(settings.POSITIONS)}")
    return names


def rate_template(text: str) -> str:
    """A rating template's text, or the name of a shipped one (e.g. rate-quality); it must place the prompt and
    the story."""
    from creative_eval.judges import templates

    if text in templates.names("rate"):
        text = templates.text(text)
    missing = [f for f in ("{prompt}", "{story}") if f not in text]
    if missing:
        raise argparse.ArgumentTypeError(f"the template lacks {' and '.join(missing)}; write e.g. "
                                         "'Prompt: {prompt} Story: {story} How coherent ... 0-9?'")
    return text


def conditions(text: str) -> list[str]:
    """Comma-separated conditions to generate, all known, so a typo fails before anything is generated."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONDITIONS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown condition(s) {unknown or [text]}; choose from {', '.join(CONDITIONS)}")
    return names


def human_set(text: str) -> str:
    """`wq`, `hanna-ratings` or an existing label file (its rows are validated when it is read)."""
    if text not in ("wq", "hanna-ratings") and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: not wq, hanna-ratings or an existing label file (CSV/JSONL)")
    return text


def names(text: str) -> list[str]:
    """Comma-separated names, e.g. rate-short,compare-creative."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; write e.g. rate-short,compare-creative")
    return names


def people_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--humans", type=human_set, required=True,
                   help="wq (expert writing-quality pairs) | hanna-ratings (crowd ratings) | a label FILE (CSV/JSONL)")
    p.add_argument("--stories", type=existing_file, default=None, help="stories JSONL holding the texts a label FILE names")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="wq: the first N pairs of the fixed nested sample; hanna-ratings: N stories; FILE: N items")
    p.add_argument("--seed", type=int, default=0, help="WQ sides and sample, the template split, the random judge")
    p.add_argument("--n-boot", type=positive_int, default=2000, help="bootstrap resamples of each interval")


def condition_pair(text: str) -> tuple[str, str]:
    """`A:B`, the one spelling of a condition pair (stories may carry any condition or source label), in NFC
    like the conditions read from files."""
    a, sep, b = (unicodedata.normalize("NFC", part.strip()) for part in text.partition(":"))
    if not sep or not a or not b or a == b:
        raise argparse.ArgumentTypeError(f"{text!r} is not two different conditions like induced:baseline")
    return a, b


class Parser(argparse.ArgumentParser):
    """argparse, with every usage error ending in where to read the usage, and every option's default in its help
    (the subcommands' parsers are made by this class too, so they all format alike)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        if message.endswith("expected one argument"):
            message += " (write a value that starts with '-' as --option=VALUE, e.g. --alpha=-0.2)"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def steering_args(p: argparse.ArgumentParser, positions: bool = True) -> None:
    """lambda, its unit and (for generation) the positions; `main` makes them one `Steering` (args.steering)."""
    p.add_argument("--alpha", type=finite, default=settings.DEFAULT_ALPHA,
                   help="lambda, the steering strength, in the unit of --norm")
    p.add_argument("--norm", choices=settings.NORMS, default="relative",
                   help="relative: lambda x the mean residual norm at the layer; unit: the paper's lambda; "
                        "raw: lambda x |mean difference|")
    if positions:
        p.add_argument("--positions", choices=settings.POSITIONS, default="all",
                       help="where to steer: all, prompt or generated tokens")


def steering_of(args: argparse.Namespace) -> Steering:
    return Steering(args.alpha, args.norm, getattr(args, "positions", "all"))


def load_model(args: argparse.Namespace):
    from creative_eval import models

    return models.load(args.model, args.dtype, args.device_map)


def resolve_direction(args: argparse.Namespace, model, tokenizer):
    """(direction, its file or cache path) from --direction and --layer, through the one resolver."""
    from creative_eval import sources

    return sources.resolve(args.direction, model, tokenizer, args.model, args.layer, fitting=args.fitting,
                           progress=True)


def pairs_inputs(args: argparse.Namespace) -> list[str]:
    """The user's pairs file, if any: an input no output may overwrite."""
    return [] if getattr(args, "pairs", pairs.SHIPPED) in pairs.NAMED else [args.pairs]


def check_new_file(path: str, inputs: list[str]) -> None:
    """A file written whole (a direction, an export): never overwritten, never an input."""
    if Path(path).is_file():
        raise outputs.OutputError(f"{path}: already exists and is not overwritten; pass a new path or delete the "
                                  "old file first")
    outputs.check_file(path, inputs=inputs)
