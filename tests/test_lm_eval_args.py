"""A bad steered_hf model_arg through lm-eval's front doors: `creative-eval lm-eval` prints the project's message as
its one error line (exit status 2); bare `lm_eval` ends with that line instead of a traceback through lm-eval."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from creative_eval import cli
from creative_eval.harness import model as steered_model

BIN = Path(sys.executable).parent
CASES = {
    "alpha=abc": "steered_hf model_args: alpha='abc' is not a number; write e.g. alpha=0.2",
    "direction=absent/d.safetensors": ("steered_hf model_args: direction=absent/d.safetensors: no such direction file; "
                                       "pass a .safetensors path or one of auto, prompts, stories, humans, hanna; e.g. "
                                       "direction=auto"),
}
TASK = ["--tasks", "creative_generate", "--limit", "1"]


def test_model_args_errors_name_the_argument_and_the_fix():
    with pytest.raises(steered_model.ModelArgsError, match="layer=2.5 is not a whole number; write e.g. layer=17"):
        steered_model.SteeredHF(layer=2.5)
    with pytest.raises(steered_model.ModelArgsError, match="probe='maybe' is not a boolean; use probe=true or probe=false"):
        steered_model.SteeredHF(probe="maybe")


@pytest.fixture
def lm_eval_logging():
    """lm-eval's command line gives its logger a handler on this test's stderr; take it away afterwards."""
    logger = logging.getLogger("lm_eval")
    before = list(logger.handlers)
    yield
    logger.handlers[:] = before


@pytest.mark.parametrize("arg", CASES)
def test_passthrough_prints_the_message_as_one_line_with_status_2(arg, monkeypatch, capsys, tmp_path, lm_eval_logging):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # lm-eval's command line reads sys.argv
    assert cli.main(["lm-eval", "--model", "steered_hf", "--model_args", arg, *TASK]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"creative-eval lm-eval: error: {CASES[arg]}"


def test_bare_lm_eval_ends_with_the_message_and_no_traceback(tmp_path):
    for arg, message in CASES.items():
        proc = subprocess.run([str(BIN / "lm_eval"), "--model", "steered_hf", "--model_args", arg, *TASK],
                              capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == f"lm_eval: error: {message}"
