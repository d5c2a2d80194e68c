"""The GPU check: the project's costs at Llama-3-8B's size, each pair of timings taken side by side in one run.

A randomly initialised model with Llama-3-8B's configuration (no download; token ids and an in-memory tokenizer
whose ids fit the vocabulary), in bfloat16, measures: steered / plain generation tokens/s at batch 1 and 32 (goal
>= 0.98), the probe's tokens/s stopping after block 8 and after the default layer against a full forward, the rating
judge's stories/s, peak memory, and the achieved model FLOP/s (2 x parameters x tokens/s) against this device's own
bf16 matmul FLOP/s, measured in the same run. Prints a table, then one JSON object as the last line.

    python benchmarks/gpu_check.py           # CUDA, about two minutes on one H100/H200-class GPU
    python benchmarks/gpu_check.py --tiny    # CPU, a tiny config, a few seconds (the test runs this)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from creative_eval import activations, direction
from creative_eval.judges.hf import HFJudge
from creative_eval.probe import Probe
from creative_eval.records import Story
from creative_eval.steering import DEFAULT_ALPHA, Steer, steering

LLAMA3_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192,
             "rope_theta": 500000.0, "rms_norm_eps": 1e-5}
TINY = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 128, "vocab_size": 1024, "max_position_embeddings": 512}
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ("the a lighthouse keeper found strange letter under door every night sea grew quiet ship came back "
         "with no crew dragon council argued about rain clock in city forgot time dog and cat walked "
         "slowly through old market where nobody sold anything but stories of other worlds").split()


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does: enough on a GPU for stable timings, a token amount with --tiny."""

    prompt_tokens: int
    new_tokens: int
    batches: tuple[int, ...]
    probe_texts: int
    probe_words: int
    probe_batch: int
    early_layer: int
    judge_stories: int
    story_words: int
    judge_batch: int
    rounds: int
    matmul_n: int


GPU = Sizes(prompt_tokens=128, new_tokens=64, batches=(1, 32), probe_texts=64, probe_words=400, probe_batch=16,
            early_layer=8, judge_stories=64, story_words=250, judge_batch=16, rounds=3, matmul_n=8192)
CPU_TINY = Sizes(prompt_tokens=16, new_tokens=8, batches=(1, 4), probe_texts=4, probe_words=30, probe_batch=2,
                 early_layer=1, judge_stories=4, story_words=20, judge_batch=2, rounds=1, matmul_n=256)


def _log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained here in milliseconds with a ChatML template: every id fits any vocabulary above
    its few hundred entries, and the judge and the probe read text through it as they do with a real one."""
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|im_start|>", "<|im_end|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>", name_or_path="gpu-check-bpe")
    fast.chat_template = CHATML
    return fast


def build(config: dict, device: torch.device) -> LlamaForCausalLM:
    """The random model, made directly on `device` in bfloat16 (no float32 copy, no download); no EOS id, so every
    generation runs to its token limit and plain and steered runs do the same work."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(LlamaConfig(**config, bos_token_id=None, eos_token_id=None, pad_token_id=0))
    finally:
        torch.set_default_dtype(before)
    return model.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(work: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, float]:
    """Fastest seconds of each job, the jobs interleaved round by round (after one warm-up each) so that clocks,
    caches and other load hit every side alike."""
    for fn in work.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        for name, fn in work.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: min(ts) for name, ts in times.items()}


def matmul_flops(n: int, device: torch.device, rounds: int) -> float:
    """This device's bf16 matmul FLOP/s on n x n matrices: the ceiling the model's FLOP/s is read against."""
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    reps = 10
    seconds = best_of({"mm": lambda: [a @ b for _ in range(reps)]}, rounds, device)["mm"]
    return 2 * n**3 * reps / seconds


