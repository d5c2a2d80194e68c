"""Steered generation through vLLM vs through HF on the embedded model, timed side by side in one run.

- `vllm_vs_hf_steered_b{1,8,32}`: generated tokens/s through vLLM (its own process, fp32, eager, the steering
  hook in its worker) / tokens/s through HF (fp32, the steering hook), same prompts, same greedy settings, same
  direction and alpha, `batch` prompts at a time. Above 1: vLLM is faster.
- `vllm_steer_cost`: steered / plain tokens/s through vLLM at batch 32 (1: steering costs nothing).
- `vllm_roofline`: the model FLOP/s vLLM achieves steered at batch 32 (2 x parameters x tokens/s) / this
  machine's fp32 matmul FLOP/s (torch, 2048 x 2048, best of several), measured in the same run.
- `vllm_roofline_all_tokens`: the same with every token the worker's forwards computed, the prompts' too (with
  32 new tokens after a chat prompt of about 55, most of the work is the prompts; the lm_head, which vLLM runs on
  sampled positions only, is counted for all, so this errs high).
- `vllm_forward_share`: the share of vLLM's wall time at batch 32 spent inside the model's forward in its worker
  (the rest: logits, sampling, scheduling, the engine's inter-process hops and ours), from `hook`'s timers;
  `vllm_matmul_share`: the matmuls' share of the worker's self CPU time under torch's profiler (its op table is
  printed), the short profile of where the time goes.

One compute thread on each side, as in bench_llamacpp (HF: torch.set_num_threads(1); vLLM: its default on this
machine, the worker bound to one core with one thread and the other core left to its engine loop): on a shared
machine, threads beyond the free cores turn timings into noise. The roofline's matmul runs on one thread too."""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

from creative_eval import direction, models, pairs, steering
from creative_eval.backends import vllm
from creative_eval.steering import generate

THREADS = 1
ROUNDS = 2
TOKENS = 32
PROMPTS = {1: 2, 8: 8, 32: 32}  # prompts timed at each batch size
MATMUL = 2048
MATMUL_OPS = ("_C::onednn_mm", "aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")  # vLLM's CPU GEMM, torch's


def _log(message: str) -> None:
    print(f"bench_vllm: {message}", file=sys.stderr, flush=True)


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


def matmul_flops(n: int = MATMUL, repeats: int = 5) -> float:
    """This machine's fp32 matmul FLOP/s through torch, best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def run() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run()
    finally:
        torch.set_num_threads(threads)


def _run() -> dict[str, float]:
    model, tokenizer = models.load(models.EMBEDDED)
    d, _ = direction.auto(model, tokenizer, models.EMBEDDED)
    test = pairs.load_pairs(pairs.SHIPPED, "test")
    params = sum(p.numel() for p in model.parameters())
    hf_steer = [steering.Steer.of(d, steering.Steering())]
    vllm_steer = vllm.steer_for(d, steering.Steering())
    ratios: dict[str, float] = {}
    with vllm.Engine(vllm.source_of(models.EMBEDDED), max_model_len=512, max_num_seqs=max(PROMPTS)) as eng:
        for batch, n in PROMPTS.items():
            prompts = [p.uncreative for p in test[:n]]
            sampling = generate.Sampling(max_new_tokens=TOKENS, temperature=0, batch_size=batch)
            _log(f"batch {batch}: {n} prompts x {TOKENS} tokens, steered, vLLM vs HF")
            jobs = {
                "hf": lambda: sum(g.n_tokens for g in generate.generate(model, tokenizer, prompts, steers=hf_steer,
                                                                        sampling=sampling)),
                "vllm": lambda: sum(g.n_tokens for g in vllm.generate(eng, tokenizer, prompts, steer=vllm_steer,
                                                                      sampling=sampling)),
            }
            if batch == max(PROMPTS):
                jobs["vllm_plain"] = lambda: sum(g.n_tokens for g in vllm.generate(eng, tokenizer, prompts,
                                                                                   sampling=sampling))
            best = _throughput(jobs)
            _log(f"batch {batch}: " + ", ".join(f"{k} {v:.1f} tokens/s" for k, v in best.items()))
            ratios[f"vllm_vs_hf_steered_b{batch}"] = best["vllm"] / best["hf"]
        ratios["vllm_steer_cost"] = best["vllm"] / best["vllm_plain"]
        eng.timing(True)
        start = time.perf_counter()
        tokens = sum(g.n_tokens for g in vllm.generate(eng, tokenizer, prompts, steer=vllm_steer, sampling=sampling))
        wall = time.perf_counter() - start
        timing = eng.timing(False)
        eng.profile(True)
        vllm.generate(eng, tokenizer, prompts, steer=vllm_steer, sampling=sampling)
        ops = eng.profile(False)
    flops = matmul_flops()
    achieved = 2 * params * best["vllm"]
    _log(f"{params / 1e6:.1f}M parameters: vLLM steered at batch 32 does {achieved / 1e9:.2f} GFLOP/s; torch fp32 "
         f"matmul {MATMUL}x{MATMUL} on {THREADS} thread here: {flops / 1e9:.1f} GFLOP/s")
    _log(f"profile, batch 32 steered ({tokens} tokens in {wall:.2f} s): {timing['forwards']} forwards in the worker "
         f"took {timing['seconds']:.2f} s ({timing['seconds'] / wall:.0%} of the wall time), "
         f"{timing['tokens'] / max(timing['forwards'], 1):.1f} tokens per forward")
    _log(f"where the worker's CPU time goes, batch 32 steered (torch profiler, self time):\n{ops['table']}")
    total = sum(ops["self_us"].values())
    matmul = sum(v for k, v in ops["self_us"].items() if k in MATMUL_OPS)
    _log(f"matmuls ({', '.join(MATMUL_OPS)}): {matmul / total:.0%} of the profiled self CPU time")
    ratios["vllm_roofline"] = achieved / flops
    processed = 2 * params * timing["tokens"] / wall  # the prompts' tokens too: the forward computes them all
    _log(f"counting every token the forwards computed (prompts too): {processed / 1e9:.2f} GFLOP/s")
    ratios["vllm_roofline_all_tokens"] = processed / flops
    ratios["vllm_matmul_share"] = matmul / total
    ratios["vllm_forward_share"] = timing["seconds"] / wall
    return ratios


if __name__ == "__main__":  # vLLM starts its workers by spawn
    print(run())
