"""The probe: how strongly a text's activations point along a direction, and the one rule for which tokens count.

score = mean over the counted tokens of cos(LLM_l(x_t), a). Counted tokens are the prompt's own and the
response's own tokens (the paper: the input and each generated token): never chat-template or special
tokens, padding, or the attention sink at position 0. Every path uses this rule — re-scoring texts
(`Probe`), the layer sweep (`layer_scores`) and a live generation (`ProbeTrace`) — so the same (prompt,
story) gets the same score whichever path measured it. `Probe` runs only up to block l, batched, on the
unsteered model; `ProbeTrace` reads layer l before any injection at that layer, which equals the unsteered
model's activations on the same tokens, since steering at block l changes only later blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations
from creative_eval.direction import Direction
from creative_eval.records import TOKENS


@dataclass(kw_only=True)
class ProbeScore:
    """The score and the per-token cosines it averages (counted tokens only, in text order); `truncated_tokens`
    counts the tokens past the probe's `max_length` that were not read."""

    score: float
    trace: list[float]
    n_tokens: int
    truncated_tokens: int = 0


def cosines(states: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """cos(h_t, a) for every token: [batch, tokens]."""
    return F.cosine_similarity(states, vector.to(states.device, states.dtype)[None, None], dim=-1).cpu()


def check_tokens(tokens: str) -> str:
    if tokens not in TOKENS:
        raise ValueError(f"tokens={tokens!r} is not one of {TOKENS}")
    return tokens


def counted(prompt_mask: torch.Tensor, response_mask: torch.Tensor, tokens: str) -> torch.Tensor:
    """Which tokens count under `tokens` (`prompt`, `response` or `input+response`), from the two own-token masks."""
    check_tokens(tokens)
    return {"prompt": prompt_mask, "response": response_mask,
            "input+response": prompt_mask | response_mask}[tokens]


def masked_scores(cos: torch.Tensor, mask: torch.Tensor) -> list[ProbeScore]:
    """One ProbeScore per row: the mean cosine over the row's counted tokens (NaN when none count)."""
    out = []
    for row in range(cos.shape[0]):
        values = cos[row][mask[row].to(cos.device)].tolist()
        out.append(ProbeScore(score=sum(values) / len(values) if values else float("nan"), trace=values,
                              n_tokens=len(values)))
    return out


class Probe:
    """Scores (prompt, response) texts against one direction at its own layer; a text longer than `max_length`
    tokens (default 2048, bounding memory) is read up to that length and the cut is counted on its score."""

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
        check_tokens(tokens)
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
        with tqdm(total=len(prompts), disable=not progress, desc="probe", unit="text") as bar:
            for idx, batch, states in it:
                scores = masked_scores(cosines(states[layer], self.direction.vector),
                                       counted(batch.prompt_mask, batch.response_mask, tokens))
                for row, i in enumerate(idx):
                    scores[row].truncated_tokens = batch.truncated[row]
                    out[i] = scores[row]
                bar.update(len(idx))
        return out  # type: ignore[return-value]


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
        for layer, d in directions.items():
            scores = masked_scores(cosines(states[layer], d.vector), batch.prompt_mask)
            for row, i in enumerate(idx):
                out[layer][i] = scores[row].score
    return out


class ProbeTrace:
    """Cosine of layer `layer`'s output with a direction during generation, read before any injection at that
    layer (its hook is registered before the steering hooks). With a KV cache each forward adds the new tokens
    only: the prefill, then one column per decode step. The last generated token is never read by the model,
    so a story cut at the token limit has one response token fewer here than when re-scored."""

    def __init__(self, layer: int, direction: torch.Tensor):
        self.layer = layer
        self.direction = direction
        self.steps: list[torch.Tensor] = []

    def hook(self, _module, _args, output) -> None:
        self.steps.append(cosines(activations.output_tensor(output).float(), self.direction))

    def cosines(self) -> torch.Tensor:
        """[batch, tokens]: prompt positions (padding included), then each generated token read so far."""
        return torch.cat(self.steps, dim=1)

    def scores(self, prompt_mask: torch.Tensor, generated: torch.Tensor, stop_ids: Collection[int],
               tokens: str = "input+response") -> list[ProbeScore]:
        """Scores under the counted-token rule: `prompt_mask` [batch, prompt width] marks the prompt's own tokens
        in the (left-padded) prompt; response tokens are the generated ones before the first stop id."""
        cos = self.cosines()
        width = prompt_mask.shape[1]
        read = generated[:, : cos.shape[1] - width].cpu()
        alive = torch.cumprod(~torch.isin(read, torch.tensor(sorted(stop_ids))), dim=1).bool()
        prompt_mask = prompt_mask.bool()
        mask = counted(torch.cat([prompt_mask, torch.zeros_like(alive)], 1),
                       torch.cat([torch.zeros_like(prompt_mask), alive], 1), tokens)
        return masked_scores(cos, mask)
