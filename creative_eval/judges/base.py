"""The judge interface, the prompt templates and the parsing of answers into Rating / Preference records.

A judge rates (prompt, story) items 0-9 and compares (prompt, story A, story B) items in both orders.
Backends only supply next-token distributions (`label_probs`) or, without logprobs, a short answer text.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Sequence

from ..records import Preference, Rating, Story

DIGITS = [str(k) for k in range(10)]
LABELS = ["1", "2"]  # pairwise: "1" = the story shown first
RATE_TEMPLATE = (
    "Here is a writing prompt and a story written for it.\n\nPrompt: {prompt}\n\nStory: {story}\n\n"
    "How creative is the story, from 0 (not creative at all) to 9 (extremely creative)? "
    "Answer with a single digit."
)
COMPARE_TEMPLATE = (
    "Here is a writing prompt and two stories written for it.\n\nPrompt: {prompt}\n\nStory 1: {first}\n\n"
    "Story 2: {second}\n\nWhich story is more creative? Answer with a single digit: 1 or 2."
)


@dataclass(frozen=True)
class Templates:
    rate: str = RATE_TEMPLATE
    compare: str = COMPARE_TEMPLATE

    @property
    def hash(self) -> str:
        return hashlib.sha256(f"{self.rate}\0{self.compare}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PairItem:
    """Two stories of one prompt; `id` names the pair (e.g. "p1:induced|baseline")."""

    a: Story
    b: Story

    @property
    def id(self) -> str:
        return f"{self.a.id}|{self.b.id}"


def expected_and_argmax(probs: Sequence[float]) -> tuple[float, int]:
    """E = sum k p(k) over the renormalised digit probabilities, and the most likely digit."""
    total = sum(probs)
    norm = [p / total for p in probs]
    return sum(k * p for k, p in enumerate(norm)), max(range(len(norm)), key=norm.__getitem__)


def parse_digit(text: str, allowed: Sequence[str] = DIGITS) -> str | None:
    """The answer in a generated text: a bracketed digit first ("[7]"), else the first lone allowed digit."""
    for pattern in (r"\[\s*(\d)\s*\]", r"(?<!\d)(\d)(?!\d)"):
        m = re.search(pattern, text)
        if m and m.group(1) in allowed:
            return m.group(1)
    return None


def rating_from_probs(judge: str, story: Story, probs: list[float] | None, raw: str | None, th: str, latency: float) -> Rating:
    """A Rating from digit probabilities (logprob backends) or from a generated answer (parse mode)."""
    common = {"judge": judge, "story_id": story.id, "raw": raw, "template_hash": th, "latency_s": latency}
    if probs is not None:
        if sum(probs) <= 0:
            return Rating(**common, status="invalid: no digit among the top tokens")
        e, k = expected_and_argmax(probs)
        total = sum(probs)
        return Rating(**common, expected=e, argmax=k, probs=[p / total for p in probs])
    digit = parse_digit(raw or "")
    if digit is None:
        return Rating(**common, status=f"invalid: no digit 0-9 in answer {raw!r:.60}")
    return Rating(**common, expected=float(digit), argmax=int(digit))


def p_first(probs: list[float] | None, raw: str | None) -> float | None:
    """P(the first-shown story is preferred) from label probabilities, or 1/0 from a parsed answer."""
    if probs is not None:
        return probs[0] / sum(probs) if sum(probs) > 0 else None
    label = parse_digit(raw or "", LABELS)
    return None if label is None else float(label == "1")


def preference(judge: str, item: PairItem, p_ab: float | None, p_ba: float | None, th: str, latency: float) -> Preference:
    """Decision from both orders: A if both orders favour A, B if both favour B, else a tie (inconsistent)."""
    common = {"judge": judge, "pair_id": item.id, "story_a": item.a.id, "story_b": item.b.id, "p_first_ab": p_ab,
              "p_first_ba": p_ba, "template_hash": th, "latency_s": latency}
    if p_ab is None or p_ba is None:
        return Preference(**common, decision=None, consistent=None, status="invalid: no label 1/2 in one order")
    a_ab, a_ba = p_ab > 0.5, p_ba < 0.5
    consistent = a_ab == a_ba
    decision = ("A" if a_ab else "B") if consistent else "tie"
    return Preference(**common, decision=decision, consistent=consistent)


class Judge:
    """Base class: subclasses implement `_ask(texts, labels)` -> per text (probs over labels or None, raw text)."""

    def __init__(self, judge_id: str, templates: Templates = Templates()):
        self.id, self.templates = judge_id, templates

    @property
    def template_hash(self) -> str:
        return self.templates.hash

    def _ask(self, texts: Sequence[str], labels: Sequence[str]) -> list[tuple[list[float] | None, str | None]]:
        raise NotImplementedError

    def rate(self, items: Sequence[Story]) -> list[Rating]:
        start = time.perf_counter()
        texts = [self.templates.rate.format(prompt=s.prompt, story=s.text) for s in items]
        answers = self._ask(texts, DIGITS)
        latency = (time.perf_counter() - start) / max(len(items), 1)
        return [rating_from_probs(self.id, s, probs, raw, self.template_hash, latency) for s, (probs, raw) in zip(items, answers)]

    def compare(self, items: Sequence[PairItem]) -> list[Preference]:
        start = time.perf_counter()
        fmt = self.templates.compare.format
        texts = [fmt(prompt=i.a.prompt, first=i.a.text, second=i.b.text) for i in items]
        texts += [fmt(prompt=i.a.prompt, first=i.b.text, second=i.a.text) for i in items]
        answers = [p_first(probs, raw) for probs, raw in self._ask(texts, LABELS)]
        latency = (time.perf_counter() - start) / max(len(items), 1)
        n = len(items)
        return [preference(self.id, it, answers[i], answers[n + i], self.template_hash, latency) for i, it in enumerate(items)]
