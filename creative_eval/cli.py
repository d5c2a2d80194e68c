"""`creative-eval` command line: argument parsing only; every command calls the library modules."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import __version__, activations, direction, outputs, pairs, probe, sources, steering
from . import commands
from .judges import presets
from .pairs import PairsError, path_of
from .records import CONDITIONS


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded", help="HF id, local folder, .gguf file, or 'embedded' (default)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 | float16 (default: bf16 on GPU, else fp32)")
    p.add_argument("--device-map", default=None, help="passed to transformers, e.g. 'auto' or 'cuda'")


def _direction_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--direction", type=_direction_source, default="auto",
                   help="direction .safetensors, or a source: 'auto'/'prompts' (shipped pairs), 'stories' (their "
                        "unsteered stories), 'humans' (WQ expert pairs); sources are cached")
    p.add_argument("--layer", type=_positive_int, default=None,
                   help="layer for a --direction source (default: the sweep's)")


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; write e.g. 0.2")
    return value


def _alphas(text: str) -> list[float]:
    """Comma-separated lambdas, e.g. 0.1,0.2,0.35."""
    parts = text.split(",")
    if not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; write comma-separated numbers like 0.1,0.2")
    return [_finite(p.strip()) for p in parts]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number; write e.g. 8")
    return value


def _count(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0; write e.g. 0 (none) or 24")
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


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; write e.g. 0") from None


def _existing_file(text: str) -> str:
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a folder; pass a file inside it")
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file; check the path")
    return text


def _existing_folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder; check the path")
    return text


def _direction_source(text: str) -> str:
    """A source name or a direction file whose contents are checked here, so a bad file fails before the model
    loads."""
    if text in sources.SOURCES:
        return text
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such direction file; pass a .safetensors path or one of "
                                         f"{', '.join(sources.SOURCES)}")
    try:
        direction.load(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _preset(text: str) -> str:
    """A judge preset, read and checked field by field before any model loads."""
    try:
        presets.load(text)
    except presets.PresetError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _pairs_source(text: str) -> str:
    """A shipped set name or an existing pairs file (its lines are validated when it is read)."""
    try:
        path_of(text)
    except PairsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _layers(text: str) -> list[int]:
    """Comma-separated layers, e.g. 12,22."""
    return [_positive_int(t.strip()) for t in text.split(",")]


def _positions(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",")]
    bad = [n for n in names if n not in steering.POSITIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown position(s) {bad}; choose from {', '.join(steering.POSITIONS)}")
    return names


def _rate_template(text: str) -> str:
    """A rating template must place the prompt and the story."""
    missing = [f for f in ("{prompt}", "{story}") if f not in text]
    if missing:
        raise argparse.ArgumentTypeError(f"the template lacks {' and '.join(missing)}; write e.g. "
                                         "'Prompt: {prompt} Story: {story} How coherent ... 0-9?'")
    return text


def _conditions(text: str) -> list[str]:
    """Comma-separated conditions to generate, all known, so a typo fails before anything is generated."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CONDITIONS))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown condition(s) {unknown or [text]}; choose from {', '.join(CONDITIONS)}")
    return names


def _human_set(text: str) -> str:
    """`wq`, `hanna-ratings` or an existing label file (its rows are validated when it is read)."""
    if text not in ("wq", "hanna-ratings") and not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: not wq, hanna-ratings or an existing label file (CSV/JSONL)")
    return text


