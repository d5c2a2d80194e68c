"""Per-text summaries of layer-l activations, read once, from which any number of directions is fitted and
scored without running the model again.

For the counted tokens of a text (the probe's rule, `probe.counted`) two means are kept: the mean state
(a difference-of-means direction is fitted from it, as `direction.extract` does) and the mean of the
unit-normalised states u. For a unit direction a, u . a = mean_t cos(h_t, a), which is exactly the probe
score, so scoring 200 random directions is one matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations
from creative_eval.direction import Direction
from creative_eval.probe import score as probe
from creative_eval.records import Story


@dataclass(frozen=True)
class States:
    """One layer's per-text summaries: `mean` and `unit` [n_texts, hidden], `n_tokens` [n_texts]."""

    mean: torch.Tensor
    unit: torch.Tensor
    n_tokens: torch.Tensor

    def scores(self, vectors: torch.Tensor) -> torch.Tensor:
        """Probe scores [n_texts] for one unit vector [hidden], or [n_texts, k] for k vectors [k, hidden]."""
        return self.unit @ (vectors if vectors.ndim == 1 else vectors.T)

    def take(self, index: Sequence[int]) -> "States":
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return States(self.mean[idx], self.unit[idx], self.n_tokens[idx])


def read(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str] | None,
    layers: Sequence[int],
    *,
    tokens: str = "response",
    template: bool = True,
    batch_size: int = 16,
    max_length: int | None = 2048,
    progress: bool = False,
) -> dict[int, States]:
    """States per layer from one truncated pass; `tokens` as in the probe (`prompt` when no responses)."""
    states = read_rules(model, tokenizer, prompts, responses, layers, (tokens,), template=template,
                        batch_size=batch_size, max_length=max_length, progress=progress)
    return {layer: by_rule[tokens] for layer, by_rule in states.items()}


def read_rules(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str] | None,
    layers: Sequence[int],
    rules: Sequence[str],
    *,
    template: bool = True,
    batch_size: int = 16,
    max_length: int | None = 2048,
    progress: bool = False,
    desc: str = "states",
) -> dict[int, dict[str, States]]:
    """States per layer and token rule, all from one truncated pass over the texts."""
    for rule in rules:
        probe.check_tokens(rule)
        if responses is None and rule != "prompt":
            raise ValueError(f"tokens={rule!r} needs responses; pass them or use tokens='prompt'")
    hidden = model.config.hidden_size
    mean = {(layer, rule): torch.zeros(len(prompts), hidden) for layer in layers for rule in rules}
    unit = {key: torch.zeros(len(prompts), hidden) for key in mean}
    count = {rule: torch.zeros(len(prompts)) for rule in rules}
    it = activations.batches(model, tokenizer, prompts, responses, layers, template=template,
                             batch_size=batch_size, max_length=max_length)
    with tqdm(total=len(prompts), disable=not progress, desc=desc, unit="text") as bar:
        for idx, batch, states in it:
            masks = {rule: probe.counted(batch.prompt_mask, batch.response_mask, rule) for rule in rules}
            for layer, h in states.items():
                h = h.cpu()
                normed = torch.nn.functional.normalize(h, dim=-1)
                for rule, mask in masks.items():
                    count[rule][idx] = mask.sum(1).float()
                    mean[layer, rule][idx] = activations.pool(h, mask, "mean")
                    unit[layer, rule][idx] = activations.pool(normed, mask, "mean")
            bar.update(len(idx))
    return {layer: {rule: States(mean[layer, rule], unit[layer, rule], count[rule]) for rule in rules}
            for layer in layers}


def story_states(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, stories: Sequence[Story],
                 d: Direction, tokens: str = "input+response") -> tuple[States, States]:
    """Per-story states at the direction's layer under `tokens`, and under response tokens (for comparing
    stories of different prompts), from one pass; their product with the direction is the probe score."""
    rules = dict.fromkeys((tokens, "response"))
    states = read_rules(model, tokenizer, [s.prompt for s in stories], [s.text for s in stories], [d.layer],
                        tuple(rules), template=d.template, progress=True, desc="controls")[d.layer]
    return states[tokens], states["response"]
