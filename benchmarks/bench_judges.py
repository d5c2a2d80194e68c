"""Judge speed ratios on the embedded model, each pair of timings taken side by side in one run:
logprob judging vs generate-then-parse judging on the same stories (goal >= 5), and the throughput of an
OpenAI-compatible llama.cpp server (started as `creative_eval.backends.llamacpp.server` does) at concurrency 4 vs 1.

llama-cpp-python's server answers one request at a time (it has no parallel slots or continuous batching),
so concurrency can only overlap HTTP, tokenisation and queueing with compute; expect a ratio near 1 there,
well above 1 on servers with parallel slots (vLLM, llama.cpp's own llama-server with --parallel)."""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

from creative_eval import models
from creative_eval.backends.llamacpp.server import LocalServer, LocalServerError
from creative_eval.judges.hf import HFJudge
from creative_eval.judges.openai_backend import OpenAIJudge
from creative_eval.records import Story

THREADS = 1  # one intra-op thread: on a shared machine, threads beyond the free cores turn timings into noise
ROUNDS = 3
SUBJECTS = ["a lighthouse keeper", "a retired dragon", "a lost umbrella", "the last train", "a clockmaker",
            "a city of bees", "a quiet kitchen", "a council of crows"]
STYLES = ["It was an ordinary day and nothing much happened until the evening, when {s} went home to sleep.",
          "Nobody believed {s} could sing to the tide, yet every night the sea rose an inch to listen, then forgot."]
STORIES = [Story(prompt_id=f"b{i}", condition=str(j), prompt=f"Write a short story about {s}.", text=style.format(s=s))
           for i, s in enumerate(SUBJECTS) for j, style in enumerate(STYLES)]  # 16 stories


def _log(message: str) -> None:
    print(f"bench_judges: {message}", file=sys.stderr, flush=True)


def _best(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best-of-ROUNDS wall time of each function, rounds interleaved (other load on the machine hits all alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(ROUNDS):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def judge_speedup() -> float:
    model, tokenizer = models.load(models.EMBEDDED)
    logprobs = HFJudge("lp", model, tokenizer, parse="logprobs", batch_size=8)
    generate = HFJudge("gen", model, tokenizer, parse="generate", batch_size=8)
    t = _best({"logprobs": lambda: logprobs.rate(STORIES), "generate": lambda: generate.rate(STORIES)})
    _log(f"16 ratings: logprobs {t['logprobs']:.2f} s, generate+parse {t['generate']:.2f} s")
    return t["generate"] / t["logprobs"]


def api_concurrency_speedup() -> float | None:
    """Throughput at concurrency 4 / concurrency 1 against a local server; None (with a message) if it cannot start."""
    try:
        server = LocalServer(n_ctx=2048, n_threads=2).start()
    except LocalServerError as e:
        _log(f"api_concurrency_speedup skipped: {e}")
        return None
    try:
        one, four = (OpenAIJudge("api", "embedded", base_url=server.base_url, api_key="unused", concurrency=c)
                     for c in (1, 4))
        t = _best({"c1": lambda: one.rate(STORIES), "c4": lambda: four.rate(STORIES)})
        _log(f"16 ratings over HTTP: concurrency 1 {t['c1']:.2f} s, concurrency 4 {t['c4']:.2f} s")
        return t["c1"] / t["c4"]
    finally:
        server.stop()


def run() -> dict[str, float]:
    torch.set_num_threads(THREADS)
    out = {"judge_speedup": judge_speedup()}
    api = api_concurrency_speedup()
    if api is not None:
        out["api_concurrency_speedup"] = api
    return out
