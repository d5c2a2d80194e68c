"""Local judge on any causal LM from the core loader: one batched forward per batch, no decoding.

The label probabilities are read from the next-token distribution right after the chat template's
assistant turn opens; "parse" mode instead greedily generates a short answer and parses it (for comparison)."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations
from creative_eval.judges.base import Judge, Templates


def label_ids(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> list[int]:
    """The single token id of each label; a tokenizer that splits a digit cannot be judged by logprobs."""
    ids = [tokenizer.encode(label, add_special_tokens=False) for label in labels]
    bad = [label for label, i in zip(labels, ids) if len(i) != 1]
    if bad:
        raise ValueError(f"labels {bad} are not single tokens for this tokenizer; use parse: generate in the preset")
    return [i[0] for i in ids]


class HFJudge(Judge):
    def __init__(self, judge_id: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *,
                 templates: Templates = Templates(), tie_band: float = 0.0, parse: str = "logprobs",
                 batch_size: int = 8, max_new_tokens: int = 8, max_input_tokens: int | None = None):
        super().__init__(judge_id, templates, tie_band)
        self.max_input_tokens = max_input_tokens  # stories are cut to fit it before they get here (judges.limits)
        if parse not in ("logprobs", "generate"):
            raise ValueError(f"parse={parse!r} is not 'logprobs' or 'generate'")
        self.model, self.tokenizer, self.parse = model, tokenizer, parse
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    @torch.inference_mode()
    def _ask(self, texts: Sequence[str], labels: Sequence[str]) -> list[tuple[list[float] | None, str | None]]:
        ids = label_ids(self.tokenizer, labels) if self.parse == "logprobs" else []
        device = next(self.model.parameters()).device
        out: list[tuple[list[float] | None, str | None]] = [(None, None)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # one long text never pads a whole batch
        for k in range(0, len(texts), self.batch_size):
            idx = order[k : k + self.batch_size]
            batch = activations.encode(self.tokenizer, [texts[i] for i in idx]).left_padded()
            inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": batch.attention_mask.to(device)}
            if self.parse == "logprobs":
                logits = self.model(**inputs, use_cache=False, logits_to_keep=1).logits[:, -1].float()
                answers = [(p, None) for p in torch.softmax(logits, -1)[:, ids].cpu().tolist()]
            else:
                gen = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
                new = gen[:, batch.input_ids.shape[1] :]
                answers = [(None, t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
            for i, answer in zip(idx, answers):
                out[i] = answer
        return out
