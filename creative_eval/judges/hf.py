"""Local judge on any causal LM from the core loader: one batched forward per batch, no decoding.

The label probabilities are read from the next-token distribution right after the chat template's
assistant turn opens (`label_ids` says which tokens); "parse" mode instead greedily generates a short answer and
parses it (for comparison)."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from creative_eval import activations
from creative_eval.judges.base import DIGITS, LABELS, MIN_LABEL_MASS, Judge, Templates

LABEL_FORMS = ("{}", " {}")  # the bare label first, then with a leading space


def _single_token(tokenizer: PreTrainedTokenizerBase, text: str, label: str) -> int | None:
    """The id when `text` is one ordinary token that reads back as `label` (not unk, not split), else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1 or ids[0] in tokenizer.all_special_ids or tokenizer.decode(ids).strip() != label:
        return None
    return ids[0]


def label_ids(tokenizer: PreTrainedTokenizerBase, labels: Sequence[str]) -> list[int]:
    """The token id of each label that the model would emit right after the assistant turn opens.

    Chat templates end the opened turn with a newline or a header token, after which a model writes the bare
    label ("7"), so the bare tokens are read whenever every label is one; a tokenizer with both "7" and " 7"
    therefore reads "7", as before. A tokenizer that holds the labels only with a leading space (" 7", "▁7") can
    emit them only that way, so then those are read. One form for the whole set, never a mix or a sum, so every
    label's probability is read at the same kind of token. Neither: refused, naming the tokenizer and the fix."""
    for form in LABEL_FORMS:
        ids = [_single_token(tokenizer, form.format(label), label) for label in labels]
        if all(i is not None for i in ids):
            return ids  # type: ignore[return-value]
    bare = [label for label in labels if _single_token(tokenizer, label, label) is None]
    name = tokenizer.name_or_path or f"in-memory {type(tokenizer).__name__}"
    raise ValueError(f"tokenizer {name!r}: labels {bare} are not single tokens, with or without a leading space, so "
                     "their logprobs cannot be read; use parse: generate in the preset")


class HFJudge(Judge):
    def __init__(self, judge_id: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *,
                 templates: Templates = Templates(), tie_band: float = 0.0, parse: str = "logprobs",
                 batch_size: int = 8, max_new_tokens: int = 8, max_input_tokens: int | None = None,
                 min_label_mass: float = MIN_LABEL_MASS):
        super().__init__(judge_id, templates, tie_band, min_label_mass)
        self.max_input_tokens = max_input_tokens  # stories are cut to fit it before they get here (judges.limits)
        if parse not in ("logprobs", "generate"):
            raise ValueError(f"parse={parse!r} is not 'logprobs' or 'generate'")
        self.model, self.tokenizer, self.parse = model, tokenizer, parse
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        # found at load, so a tokenizer that cannot be read this way fails before any judgement
        self.label_token_ids = ({tuple(ls): label_ids(tokenizer, ls) for ls in (DIGITS, LABELS)}
                                if parse == "logprobs" else {})

    @torch.inference_mode()
    def _ask(self, texts: Sequence[str], labels: Sequence[str]) -> list[tuple[list[float] | None, str | None]]:
        ids = self.label_token_ids[tuple(labels)] if self.parse == "logprobs" else []
        device = next(self.model.parameters()).device
        out: list[tuple[list[float] | None, str | None]] = [(None, None)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # one long text never pads a whole batch
        bar = tqdm(total=len(texts), disable=not self.progress, desc=self.id, unit="prompt")
        for k in range(0, len(texts), self.batch_size):
            idx = order[k : k + self.batch_size]
            batch = activations.encode(self.tokenizer, [texts[i] for i in idx]).left_padded()
            inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": batch.attention_mask.to(device)}
            if self.parse == "logprobs":
                # positions count real tokens only: models with absolute positions (GPT-2) would otherwise read a
                # left-padded text at other positions, and its answer would depend on the batch it came in
                positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
                logits = self.model(**inputs, position_ids=positions, use_cache=False, logits_to_keep=1).logits[:, -1]
                answers = [(p, None) for p in torch.softmax(logits.float(), -1)[:, ids].cpu().tolist()]
            else:
                gen = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
                new = gen[:, batch.input_ids.shape[1] :]
                answers = [(None, t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
            for i, answer in zip(idx, answers):
                out[i] = answer
            bar.update(len(idx))
        bar.close()
        return out