def random_direction(model: LlamaForCausalLM, layer: int, batch: activations.Batch) -> direction.Direction:
    """A random unit vector with the metadata of an extracted direction at `layer`; its `resid_norm` is the mean
    residual norm there over the batch's real tokens (the attention sink left out), so `relative` scales as usual."""
    h = activations.layer_states(model, batch, [layer])[layer]
    real = batch.attention_mask.bool().clone()
    real[:, 0] = False
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(layer))
    meta = {**direction.model_meta(model, "random-llama"), "source": "random", "layer": str(layer), "raw_norm": "1",
            "resid_norm": f"{float(h.norm(dim=-1)[real.to(h.device)].mean()):.6g}", "template": "true"}
    return direction.Direction(vector / vector.norm(), meta)


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def generation(model: LlamaForCausalLM, steer: Steer, sizes: Sizes, device: torch.device) -> dict[str, dict]:
    """Steered / plain tokens/s per batch size, on random prompt ids, every row to the token limit."""
    out = {}
    for batch in sizes.batches:
        ids = torch.randint(1000, model.config.vocab_size, (batch, sizes.prompt_tokens),
                            generator=torch.Generator().manual_seed(batch)).to(device)
        made: dict[str, int] = {}

        def job(name: str, steers: list[Steer]) -> Callable[[], None]:
            def run() -> None:
                with torch.inference_mode(), steering(model, steers):
                    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                         max_new_tokens=sizes.new_tokens, pad_token_id=0)
                made[name] = (gen.shape[1] - ids.shape[1]) * batch
            return run

        best = best_of({"plain": job("plain", []), "steered": job("steered", [steer])}, sizes.rounds, device)
        if made["plain"] != made["steered"] or made["plain"] != batch * sizes.new_tokens:
            raise AssertionError(f"batch {batch}: plain made {made['plain']} tokens, steered {made['steered']}; "
                                 f"both must make {batch * sizes.new_tokens}")
        plain, steered = made["plain"] / best["plain"], made["steered"] / best["steered"]
        out[f"batch_{batch}"] = {"plain_tokens_per_s": plain, "steered_tokens_per_s": steered,
                                 "ratio": steered / plain, "goal": 0.98, "met": steered / plain >= 0.98}
    return out


def probe_speed(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, directions: dict[str, direction.Direction],
                prompts: list[str], texts: list[str], sizes: Sizes, device: torch.device) -> dict[str, dict]:
    """Probe.score stopping after each direction's block against a full forward (every block and the lm_head) over
    the same padded batches; tokens/s counts the real tokens of the batches."""
    batches = [activations.encode(tok, prompts[k : k + sizes.probe_batch], texts[k : k + sizes.probe_batch])
               for k in range(0, len(texts), sizes.probe_batch)]
    tokens = sum(int(b.attention_mask.sum()) for b in batches)

    def full() -> None:
        with torch.inference_mode():
            for b in batches:
                model(input_ids=b.input_ids.to(device), attention_mask=b.attention_mask.to(device), use_cache=False)

    probes = {name: Probe(model, tok, d, batch_size=sizes.probe_batch, max_length=None)
              for name, d in directions.items()}
    work = {"full": full, **{name: (lambda p=p: p.score(prompts, texts)) for name, p in probes.items()}}
    best = best_of(work, sizes.rounds, device)
    out = {"full_forward_tokens_per_s": tokens / best["full"]}
    for name, d in directions.items():
        out[name] = {"layer": d.layer, "tokens_per_s": tokens / best[name],
                     "speedup_vs_full": best["full"] / best[name]}
    return out


