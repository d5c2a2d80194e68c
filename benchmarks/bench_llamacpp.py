"""Steered generation through llama.cpp vs through HF on the embedded model, timed side by side in one run:
generated tokens/s through llama.cpp (Q4_1 GGUF, control vector) / tokens/s through HF (de-quantised fp32,
steering hook), same prompts, same greedy settings, same direction and alpha, at batch 1 and at the pipeline's
batch size (8). Above 1: llama.cpp is faster."""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

from creative_eval import direction, models, pairs, steering
from creative_eval.backends import llamacpp
from creative_eval.steering import generate

THREADS = 1  # one thread on each side: on a shared machine, threads beyond the free cores turn timings into noise
ROUNDS = 3
PROMPTS, TOKENS = 8, 32
BATCHES = (1, generate.Sampling().batch_size)


def _log(message: str) -> None:
    print(f"bench_llamacpp: {message}", file=sys.stderr, flush=True)


def _throughput(jobs: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Best tokens/s of each job over ROUNDS, rounds interleaved so other load on the machine hits all alike."""
    for job in jobs.values():
        job()  # warm-up
    best = {name: 0.0 for name in jobs}
    for _ in range(ROUNDS):
        for name, job in jobs.items():
            start = time.perf_counter()
            tokens = job()
            best[name] = max(best[name], tokens / (time.perf_counter() - start))
    return best


def run() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    engine = None
    try:
        model, tokenizer = models.load(models.EMBEDDED)
        d, _ = direction.auto(model, tokenizer, models.EMBEDDED)
        prompts = [p.uncreative for p in pairs.load_pairs(pairs.SHIPPED, "test")[:PROMPTS]]
        hf_steer = [steering.Steer.from_direction(d, steering.DEFAULT_ALPHA, "relative")]
        cpp_steer = llamacpp.steer_for(d, steering.Steering())
        engine = llamacpp.Engine(models.embedded_gguf(), n_seq=max(BATCHES), n_ctx_seq=512, n_threads=THREADS)
        ratios: dict[str, float] = {}
        for batch in BATCHES:
            sampling = generate.Sampling(max_new_tokens=TOKENS, temperature=0, batch_size=batch)
            _log(f"batch {batch}: {PROMPTS} prompts x {TOKENS} tokens, steered, llama.cpp vs HF")
            best = _throughput({
                "hf": lambda: sum(g.n_tokens for g in generate.generate(model, tokenizer, prompts, steers=hf_steer,
                                                                        sampling=sampling)),
                "llamacpp": lambda: sum(g.n_tokens for g in llamacpp.generate(engine, prompts, steer=cpp_steer,
                                                                               sampling=sampling)),
            })
            _log(f"batch {batch}: HF {best['hf']:.1f} tokens/s, llama.cpp {best['llamacpp']:.1f} tokens/s")
            ratios[f"llamacpp_vs_hf_steered_b{batch}"] = best["llamacpp"] / best["hf"]
    finally:
        torch.set_num_threads(threads)
        if engine is not None:
            engine.close()
    return ratios


if __name__ == "__main__":
    print(run())
