"""Reading layer-l activations: the one path shared by extraction, the probe and the sweep.

Texts are rendered (chat template on or off; a tokenizer without one always reads the plain text), tokenized
with character offsets so that the prompt's and the response's own tokens are known exactly (template and
special tokens excluded), right-padded, and run through the model only as far as the deepest requested layer:
no later blocks, no lm_head.
The first position of every sequence is an attention sink with a huge norm and is never counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from creative_eval import models
from creative_eval.records import POOLINGS


@dataclass
class Batch:
    """Token ids plus, per token, whether it belongs to the prompt's or the response's own text, and per row how
    many tokens `max_length` cut off the end."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_mask: torch.Tensor
    response_mask: torch.Tensor
    truncated: list[int] = field(default_factory=list)

    def left_padded(self) -> "Batch":
        """The same rows with padding moved to the left, as generation needs."""
        shift = (~self.attention_mask.bool()).sum(1)
        idx = (torch.arange(self.input_ids.shape[1])[None, :] - shift[:, None]) % self.input_ids.shape[1]
        return Batch(*(t.gather(1, idx) for t in (self.input_ids, self.attention_mask, self.prompt_mask, self.response_mask)))


def uses_template(tokenizer: PreTrainedTokenizerBase, template: bool) -> bool:
    """Whether texts go through the chat template: asked for and the tokenizer has one. A base model without a
    template reads the plain text with the tokenizer's own special tokens (e.g. BOS), as it was trained."""
    return template and tokenizer.chat_template is not None


def render(tokenizer: PreTrainedTokenizerBase, prompt: str, response: str | None, template: bool) -> str:
    """The exact string the model reads for a prompt (and optional response); plain without a chat template."""
    if not uses_template(tokenizer, template):
        return prompt if response is None else f"{prompt}\n\n{response}"
    messages = [{"role": "user", "content": prompt}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=response is None)


def _span_mask(offsets: list[tuple[int, int]], start: int, end: int) -> list[bool]:
    return [s < e and s >= start and e <= end for s, e in offsets]


def _encode_one(tokenizer, prompt: str, response: str | None, template: bool) -> tuple[list[int], list[bool], list[bool]]:
    template = uses_template(tokenizer, template)
    text = render(tokenizer, prompt, response, template)
    p_start = text.find(prompt)
    if p_start < 0:
        raise ValueError(f"the chat template changed the prompt text ({prompt[:40]!r}...); use template=False")
    p_end = p_start + len(prompt)
    r_start = text.find(response, p_end) if response is not None else -1
    r_end = r_start + len(response) if response is not None else -1
    enc = tokenizer(text, add_special_tokens=not template, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    pmask = _span_mask(offsets, p_start, p_end)
    rmask = _span_mask(offsets, r_start, r_end) if response else [False] * len(offsets)
    pmask[0] = rmask[0] = False  # the attention sink
    return enc["input_ids"], pmask, rmask


def encode(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str] | None = None,
    *,
    template: bool = True,
    max_length: int | None = None,
) -> Batch:
    """Tokenize and right-pad; right padding keeps every real token at its unpadded position."""
    if not tokenizer.is_fast:
        raise TypeError("activations need a fast tokenizer (character offsets); load the model with use_fast=True")
    rows = [_encode_one(tokenizer, p, None if responses is None else responses[i], template) for i, p in enumerate(prompts)]
    truncated = [max(0, len(ids) - max_length) if max_length else 0 for ids, _, _ in rows]
    if max_length:
        rows = [(ids[:max_length], pm[:max_length], rm[:max_length]) for ids, pm, rm in rows]
    width = max(len(ids) for ids, _, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def padded(values: list, fill) -> list:
        return values + [fill] * (width - len(values))

    return Batch(
        input_ids=torch.tensor([padded(ids, pad) for ids, _, _ in rows]),
        attention_mask=torch.tensor([padded([1] * len(ids), 0) for ids, _, _ in rows]),
        prompt_mask=torch.tensor([padded(pm, False) for _, pm, _ in rows]),
        response_mask=torch.tensor([padded(rm, False) for _, _, rm in rows]),
        truncated=truncated,
    )


class _Stop(Exception):
    """Raised by the hook on the deepest requested block: nothing after it is computed."""


def output_tensor(output) -> torch.Tensor:
    """Decoder blocks return a tensor or a tuple whose first item is the hidden state."""
    return output[0] if isinstance(output, tuple) else output


@torch.inference_mode()
def layer_states(model: nn.Module, batch: Batch, layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """Residual stream after each block in `layers` (float32, [batch, tokens, hidden]), truncated forward."""
    layers = sorted({models.check_layer(model, layer) for layer in layers})
    states: dict[int, torch.Tensor] = {}

    def hook_for(layer: int):
        def hook(_module, _args, output):
            states[layer] = output_tensor(output).float()
            if layer == layers[-1]:
                raise _Stop

        return hook

    handles = [models.block(model, layer).register_forward_hook(hook_for(layer)) for layer in layers]
    device = next(model.parameters()).device
    try:
        model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return states


def pool(states: torch.Tensor, mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Pool [batch, tokens, hidden] over the masked tokens: their mean, or the last one."""
    mask = mask.to(states.device)
    if how == "mean":
        m = mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp(min=1)
    if how == "last":
        idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask).masked_fill(~mask, -1).amax(1).clamp(min=0)
        return states[torch.arange(states.shape[0]), idx]
    raise ValueError(f"pooling={how!r} is not one of {POOLINGS}")


def batches(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str] | None,
    layers: Sequence[int],
    *,
    template: bool = True,
    batch_size: int = 16,
    max_length: int | None = None,
) -> Iterator[tuple[list[int], Batch, dict[int, torch.Tensor]]]:
    """Yield (original indices, batch, layer states) over length-sorted batches, so padding stays small."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + (len(responses[i]) if responses else 0))
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        batch = encode(
            tokenizer, [prompts[i] for i in idx], None if responses is None else [responses[i] for i in idx],
            template=template, max_length=max_length,
        )
        yield idx, batch, layer_states(model, batch, layers)
