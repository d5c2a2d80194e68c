"""`creative-eval` command line: one module per command group holds each command's arguments, output checks
and body; this module only gathers them and turns errors into one line and exit status 2, and (`stopping`)
Ctrl-C, SIGTERM and a full disk into one line saying what is saved (status 130, 143 or 2)."""

from __future__ import annotations

import argparse
import sys

from creative_eval import __version__
from creative_eval.cli import args as cli_args
from creative_eval.cli import demo, extract, generate, judge, lm_eval, report, stopping

GROUPS = (extract, generate, judge, demo, report, lm_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = cli_args.Parser(prog="creative-eval", description="Find a creativity direction in a language model, "
                             "steer with it, judge with it, and compare judges with people.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused by the command's own parser, whose usage and help fit the mistake
        commands_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands_action.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with stopping.guard(args, exiting=argv is None) as stop:
            if hasattr(args, "alpha") and hasattr(args, "norm"):
                args.steering = cli_args.steering_of(args)
            if hasattr(args, "length_control"):
                args.fitting = cli_args.fitting_of(args)
            if getattr(args, "outputs", None):
                args.outputs(args)  # every output path, before any model loads
            return args.run(args) or 0
        return stop.code or 0  # set whenever the guard ended the command
    except (ValueError, RuntimeError) as e:
        print(f"creative-eval {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that vanished or cannot be read or written while the command ran
        where = f"{e.filename}: " if e.filename else ""
        print(f"creative-eval {args.command}: error: {where}{e.strerror or e}; check the path and its permissions",
              file=sys.stderr)
        return 2
