"""The GPU check's CPU smoke run: the script a GPU session runs once, with no time to debug it there, must run end
to end and report every figure (no assertion on speed: a tiny model on shared CPU cores says nothing about it)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _numbers(value, path: str = "") -> dict[str, float]:
    """Every number in the result by its dotted path (flags and names left out)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _numbers(item, f"{path}.{key}".strip(".")).items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: float(value)}
    return {}


def test_tiny_run_reports_every_figure_finite_and_positive():
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny"], capture_output=True, text=True, timeout=300,
                          cwd=SCRIPT.parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    numbers = _numbers(result)
    wanted = [
        "generation.batch_1.plain_tokens_per_s", "generation.batch_1.steered_tokens_per_s", "generation.batch_1.ratio",
        "generation.batch_4.ratio", "probe.full_forward_tokens_per_s", "probe.early.tokens_per_s",
        "probe.early.speedup_vs_full", "probe.default.tokens_per_s", "probe.default.speedup_vs_full",
        "judge.stories_per_s", "matmul_bf16_flops", "model_flops.full_forward.flops",
        "model_flops.full_forward.fraction_of_matmul", "model_flops.generation_batch_4.flops",
        "model_flops.judge.flops", "peak_memory_gib", "parameters",
    ]
    assert not [k for k in wanted if k not in numbers], sorted(numbers)
    bad = {k: v for k, v in numbers.items() if not (math.isfinite(v) and v > 0)}
    assert not bad
    assert result["probe"]["early"]["layer"] < result["probe"]["default"]["layer"] == result["default_layer"]
    assert result["tiny"] is True and result["dtype"] == "bfloat16"
    assert any(line.startswith("generation batch_1") for line in lines[:-1])  # the table for a person, first
