"""Peak memory of `judge` and `score` on one 200,000-character story (goal: under 2 GB each), beside the same
commands on a short story, on the embedded model. Each command runs in its own process, which reports its peak
resident set size (ru_maxrss), so model loading counts too; the long story is cut to the judge's and the probe's
input limits (2048 tokens by default) and the cut is recorded on each record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG_CHARS = 200_000
RUNNER = ("import resource, sys\nfrom creative_eval import cli\ncode = cli.main(sys.argv[1:])\n"
          "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)")


def _stories(path: Path, chars: int) -> None:
    words = "The lighthouse keeper counted the waves and wrote each one a letter. "
    text = (words * (chars // len(words) + 1))[:chars]
    path.write_text(json.dumps({"prompt_id": "long", "condition": "baseline", "prompt": "Write a story.",
                                "text": text}) + "\n", encoding="utf-8")


def _peak_gb(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"creative-eval {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    line = next(x for x in done.stderr.splitlines() if x.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]) / 2**20


def run() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, chars in (("long", LONG_CHARS), ("short", 400)):
            stories = Path(tmp) / f"{name}.jsonl"
            _stories(stories, chars)
            out[f"judge_{name}_peak_rss_gb"] = _peak_gb(["judge", "--judge", "embedded", "--input", str(stories),
                                                         "--out", str(Path(tmp) / f"ratings-{name}.jsonl")])
            out[f"score_{name}_peak_rss_gb"] = _peak_gb(["score", "--input", str(stories),
                                                         "--out", str(Path(tmp) / f"scores-{name}.jsonl")])
        cut = json.loads((Path(tmp) / "ratings-long.jsonl").read_text().splitlines()[0])["truncated_tokens"]
        print(f"bench_inputs: judge cut {cut} tokens of the long story; peak RSS (GB) {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    print(json.dumps(run()))