def judge_speed(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, sizes: Sizes, rng: random.Random,
                device: torch.device) -> dict[str, float]:
    """The rating judge (logprobs: one batched forward, the last position's logits only) in stories/s."""
    stories = [Story(prompt_id=f"s{i}", condition="baseline", prompt="Write a story about the sea.",
                     text=_text(rng, sizes.story_words)) for i in range(sizes.judge_stories)]
    judge = HFJudge("gpu-check", model, tok, batch_size=sizes.judge_batch)
    rendered = [activations.render(tok, t.format(prompt=s.prompt, story=s.text), None, True)
                for t in judge.templates.rate for s in stories]
    tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in rendered)
    seconds = best_of({"rate": lambda: judge.rate(stories)}, sizes.rounds, device)["rate"]
    return {"stories_per_s": len(stories) / seconds, "tokens_per_s": tokens / seconds}


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run(tiny: bool) -> dict:
    start = time.perf_counter()
    if tiny:
        torch.set_num_threads(1)  # on a few shared cores, more threads only spin against each other
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run it on a GPU machine, or pass --tiny for the CPU "
                         "smoke run")
    device = torch.device("cpu" if tiny else "cuda")
    config, sizes = (TINY, CPU_TINY) if tiny else (LLAMA3_8B, GPU)
    torch.manual_seed(0)
    rng = random.Random(0)
    _log(f"building a random {config['num_hidden_layers']}-layer model on {device}")
    model = build(config, device)
    tok = tokenizer()
    params = sum(p.numel() for p in model.parameters())
    prompts = ["Write a story about the sea."] * sizes.probe_texts
    texts = [_text(rng, sizes.probe_words) for _ in range(sizes.probe_texts)]
    sample = activations.encode(tok, prompts[: sizes.probe_batch], texts[: sizes.probe_batch])
    default = direction.default_layer(model)
    directions = {"early": random_direction(model, sizes.early_layer, sample),
                  "default": random_direction(model, default, sample)}

    _log("bf16 matmul")
    peak = matmul_flops(sizes.matmul_n, device, sizes.rounds)
    _log(f"generation at batches {sizes.batches}, plain vs steered at layer {default}")
    steer = Steer.from_direction(directions["default"], DEFAULT_ALPHA, "relative")
    gen = generation(model, steer, sizes, device)
    _log(f"probe after blocks {sizes.early_layer} and {default} vs a full forward")
    probe_out = probe_speed(model, tok, directions, prompts, texts, sizes, device)
    _log("rating judge")
    judge_out = judge_speed(model, tok, sizes, rng, device)

    def achieved(tokens_per_s: float) -> dict[str, float]:
        flops = 2 * params * tokens_per_s
        return {"flops": flops, "fraction_of_matmul": flops / peak}

    largest = f"batch_{max(sizes.batches)}"
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "tiny": tiny, "dtype": "bfloat16", "parameters": params, "config": config, "sizes": asdict(sizes),
        "default_layer": default, "alpha": DEFAULT_ALPHA, "norm": "relative",
        "generation": gen, "probe": probe_out, "judge": judge_out,
        "matmul_bf16_flops": peak,
        "model_flops": {"full_forward": achieved(probe_out["full_forward_tokens_per_s"]),
                        f"generation_{largest}": achieved(gen[largest]["plain_tokens_per_s"]),
                        "judge": achieved(judge_out["tokens_per_s"])},
        "peak_memory_gib": peak_memory_gib(device),
        "peak_memory_kind": "CUDA allocated" if device.type == "cuda" else "CPU resident (max RSS)",
        "wall_s": time.perf_counter() - start,
    }


def _si(value: float, unit: str) -> str:
    """A number with the SI prefix that keeps it readable at 8B and at --tiny alike: 12.3 TFLOP/s, 4.56 GFLOP/s."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.2f} {unit}"


def table(r: dict) -> str:
    """The same numbers for a person: one line each."""
    lines = [f"{r['device']}, random Llama ({r['config']['num_hidden_layers']} layers, {_si(r['parameters'], '')} "
             f"parameters), bfloat16, steering at layer {r['default_layer']} (alpha {r['alpha']} relative)"]
    for name, g in r["generation"].items():
        lines.append(f"generation {name:<9} plain {g['plain_tokens_per_s']:10.1f} tok/s  steered "
                     f"{g['steered_tokens_per_s']:10.1f} tok/s  ratio {g['ratio']:.3f} (goal >= 0.98: "
                     f"{'met' if g['met'] else 'NOT met'})")
    p = r["probe"]
    lines.append(f"full forward          {p['full_forward_tokens_per_s']:10.1f} tok/s")
    for name in ("early", "default"):
        lines.append(f"probe after block {p[name]['layer']:<3} {p[name]['tokens_per_s']:10.1f} tok/s  "
                     f"{p[name]['speedup_vs_full']:.2f}x the full forward")
    lines.append(f"rating judge          {r['judge']['stories_per_s']:10.2f} stories/s "
                 f"({r['judge']['tokens_per_s']:.1f} tok/s)")
    lines.append(f"bf16 matmul           {_si(r['matmul_bf16_flops'], 'FLOP/s'):>16}")
    for name, f in r["model_flops"].items():
        lines.append(f"model FLOP/s {name:<20} {_si(f['flops'], 'FLOP/s'):>16} = {f['fraction_of_matmul']:.1%} "
                     "of matmul")
    lines.append(f"peak memory           {r['peak_memory_gib']:10.2f} GiB ({r['peak_memory_kind']}); "
                 f"wall {r['wall_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny config on the CPU in a few seconds")
    result = run(parser.parse_args(argv).tiny)
    print(table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
