"""Activation steering: add lambda * a to the output of block l while a context is open.

The hook knows each token's absolute position from the KV cache length, so `generated` steers every
decode step but not the prefill, with or without a cache. Hooks are removed on exit and on exceptions;
no state outlives the context.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch import nn

from creative_eval import activations, models
from creative_eval.direction import Direction
from creative_eval.steering.settings import Steering, check_positions

if TYPE_CHECKING:
    from creative_eval.probe import ProbeTrace


@dataclass(frozen=True)
class Steer:
    """One injection: `vector` (already scaled) added at `layer`. A `gate` (gating.Gate.attach) gives, per
    forward, a [batch, tokens] bool of where the injection is open; without one it is always open."""

    layer: int
    vector: torch.Tensor
    positions: str = "all"
    gate: Callable[[int, int], torch.Tensor] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_positions(self.positions)

    @classmethod
    def of(cls, direction: Direction, setting: Steering) -> "Steer":
        """lambda * a at the direction's layer, scaled as the setting says."""
        return cls(direction.layer, direction.vector * setting.scale(direction), setting.positions)

    @classmethod
    def from_direction(cls, direction: Direction, alpha: float, norm: str = "unit", positions: str = "all") -> "Steer":
        """`Steer.of` with the setting spelled out (norm `unit`: the paper's lambda)."""
        return cls.of(direction, Steering(alpha, norm, positions))


def scale(direction: Direction, norm: str) -> float:
    """Length of the injected vector per unit of alpha under a norm mode."""
    return Steering(1.0, norm).scale(direction)


def _cache_length(kwargs: dict, n_new: int) -> int:
    """Tokens before this call: the cache already holds this call's tokens when a block returns."""
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if cache is None or not hasattr(cache, "get_seq_length"):
        return 0
    return int(cache.get_seq_length()) - n_new


@contextlib.contextmanager
def steering(
    model: nn.Module,
    steers: Steer | Sequence[Steer],
    *,
    prompt_len: int | None = None,
    trace: "ProbeTrace | None" = None,
) -> Iterator[None]:
    """Steer `model` inside the block. `prompt_len` separates prompt from generated positions; by default it
    is the length of the first forward pass in the context (the prefill of a `generate` call). A `trace`
    (probe.ProbeTrace) is hooked first, so it reads its layer before any injection there."""
    steers = [steers] if isinstance(steers, Steer) else list(steers)
    state = {"prompt_len": prompt_len}
    handles = [models.block(model, trace.layer).register_forward_hook(trace.hook)] if trace else []
    for s in steers:
        handles.append(models.block(model, s.layer).register_forward_hook(_hook(s, state), with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _hook(steer: Steer, state: dict):
    moved: dict[tuple, torch.Tensor] = {}  # the vector on the stream's device and dtype, copied once, not per step

    def hook(_module, _args, kwargs, output):
        h = activations.output_tensor(output)
        key = (h.device, h.dtype)
        delta = moved.get(key)
        if delta is None:
            delta = moved[key] = steer.vector.to(h.device, h.dtype)
        if steer.positions == "all" and steer.gate is None:
            h = h + delta
        else:
            start = _cache_length(kwargs, h.shape[1])
            if state["prompt_len"] is None:
                state["prompt_len"] = start + h.shape[1]
            pos = torch.arange(start, start + h.shape[1], device=h.device)
            in_prompt = pos < state["prompt_len"]
            keep = {"all": torch.ones_like(in_prompt), "prompt": in_prompt, "generated": ~in_prompt}[steer.positions]
            keep = keep[None, :]
            if steer.gate is not None:
                keep = keep & steer.gate(h.shape[0], h.shape[1]).to(h.device)
            h = h + keep[..., None].to(h.dtype) * delta
        return (h, *output[1:]) if isinstance(output, tuple) else h

    return hook
