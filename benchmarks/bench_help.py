"""Wall time of `creative-eval generate --help` in a fresh process (goal: well under 1 s), beside
`python -c pass` measured the same way, so the figure separates the command line's own cost from starting
Python. Median of 5 runs each."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _seconds(args: list[str], runs: int = 5) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> dict[str, float]:
    help_s = _seconds(["-m", "creative_eval", "generate", "--help"])
    python_s = _seconds(["-c", "pass"])
    return {"help_generate_s": help_s, "help_generate_vs_bare_python": help_s / python_s}
