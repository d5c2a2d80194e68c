"""Probe-gated steering: steer a decode step only while the text so far is not yet creative enough.

At each decode step the gate reads the probe's cosine of the token being processed at layer l, before any
injection there (it is hooked ahead of the steering hook), and opens the injection for that row only while
the running mean of the last `window` generated tokens' cosines is below `target`. Steering at block l
changes only later blocks, so what the gate reads is the unsteered model's probe on the text written so far:
the gate pushes until the text reads as creative and then lets it run on its own, instead of adding the
vector at every step. The prompt is never steered under a gate (positions `generated`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from creative_eval.probe import ProbeTrace
from creative_eval.steering.hooks import Steer


@dataclass(frozen=True)
class Gate:
    """Steer while the running mean (last `window` generated tokens) of the probe cosine is below `target`."""

    target: float
    window: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.target, (int, float)) or math.isnan(self.target):
            raise ValueError(f"gate target must be a number (a probe cosine, e.g. -0.1), got {self.target!r}")
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"gate window must be a whole number >= 1, got {self.window!r}")

    def attach(self, steer: Steer) -> tuple["GateState", Steer]:
        """A fresh per-generation state and the steer it opens and closes (its positions become `generated`)."""
        state = GateState(self, steer.layer, steer.vector)
        return state, replace(steer, positions="generated", gate=state.open)


class GateState(ProbeTrace):
    """The live trace of one `generate` call plus the gate's decision at every decode step, per row."""

    def __init__(self, gate: Gate, layer: int, direction: torch.Tensor):
        super().__init__(layer, direction)
        self.gate = gate
        self.decisions: list[torch.Tensor] = []  # one [batch] bool per decode step
        self._open: torch.Tensor | None = None

    def hook(self, module, args, output) -> None:
        super().hook(module, args, output)
        new = self.steps[-1]
        if len(self.steps) == 1:  # the prefill: the prompt is never steered
            self._open = torch.zeros(new.shape, dtype=torch.bool)
            return
        if new.shape[1] != 1:
            raise RuntimeError("gated steering needs generation with a KV cache (one new token per step)")
        generated = torch.cat(self.steps[1:], dim=1)[:, -self.gate.window :]
        decision = generated.mean(1) < self.gate.target
        self.decisions.append(decision)
        self._open = decision[:, None]

    def open(self, batch: int, tokens: int) -> torch.Tensor:
        """[batch, tokens] bool: where the steering hook may inject in the current forward."""
        if self._open is None or self._open.shape != (batch, tokens):
            raise RuntimeError("the gate's trace must run before its steering hook on the same forward")
        return self._open

    def steered(self, generated: torch.Tensor, stop_ids: set[int]) -> tuple[list[int], list[int]]:
        """Per row: (decode steps steered, decode steps read) over the row's own generated tokens, i.e. those
        before its first stop token (a finished row keeps stepping on padding, which does not count)."""
        n = len(self.decisions)
        if n == 0:
            return [0] * generated.shape[0], [0] * generated.shape[0]
        read = generated[:, :n].cpu()
        alive = torch.cumprod(~torch.isin(read, torch.tensor(sorted(stop_ids))), dim=1).bool()
        opened = torch.stack(self.decisions, dim=1)[:, : read.shape[1]]
        return (opened & alive).sum(1).tolist(), alive.sum(1).tolist()
