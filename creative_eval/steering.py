"""Activation steering: add lambda * a to the output of block l while a context is open.

The hook knows each token's absolute position from the KV cache length, so `generated` steers every
decode step but not the prefill, with or without a cache. Hooks are removed on exit and on exceptions;
no state outlives the context.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch import nn

from . import activations, models
from .direction import Direction

if TYPE_CHECKING:
    from .probe import ProbeTrace

POSITIONS = ("all", "prompt", "generated")
NORMS = ("unit", "raw", "relative")
DEFAULT_ALPHA = 0.2  # with norm "relative": |lambda * a| = 0.2 x the mean residual norm at the layer; chosen by `creative-eval steer-sweep` (README)


@dataclass(frozen=True)
class Steer:
    """One injection: `vector` (already scaled) added at `layer`. A `gate` (gating.Gate.attach) gives, per
    forward, a [batch, tokens] bool of where the injection is open; without one it is always open."""

    layer: int
    vector: torch.Tensor
    positions: str = "all"
    gate: Callable[[int, int], torch.Tensor] | None = field(default=None, compare=False)

    @classmethod
    def from_direction(cls, direction: Direction, alpha: float, norm: str = "unit", positions: str = "all") -> "Steer":
        """Scale a unit direction: `unit` = alpha * a (the paper's lambda), `raw` = alpha * |mean difference| * a,
        `relative` = alpha * (mean residual norm at the layer) * a, so alpha is a fraction of the stream's size."""
        check(alpha, norm, positions)
        return cls(direction.layer, direction.vector * (alpha * scale(direction, norm)), positions)


def scale(direction: Direction, norm: str) -> float:
    """Length of the injected vector per unit of alpha under a norm mode."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    return {"unit": 1.0, "raw": direction.raw_norm, "relative": direction.resid_norm}[norm]


def check(alpha: float, norm: str = "unit", positions: str = "all") -> None:
    """Reject bad steering settings before any work starts."""
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha (lambda) must be a finite number, got {alpha!r}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    if positions not in POSITIONS:
        raise ValueError(f"positions={positions!r} is not one of {POSITIONS}")


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
        check(0.0, positions=s.positions)
        handles.append(models.block(model, s.layer).register_forward_hook(_hook(s, state), with_kwargs=True))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _hook(steer: Steer, state: dict):
    def hook(_module, _args, kwargs, output):
        h = activations.output_tensor(output)
        delta = steer.vector.to(h.device, h.dtype)
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
