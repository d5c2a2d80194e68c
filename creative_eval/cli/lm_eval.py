"""`lm-eval`: lm-eval's own command line with steered_hf and the creative tasks registered in this process."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lm-eval", help="run lm-eval with steered_hf and the creative tasks available",
                       prefix_chars="+",  # so that lm-eval's own --options all reach lm_eval_args
                       description="Everything after `lm-eval` goes to lm-eval's own command line, e.g. "
                                   "`creative-eval lm-eval --model steered_hf --tasks creative --limit 20`.")
    p.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="lm-eval arguments")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Imported here: lm-eval is heavy and only this command needs it."""
    from lm_eval.__main__ import cli_evaluate

    from creative_eval.harness import autoload

    autoload.install()
    sys.argv = ["lm_eval", *args.lm_eval_args]
    cli_evaluate()
    return 0
