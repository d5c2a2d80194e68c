"""The probe judge: how strongly a text's activations point along the creativity direction.

score = mean over the counted tokens of cos(LLM_l(x_t), a), by default over the prompt's and the
response's own tokens (the paper: the input and each generated token). The model runs only up to
block l, batched, on the unsteered model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from . import activations
from .direction import Direction

TOKENS = ("input+response", "response", "prompt")


@dataclass
class ProbeScore:
    """The score and the per-token cosines it averages (counted tokens only, in text order)."""

    score: float
    trace: list[float]
    n_tokens: int


class Probe:
    """Scores (prompt, response) texts against one direction at its own layer."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        direction: Direction,
        *,
        tokens: str = "input+response",
        batch_size: int = 8,
        max_length: int | None = 2048,
    ):
        if tokens not in TOKENS:
            raise ValueError(f"tokens={tokens!r} is not one of {TOKENS}")
        direction.check(model)
        self.model, self.tokenizer, self.direction = model, tokenizer, direction
        self.tokens, self.batch_size, self.max_length = tokens, batch_size, max_length

    def score(self, prompts: Sequence[str], responses: Sequence[str] | None = None, progress: bool = False) -> list[ProbeScore]:
        """One ProbeScore per prompt (and response, if given)."""
        if responses is not None and len(responses) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses; pass one response per prompt")
        tokens = "prompt" if responses is None and self.tokens == "input+response" else self.tokens
        out: list[ProbeScore | None] = [None] * len(prompts)
        layer = self.direction.layer
        it = activations.batches(
            self.model, self.tokenizer, prompts, responses, [layer], template=self.direction.template,
            batch_size=self.batch_size, max_length=self.max_length,
        )
        for idx, batch, states in tqdm(it, total=-(-len(prompts) // self.batch_size), disable=not progress, desc="probe"):
            cos = cosines(states[layer], self.direction.vector)
            mask = activations.token_mask(batch, tokens)
            for row, i in enumerate(idx):
                values = cos[row][mask[row]].tolist()
                out[i] = ProbeScore(sum(values) / len(values) if values else float("nan"), values, len(values))
        return out  # type: ignore[return-value]


def cosines(states: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """cos(h_t, a) for every token: [batch, tokens]."""
    return F.cosine_similarity(states, vector.to(states.device, states.dtype)[None, None], dim=-1).cpu()


def layer_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    directions: dict[int, Direction],
    *,
    batch_size: int = 16,
    template: bool = True,
) -> dict[int, list[float]]:
    """Probe scores of prompts at many layers from one truncated pass (for the layer sweep)."""
    out = {layer: [0.0] * len(prompts) for layer in directions}
    for idx, batch, states in activations.batches(model, tokenizer, prompts, None, list(directions),
                                                  template=template, batch_size=batch_size):
        mask = batch.prompt_mask
        for layer, d in directions.items():
            cos = cosines(states[layer], d.vector)
            means = (cos * mask).sum(1) / mask.sum(1).clamp(min=1)
            for row, i in enumerate(idx):
                out[layer][i] = float(means[row])
    return out
