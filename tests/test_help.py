"""`--help` tells what every option does and, where it has one, its default, written as one would type it."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

from creative_eval.cli.main import build_parser
from creative_eval.usage import shows_default


def _parsers(parser: argparse.ArgumentParser, name: str = "creative-eval"):
    """(command, parser) for the program and every subcommand, nested ones (`annotate export`) too."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


OPTIONS = [(name, parser, action) for name, parser in _parsers(build_parser()) for action in parser._actions
           if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]


def _id(option) -> str:
    name, _, action = option
    return f"{name} {'/'.join(action.option_strings) or action.dest}"


def _squeezed(text: str) -> str:
    """Without whitespace: argparse wraps help lines wherever the terminal width says."""
    return "".join(text.split())


def test_the_walk_sees_every_command():
    names = {name for name, _, _ in OPTIONS}
    assert {"creative-eval generate", "creative-eval judge", "creative-eval annotate export", "creative-eval demo",
            "creative-eval lm-eval"} <= names and len(OPTIONS) > 100


@pytest.mark.parametrize("option", OPTIONS, ids=_id)
def test_every_option_says_what_it_does(option):
    _, _, action = option
    assert action.help and action.help.strip() and action.help != argparse.SUPPRESS


@pytest.mark.parametrize("option", [o for o in OPTIONS if shows_default(o[2])], ids=_id)
def test_an_option_with_a_default_shows_it_as_one_would_type_it(option):
    _, parser, action = option
    shown = _squeezed(parser._get_formatter()._format_action(action))
    assert _squeezed(f"(default: {action.default})") in shown, shown
    if not isinstance(action.default, str):  # a number: read back by the option's own type, it is the default
        assert (action.type or str)(str(action.default)) == action.default


@pytest.mark.parametrize("name,parser", list(_parsers(build_parser())), ids=lambda x: x if isinstance(x, str) else "")
def test_no_help_shows_a_default_that_says_nothing(name, parser):
    text = parser.format_help()
    for empty in ("default: None", "default: False", "default: []", "default: ()"):
        assert empty not in text, f"{name}: {empty}"


def test_the_defaults_shown_are_the_parsed_ones():
    """A default written as text (a list, a condition pair) parses to the value the command used before."""
    parser = build_parser()
    assert parser.parse_args(["sweep"]).layers == [8, 12, 17, 22]
    assert parser.parse_args(["steer-sweep"]).alphas == [0.1, 0.2, 0.35]
    assert parser.parse_args(["generate", "--out", "s.jsonl"]).conditions == ["baseline", "induced", "creative"]
    assert parser.parse_args(["judge", "--judge", "probe", "--input", __file__, "--out", "j.jsonl"]).compare == (
        "induced", "baseline")


def test_generate_help_shows_the_sampling_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["generate", "--help"])
    out = _squeezed(capsys.readouterr().out)
    assert e.value.code == 0
    for option, default in (("--max-new-tokens", 256), ("--temperature", 1.0), ("--batch-size", 8), ("--seed", 0),
                            ("--alpha", 0.2), ("--model", "embedded")):
        assert option in out and f"(default:{default})" in out, option


SERVER = [sys.executable, "-m", "creative_eval.backends.llamacpp.server"]


def test_the_steered_server_lists_its_own_options_then_llamacpps():
    start = time.monotonic()
    proc = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    own, _, theirs = proc.stdout.partition("llama-cpp-python's server")
    flat = _squeezed(own)
    for option in ("--direction", "--alpha", "--norm", "--model", "--host", "--api-key", "--extra_bufts"):
        assert option in flat, option
    assert "(default:0.2)" in flat and "(default:relative)" in flat and "default:None" not in flat
    assert "llm_load" not in proc.stderr and "llama_model_load" not in proc.stderr  # no model was loaded
    assert took < 60
    pytest.importorskip("llama_cpp.server")
    assert "--n_ctx" in theirs and "--port" in theirs


def test_the_steered_servers_help_imports_no_torch():
    """What makes its `--help` fast: nothing heavy is imported, the steering engine included."""
    code = """
import contextlib, io, sys
from creative_eval.backends.llamacpp import server
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    server.main(["--help"])
print(sorted(m for m in ("torch", "transformers", "creative_eval.backends.llamacpp.engine") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["[]"], out.stderr
