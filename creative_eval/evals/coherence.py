"""Coherence measures of generated text that need no model: repetition, which perplexity misses.

Steered text that breaks into fragments or loops keeps a moderate perplexity (its tokens are each plausible
after the last), so the frontier also counts repeated word n-grams. Words are lower-cased whitespace tokens
stripped of surrounding punctuation. Perplexity itself is `generate.perplexity`; a judge's coherence rating
uses `COHERENCE_TEMPLATE`.
"""

from __future__ import annotations

import string

COHERENCE_TEMPLATE = (
    "Here is a writing prompt and a story written for it.\n\nPrompt: {prompt}\n\nStory: {story}\n\n"
    "How coherent and fluent is the story: grammatical, on topic, without repetition or broken sentences? "
    "Rate it from 0 (incoherent) to 9 (perfectly coherent). Answer with a single digit."
)


def tokens(text: str) -> list[str]:
    """Lower-cased words without surrounding punctuation (empty ones dropped)."""
    return [w for w in (t.strip(string.punctuation + "“”‘’—–…").lower() for t in text.split()) if w]


def ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct n-grams / all n-grams in one text (1 = no n-gram repeats); NaN when the text has none."""
    grams = ngrams(tokens(text), n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of n-grams that repeat an earlier n-gram of the same text (0 = none; loops approach 1);
    NaN when the text has no n-gram."""
    grams = ngrams(tokens(text), n)
    if not grams:
        return float("nan")
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)
