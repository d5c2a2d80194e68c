"""Input-length limits of judges: a long story is cut to fit, never read unbounded.

Local judges (`hf`, `probe`) read at most `max_input_tokens` tokens: the preset's field (default 2048, which
keeps a CPU judge's memory near 1 GB on a 200,000-character story) or the model's context
(`max_position_embeddings`), whichever is smaller. A longer story is cut at a token boundary so that the whole
judge prompt fits (each story of a pair gets half of what the template leaves), and the number of tokens cut
is recorded on the judgement (`truncated_tokens`). The probe judge cuts inside the probe (`Probe.max_length`).
API judges (`openai`) cannot count the server's tokens, so they refuse, before any request, a story longer
than the preset's `max_input_chars` characters."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from creative_eval import activations
from creative_eval.judges.base import PairItem
from creative_eval.records import Story

DEFAULT_MAX_INPUT_TOKENS = 2048
DEFAULT_MAX_INPUT_CHARS = 32_000
MARGIN = 8  # tokens kept free: a story tokenised alone can merge differently at its edges inside the template


def context_limit(model, preset_limit: int | None) -> int:
    """The smaller of the preset's `max_input_tokens` (default DEFAULT_MAX_INPUT_TOKENS) and the model's context."""
    context = getattr(model.config, "max_position_embeddings", None)
    return min(n for n in (preset_limit or DEFAULT_MAX_INPUT_TOKENS, context) if n)


def _overhead(judge, item: Story | PairItem) -> int:
    """Tokens of the longest judge prompt (of an ensemble's phrasings) with the story texts left empty."""
    if isinstance(item, PairItem):
        texts = [t.format(prompt=item.a.prompt, first="", second="") for t in judge.templates.compare]
    else:
        texts = [t.format(prompt=item.prompt, story="") for t in judge.templates.rate]
    return max(len(judge.tokenizer(activations.render(judge.tokenizer, t, None, True))["input_ids"]) for t in texts)


def cut(tokenizer, text: str, budget: int) -> tuple[str, int]:
    """`text` cut to its first `budget` tokens, and how many tokens were cut."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    n = len(enc["input_ids"])
    if n <= budget:
        return text, 0
    return text[: enc["offset_mapping"][budget - 1][1]], n - budget


def _fit_tokens(judge, item: Story | PairItem) -> tuple[Story | PairItem, int]:
    stories: Sequence[Story] = (item.a, item.b) if isinstance(item, PairItem) else (item,)
    budget = (judge.max_input_tokens - _overhead(judge, item) - MARGIN) // len(stories)
    if budget < 1:
        raise ValueError(f"story {stories[0].id}: its prompt alone fills the judge's input limit of "
                         f"{judge.max_input_tokens} tokens; shorten the prompt or raise `max_input_tokens`")
    fitted = [cut(judge.tokenizer, s.text, budget) for s in stories]
    new = [replace(s, text=text) if n else s for s, (text, n) in zip(stories, fitted)]
    total = sum(n for _, n in fitted)
    return (PairItem(*new) if isinstance(item, PairItem) else new[0]), total


def _check_chars(judge, item: Story | PairItem) -> None:
    for s in (item.a, item.b) if isinstance(item, PairItem) else (item,):
        if len(s.text) > judge.max_input_chars:
            raise ValueError(f"story {s.id} has {len(s.text):,} characters, over judge {judge.id!r}'s limit of "
                             f"{judge.max_input_chars:,}; shorten it, or raise `max_input_chars` in the preset if "
                             "the server's context allows")


def fit(judge, item: Story | PairItem) -> tuple[Story | PairItem, int]:
    """The item as the judge will read it, and the number of story tokens cut to fit its limit."""
    if getattr(judge, "max_input_chars", None):
        _check_chars(judge, item)
    if getattr(judge, "max_input_tokens", None) and getattr(judge, "tokenizer", None) is not None:
        return _fit_tokens(judge, item)
    return item, 0
