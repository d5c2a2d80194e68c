"""Stories for the three conditions of the paper, from the negated (and creative) test prompts:
baseline = negated prompt, plain model; induced = negated prompt, steered; creative = creative prompt, plain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import activations, gating, steering
from .direction import Direction
from .records import CONDITIONS, Pair, Story


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; paper defaults. temperature 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8

    def kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0}


@dataclass(kw_only=True)
class Generation:
    """Generated text and how many tokens it took; under a gate, how many decode steps it steered of those read."""

    text: str
    n_tokens: int
    steered_steps: int | None = None
    gate_steps: int | None = None


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    steers: Sequence[steering.Steer] = (),
    gate: gating.Gate | None = None,
    sampling: Sampling = Sampling(),
    template: bool = True,
    progress: bool = False,
) -> list[Generation]:
    """Batched generation (left-padded), optionally steered; each batch is seeded from `sampling.seed`
    and its index, so the same prompts give the same stories in every condition when unsteered. A `gate`
    opens and closes the one steer per decode step and row (gating) and counts the steps it steered."""
    if gate is not None and len(steers) != 1:
        raise ValueError(f"a gate controls exactly one steer, got {len(steers)}")
    out: list[Generation] = []
    device = next(model.parameters()).device
    eos = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    starts = range(0, len(prompts), sampling.batch_size)
    for b, k in enumerate(tqdm(starts, disable=not progress, desc="generate")):
        batch = activations.encode(tokenizer, prompts[k : k + sampling.batch_size], template=template).left_padded()
        state, gated = gate.attach(steers[0]) if gate else (None, None)
        torch.manual_seed(sampling.seed + b)
        with torch.inference_mode(), steering.steering(model, [gated] if gated else steers, trace=state):
            ids = model.generate(
                input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling.kwargs(),
            )
        new = ids[:, batch.input_ids.shape[1] :].cpu()
        alive = torch.cumprod(~torch.isin(new, torch.tensor(sorted(eos))), dim=1).bool()
        steered, read = state.steered(new, eos) if state else ([None] * len(new), [None] * len(new))
        for row in range(new.shape[0]):
            n = int(alive[row].sum())
            out.append(Generation(text=tokenizer.decode(new[row, :n], skip_special_tokens=True), n_tokens=n,
                                  steered_steps=steered[row], gate_steps=read[row]))
    return out


def stories(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    direction: Direction,
    *,
    alpha: float,
    norm: str = "relative",
    positions: str = "all",
    conditions: Sequence[str] = CONDITIONS,
    sampling: Sampling = Sampling(),
    model_id: str = "",
    direction_file: str = "",
    progress: bool = False,
) -> list[Story]:
    """Stories for each pair in each condition, with every setting recorded on each story."""
    unknown = set(conditions) - set(CONDITIONS)
    if unknown:
        raise ValueError(f"unknown condition(s) {sorted(unknown)}; choose from {CONDITIONS}")
    steer = steering.Steer.from_direction(direction, alpha, norm, positions)
    settings = {
        "model": model_id, "direction": direction_file, "layer": direction.layer, "alpha": alpha, "norm": norm,
        "positions": positions, "template": direction.template, **sampling.__dict__,
    }
    out: list[Story] = []
    for condition in conditions:
        prompts = [p.creative if condition == "creative" else p.uncreative for p in pairs]
        steers = [steer] if condition == "induced" else []
        gens = generate(model, tokenizer, prompts, steers=steers, sampling=sampling, template=direction.template,
                        progress=progress)
        extra = {} if condition == "induced" else {"alpha": 0.0}
        out += [Story(prompt_id=p.id, condition=condition, prompt=prompt, text=g.text,
                      settings={**settings, **extra, "n_tokens": g.n_tokens})
                for p, prompt, g in zip(pairs, prompts, gens)]
    return out


@torch.inference_mode()
def perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], texts: Sequence[str],
    *, template: bool = True, batch_size: int = 8,
) -> list[float]:
    """Perplexity of each text given its prompt under the (unsteered) model: a coherence check for steering."""
    out = [float("nan")] * len(prompts)
    device = next(model.parameters()).device
    for k in range(0, len(prompts), batch_size):
        batch = activations.encode(tokenizer, prompts[k : k + batch_size], texts[k : k + batch_size], template=template)
        logits = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch.input_ids[:, 1:, None].to(device))[..., 0]
        mask = batch.response_mask[:, 1:].to(device)
        nll = -(logp * mask).sum(1) / mask.sum(1).clamp(min=1)
        for row, value in enumerate(nll.exp().tolist()):
            out[k + row] = value if batch.response_mask[row].any() else float("nan")
    return out

