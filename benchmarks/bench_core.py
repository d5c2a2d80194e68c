"""Core speed ratios on the embedded model, each pair of timings taken side by side in one run:
steered vs plain generation (goal >= 0.98), the truncated probe vs a naive full forward (goal >= 5),
direction extraction vs full forwards (goal <= 0.35), and an uncached vs a cached model load (goal >= 5)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from creative_eval import activations, direction, models, pairs, probe, steering
from creative_eval.steering import generate

THREADS = 1  # one intra-op thread: on a shared machine, threads beyond the free cores turn timings into scheduler noise
ROUNDS = 3
GEN_PROMPTS, GEN_TOKENS = 4, 48
PROBE_TEXTS = 16
EXTRACT_PAIRS = 24
TOLERANCE = 1e-5
LOAD = "import sys; from creative_eval import models; sys.stdout.write(repr(models.timed_load()))"


def _log(message: str) -> None:
    print(f"bench_core: {message}", file=sys.stderr, flush=True)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best_of(work: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """Fastest time of each job, the jobs interleaved round by round so other load on the machine hits all alike."""
    for fn in work.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        for name, fn in work.items():
            times[name].append(_timed(fn))
    return {name: min(ts) for name, ts in times.items()}


def _sorted_batches(n: int, length: Callable[[int], int], batch_size: int) -> list[list[int]]:
    """The same length-sorted grouping as activations.batches, so both sides pay the same padding."""
    order = sorted(range(n), key=length)
    return [order[k : k + batch_size] for k in range(0, n, batch_size)]


@torch.inference_mode()
def _naive_scores(model, tokenizer, d: direction.Direction, prompts: Sequence[str], responses: Sequence[str],
                  batch_size: int) -> list[float]:
    """Probe scores the straightforward way: every block and the lm_head run, all hidden states kept, then the
    probe's own cosine and input+response mask on hidden_states[l]."""
    out = [math.nan] * len(prompts)
    for idx in _sorted_batches(len(prompts), lambda i: len(prompts[i]) + len(responses[i]), batch_size):
        batch = activations.encode(tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx],
                                   template=d.template)
        hidden = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True,
                       use_cache=False).hidden_states[d.layer]
        cos = probe.cosines(hidden, d.vector)
        mask = probe.counted(batch.prompt_mask, batch.response_mask, "input+response")
        for row, i in enumerate(idx):
            out[i] = float(cos[row][mask[row]].mean())
    return out


@torch.inference_mode()
def _full_forwards(model, tokenizer, prompts: Sequence[str], batch_size: int) -> None:
    """Plain forwards (all blocks, logits) over prompts batched as extraction batches them."""
    for idx in _sorted_batches(len(prompts), lambda i: len(prompts[i]), batch_size):
        batch = activations.encode(tokenizer, [prompts[i] for i in idx])
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)


def _generation_ratio(model, tokenizer, d: direction.Direction, prompts: Sequence[str]) -> float:
    sampling = generate.Sampling(max_new_tokens=GEN_TOKENS, temperature=0, batch_size=len(prompts))
    steer = [steering.Steer.from_direction(d, steering.DEFAULT_ALPHA, "relative")]
    tokens: dict[str, int] = {}

    def job(name: str, steers: list[steering.Steer]) -> Callable[[], None]:
        def run_once() -> None:
            tokens[name] = sum(g.n_tokens for g in generate.generate(model, tokenizer, prompts, steers=steers,
                                                                     sampling=sampling))
        return run_once

    best = _best_of({"plain": job("plain", []), "steered": job("steered", steer)})
    if tokens["plain"] != tokens["steered"]:  # a story that ends early would make the two sides do unequal work
        raise AssertionError(f"plain and steered runs made {tokens['plain']} vs {tokens['steered']} tokens; "
                             "choose prompts whose stories run to the token limit")
    return (tokens["steered"] / best["steered"]) / (tokens["plain"] / best["plain"])


def _probe_speedup(model, tokenizer, d: direction.Direction, prompts: Sequence[str], stories: Sequence[str]) -> float:
    p = probe.Probe(model, tokenizer, d)
    fast = [s.score for s in p.score(prompts, stories)]
    naive = _naive_scores(model, tokenizer, d, prompts, stories, p.batch_size)
    worst = max(abs(a - b) for a, b in zip(fast, naive))
    if not worst <= TOLERANCE:
        raise AssertionError(f"Probe.score differs from the full-forward scores by {worst:.3g} (> {TOLERANCE})")
    best = _best_of({"naive": lambda: _naive_scores(model, tokenizer, d, prompts, stories, p.batch_size),
                     "probe": lambda: p.score(prompts, stories)})
    return best["naive"] / best["probe"]


def _extract_ratio(model, tokenizer, d: direction.Direction, selected: Sequence[pairs.Pair]) -> float:
    prompts = [p.creative for p in selected] + [p.uncreative for p in selected]
    best = _best_of({
        "extract": lambda: direction.extract(model, tokenizer, selected, d.layer, model_id=models.EMBEDDED),
        "full": lambda: _full_forwards(model, tokenizer, prompts, batch_size=16),
    })
    return best["extract"] / best["full"]


def _load_seconds(cache: Path) -> float:
    """In-process load time (imports excluded) in a fresh interpreter, so nothing is memoised."""
    env = {**os.environ, "CREATIVE_EVAL_CACHE": str(cache), "OMP_NUM_THREADS": str(THREADS)}
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"embedded load failed in a subprocess:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _cached_load_speedup() -> float:
    first, cached = [], []
    for _ in range(ROUNDS):  # each round: a fresh empty cache, then a load that finds it filled
        with tempfile.TemporaryDirectory() as tmp:
            first.append(_load_seconds(Path(tmp)))
            cached.append(_load_seconds(Path(tmp)))
    return min(first) / min(cached)


def run() -> dict[str, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        model, tokenizer = models.load(models.EMBEDDED)
        d, _ = direction.auto(model, tokenizer, models.EMBEDDED)
        if d.layer >= models.num_layers(model):
            raise ValueError(f"layer {d.layer} is the last one; hidden_states[{d.layer}] is after the final norm there")
        test = pairs.load_pairs(pairs.SHIPPED, "test")
        ratios: dict[str, float] = {}

        _log(f"generation: {GEN_PROMPTS} prompts x {GEN_TOKENS} tokens, plain vs steered")
        ratios["steer_gen_ratio"] = _generation_ratio(model, tokenizer, d, [p.uncreative for p in test[:GEN_PROMPTS]])

        _log(f"probe: {PROBE_TEXTS} prompt+story texts, Probe.score vs a full forward")
        prompts = [p.creative for p in test[:PROBE_TEXTS]]
        sampling = generate.Sampling(max_new_tokens=GEN_TOKENS, temperature=0, batch_size=PROBE_TEXTS)
        stories = [g.text for g in generate.generate(model, tokenizer, prompts, sampling=sampling)]
        ratios["probe_speedup"] = _probe_speedup(model, tokenizer, d, prompts, stories)

        _log(f"extraction: {EXTRACT_PAIRS} validation pairs at layer {d.layer} vs full forwards")
        ratios["extract_ratio"] = _extract_ratio(model, tokenizer, d,
                                                 pairs.load_pairs(pairs.SHIPPED, "validation")[:EXTRACT_PAIRS])
    finally:
        torch.set_num_threads(threads)

    _log("load: empty cache vs filled cache, each in a fresh interpreter")
    ratios["cached_load_speedup"] = _cached_load_speedup()
    _log(" ".join(f"{k}={v:.3f}" for k, v in ratios.items()))
    return ratios
