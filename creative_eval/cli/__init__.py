"""The `creative-eval` command line: `main` gathers one module per command group (`extract`, `generate`,
`judge`, `demo`, `report`, `lm_eval`), each holding its commands' arguments, output checks and bodies."""

from creative_eval.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