def _names(text: str) -> list[str]:
    """Comma-separated names, e.g. rate-short,compare-creative."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; write e.g. rate-short,compare-creative")
    return names


def _people_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--humans", type=_human_set, required=True,
                   help="wq (expert writing-quality pairs) | hanna-ratings (crowd ratings) | a label FILE (CSV/JSONL)")
    p.add_argument("--stories", type=_existing_file, default=None, help="stories JSONL holding the texts a label FILE names")
    p.add_argument("--limit", type=_positive_int, default=None,
                   help="wq: the first N pairs of the fixed nested sample; hanna-ratings: N stories; FILE: N items")
    p.add_argument("--seed", type=int, default=0, help="WQ sides and sample, the template split, the random judge")
    p.add_argument("--n-boot", type=_positive_int, default=2000)


def _condition_pair(text: str) -> tuple[str, str]:
    """`A:B`, the one spelling of a condition pair (stories may carry any condition or source label)."""
    a, sep, b = (part.strip() for part in text.partition(":"))
    if not sep or not a or not b or a == b:
        raise argparse.ArgumentTypeError(f"{text!r} is not two different conditions like induced:baseline")
    return a, b


class _Parser(argparse.ArgumentParser):
    """argparse, with every usage error ending in where to read the usage."""

    def error(self, message: str):  # type: ignore[override]
        if message.endswith("expected one argument"):
            message += " (write a value that starts with '-' as --option=VALUE, e.g. --alpha=-0.2)"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="creative-eval", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("direction", help="extract the creativity direction at one layer")
    _model_args(p)
    p.add_argument("--source", choices=("prompts", "stories", "humans"), default="prompts",
                   help="prompts: the pairs' prompts (default); stories: the shipped validation pairs' unsteered "
                        "stories (generated once, cached); humans: WQ's expert pairs")
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED,
                   help="pairs file (JSONL/CSV) or 'pairs' (shipped); --source prompts only")
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
    p.add_argument("--criteria", action="store_true",
                   help="three criteria per layer and source (prompts, stories, humans): prompt AUROC, held-out "
                        "story AUROC, WQ agreement, each with random-direction controls; plus robustness and hard sets")
    p.add_argument("--layers", type=_layers, default=[8, 12, 17, 22], help="--criteria: layers (default 8,12,17,22)")
    p.add_argument("--fit-pairs", type=_positive_int, default=None,
                   help="--criteria: fit the stories source on the first N validation pairs' stories (default all)")
    p.add_argument("--story-fit", choices=("validation", "crossfit"), default="validation",
                   help="--criteria: fit the stories source on validation stories (default), or cross-fit it by "
                        "pair on the test stories (5 folds; no validation stories to generate)")

    p = sub.add_parser("generate", help="stories for the test split: baseline / induced / creative")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED)
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=_positive_int, default=None, help="first N pairs only")
    p.add_argument("--alpha", type=_finite, default=steering.DEFAULT_ALPHA,
                   help=f"lambda (default {steering.DEFAULT_ALPHA}, with --norm relative)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--positions", choices=steering.POSITIONS, default="all")
    p.add_argument("--conditions", type=_conditions, default=list(CONDITIONS), help="comma-separated")
    p.add_argument("--max-new-tokens", type=_positive_int, default=256)
    p.add_argument("--temperature", type=_temperature, default=1.0)
    p.add_argument("--top-p", type=_top_p, default=1.0)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--backend", choices=("hf", "llamacpp"), default="hf",
                   help="hf (transformers, default) or llamacpp (a .gguf or 'embedded' through llama-cpp-python)")
    p.add_argument("--threads", type=_positive_int, default=None, help="llamacpp: CPU threads (default: all cores)")
    p.add_argument("--out", required=True, help="stories JSONL")

    p = sub.add_parser("steer-sweep", help="the steering frontier: creativity gain by other judges vs coherence "
                                           "cost, against a random direction; recommends lambda")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--alphas", type=_alphas, default=[0.1, 0.2, 0.35],
                   help="comma-separated lambdas for the direction and the random control (default 0.1,0.2,0.35)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--pairs", type=_pairs_source, default=pairs.SHIPPED)
    p.add_argument("--limit", type=_positive_int, default=24, help="first N negated test prompts (default 24)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=96)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--judge", default="self", help="judge preset for pairwise and ratings (default self: the model)")
    p.add_argument("--judge-direction", type=_direction_source, default="auto",
                   help="the judging probe: a direction file from another layer or source, or 'auto' (shipped "
                        "pairs at --judge-layer); never the steering direction itself")
    p.add_argument("--judge-layer", type=_positive_int, default=None,
                   help="layer of --judge-direction auto (default: 3 before the steering layer)")
    p.add_argument("--at", type=_finite, default=steering.DEFAULT_ALPHA,
                   help=f"lambda of the positions, layers and gate arms (default {steering.DEFAULT_ALPHA})")
    p.add_argument("--extra-positions", type=_positions, default=[], help="e.g. generated: the direction there at --at")
    p.add_argument("--extra-layers", type=_layers, default=[], help="e.g. 12,22: the direction there at --at")
    p.add_argument("--gate", type=_finite, default=None, metavar="TARGET",
                   help="a probe-gated arm: steer while the running probe cosine mean is below TARGET")
    p.add_argument("--gate-window", type=_positive_int, default=16, help="tokens in the gate's running mean")
    p.add_argument("--gate-alpha", type=_finite, default=None, help="lambda while the gate is open (default --at)")
    p.add_argument("--negated", action="store_true", help="also steer with the negated direction at every lambda")
    p.add_argument("--random-seed", type=_int, default=0, help="seed of the random control direction")
    p.add_argument("--coherence-template", type=_rate_template, default=None,
                   help="rating template for the judge's coherence rating, with {prompt} and {story}")
    p.add_argument("--ppl-bound", type=_finite, default=1.5, help="eligible: perplexity ratio at most this")
    p.add_argument("--rep-bound", type=_finite, default=0.05, help="eligible: repetition at most baseline + this")
    p.add_argument("--out", default="reports/frontier", help="folder of stories, judgements, table and figure")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    p = sub.add_parser("score", help="probe scores of stories (re-scored on the unsteered model)")
    _model_args(p)
    _direction_args(p)
    p.add_argument("--input", type=_existing_file, required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--tokens", choices=probe.TOKENS, default="input+response")
    p.add_argument("--out", default=None, help="JSONL of scores (default: print a summary only)")

    p = sub.add_parser("demo", help="the main job end to end on the embedded model")
    p.add_argument("--n", type=_positive_int, default=30, help="number of test prompts (default 30)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=128)
    p.add_argument("--alpha", type=_finite, default=steering.DEFAULT_ALPHA, help="lambda, relative norm")
    p.add_argument("--wq", type=_count, default=40, help="WQ expert pairs for the agreement-with-people panel (0: none)")
    p.add_argument("--out", default="reports/demo", help="run and report folder (a re-run resumes)")

    p = sub.add_parser("annotate", help="blinded pairwise human annotation: export a page, import its results")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("export", help="write a self-contained annotation page (index.html) and its key")
    q.add_argument("--input", type=_existing_file, required=True, help="stories JSONL (from `generate`)")
    q.add_argument("--out", required=True, help="pack folder; give raters index.html only, keep key.json")
    q.add_argument("--compare", action="append", type=_condition_pair, default=None, metavar="COND:COND",
                   help="condition pair to compare, e.g. baseline:induced (repeatable; default: all pairs)")
    q.add_argument("--seed", type=_int, default=None, help="order/side shuffling seed (default: random, recorded)")
    q = actions.add_parser("import", help="un-blind downloaded results into human labels (JSONL)")
    q.add_argument("results", nargs="+", type=_existing_file, help="JSON or CSV files downloaded from the annotation page")
    q.add_argument("--pack", type=_existing_folder, required=True, help="the pack folder written by `annotate export` (holds key.json)")
    q.add_argument("--out", required=True, help="human labels JSONL (appended; re-imports are skipped)")

    p = sub.add_parser("report", help="Figure-1 report (md, html, png) from judgement and lm-eval files; CI checks")
    p.add_argument("runs", nargs="+", help="run folders or files: stories, ratings, preferences, probe scores, "
                                           "human labels (JSONL), lm-eval results_*.json / samples_*.jsonl")
    p.add_argument("--name", default=None, help="report folder name under --out-root (default: first run's name)")
    p.add_argument("--out-root", default="reports")
    p.add_argument("--humans", action="append", default=[], help="human-label file (CSV/JSONL) or 'hanna'")
    p.add_argument("--check", action="append", default=[], metavar="EXPR",
                   help="e.g. 'pairwise.self.win_rate.ci_low>=0.5'; exit 1 when one fails (repeatable)")
    p.add_argument("--n-boot", type=_positive_int, default=2000)

    p = sub.add_parser("compare-judges", help="each judge vs human labels; McNemar between judges (Holm)")
    p.add_argument("runs", nargs="+", help="judgement files or folders (ratings / preferences JSONL)")
    p.add_argument("--humans", action="append", default=[], help="human-label file (CSV/JSONL) or 'hanna'")
    p.add_argument("--n-boot", type=_positive_int, default=2000)
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
    p.add_argument("--alpha", type=_finite, default=steering.DEFAULT_ALPHA,
                   help=f"lambda (default {steering.DEFAULT_ALPHA}, with --norm relative)")
    p.add_argument("--norm", choices=steering.NORMS, default="relative")
    p.add_argument("--out", required=True, help="the .pt (lm-eval-steered) or .gguf (llamacpp-cvec) file to write")
    p = sub.add_parser("judge", help="0-9 ratings or pairwise preferences of stories by a judge preset")
    p.add_argument("--judge", type=_preset, required=True, help="preset name in judges/ (embedded, self, probe, ...) or a .yaml path")
    p.add_argument("--mode", choices=("rating", "pairwise"), default="rating")
    p.add_argument("--input", type=_existing_file, required=True, help="stories JSONL (from `generate`)")
    p.add_argument("--compare", type=_condition_pair, default=("induced", "baseline"), metavar="COND:COND",
                   help="pairwise: the conditions (or source labels) paired per prompt id (default induced:baseline)")
    p.add_argument("--out", required=True, help="judgements JSONL (appended as made; a re-run resumes)")

    p = sub.add_parser("agreement", help="judges vs people: accuracy, AUROC, length control, beside trivial judges")
    p.add_argument("--judge", nargs="+", required=True, help="judge presets (embedded, self, probe, ...) or .yaml paths")
    _people_args(p)
    p.add_argument("--mode", choices=("both", "pairwise", "rating"), default="both",
                   help="pairwise (both orders, debiased), rating (and pairwise from ratings), or both")
    p.add_argument("--out", default="reports/agreement",
                   help="folder: judgements (appended as made; a re-run resumes), agreement.json, agreement.png")

    p = sub.add_parser("templates", help="choose a judge's template on half the labelled pairs, report it on the other")
    p.add_argument("--judge", required=True, help="an LLM judge preset (the probe has no template)")
    _people_args(p)
    p.add_argument("--templates", type=_names, default=None,
                   help="comma-separated template names from judges/templates/ (default: all)")
    p.add_argument("--out", default="reports/templates", help="folder: judgements (resumed) and templates.json")
    return parser


def _pairs_file(args: argparse.Namespace) -> list[str]:
    return [] if getattr(args, "pairs", pairs.SHIPPED) in pairs.NAMED else [args.pairs]


def _check_outputs(args: argparse.Namespace) -> None:
    """Every path a command will write, checked (and its folder made) before any model loads: never an input,
    never a folder or an unwritable place, and a JSONL file that is appended to holds its own record type only."""
    c = args.command
    if c == "generate":
        outputs.check_file(args.out, inputs=_pairs_file(args), kind="story")
    elif c == "judge":
        outputs.check_file(args.out, inputs=[args.input], kind="rating" if args.mode == "rating" else "preference")
    elif c == "score" and args.out:
        outputs.check_file(args.out, inputs=[args.input], kind="probe")
    elif c in ("direction", "export"):
        if Path(args.out).is_file():
            raise outputs.OutputError(f"{args.out}: already exists and is not overwritten; pass a new path or "
                                      "delete the old file first")
        sources = _pairs_file(args) + [d for d in [getattr(args, "direction", "auto")] if d != "auto"]
        outputs.check_file(args.out, inputs=sources)
    elif c == "sweep" and args.plot:
        outputs.check_file(args.plot, inputs=_pairs_file(args))
    elif c == "demo":
        outputs.check_folder(args.out)
    elif c == "annotate" and args.action == "export":
        outputs.check_folder(args.out, inputs=[args.input])
    elif c == "annotate":
        outputs.check_file(args.out, inputs=[*args.results, Path(args.pack) / "key.json"], kind="human")
    elif c == "report":  # it writes only its own report files, beside the runs it reads when asked to
        outputs.check_folder(Path(args.out_root) / (args.name or Path(args.runs[0]).resolve().stem))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused by the command's own parser, whose usage and help fit the mistake
        commands_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands_action.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        _check_outputs(args)  # every output path, before any model loads
        return getattr(commands, args.command.replace("-", "_"))(args) or 0
    except (ValueError, RuntimeError) as e:
        print(f"creative-eval {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that vanished or cannot be read or written while the command ran
        where = f"{e.filename}: " if e.filename else ""
        print(f"creative-eval {args.command}: error: {where}{e.strerror or e}; check the path and its permissions",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
