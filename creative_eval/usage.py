"""How every command line of the project prints its `--help`: each option's line of help ends with its default,
written as one would type it, and only where there is one (`creative-eval` and the llama.cpp server share it)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after each option's help, left out where it would say nothing: no default
    (None), a required option, a flag (its default is only "off") or an empty list."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return super()._get_help_string(action) if shows_default(action) else action.help or ""


def shows_default(action: argparse.Action) -> bool:
    """Whether `action` has a default worth printing."""
    default = action.default
    return not (action.required or action.nargs == 0 or default is None or default is argparse.SUPPRESS
                or default in ((), [], ""))
