"""The judge interface, the decision rules and the parsing of answers into Rating / Preference records.

A judge rates (prompt, story) items 0-9 and compares (prompt, story A, story B) items in both orders.
Backends only supply next-token distributions (`label_probs`) or, without logprobs, a short answer text.
The phrasings live in `judges/template_files/` (see `templates`); with several (an ensemble) the label
probabilities are averaged over them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Sequence

from creative_eval.judges import templates as templates_mod
from creative_eval.records import Preference, Rating, Story

MIN_LABEL_MASS = 0.01  # labels holding less of the next-token probability: the judge answered something else
DIGITS = [str(k) for k in range(10)]
LABELS = ["1", "2"]  # pairwise: "1" = the story shown first
MODES = ("rating", "pairwise")


@dataclass(frozen=True)
class Templates:
    """The rating and comparison phrasings a judge uses (one each, or several for an ensemble)."""

    rate: tuple[str, ...] = templates_mod.resolve(None, "rate")
    compare: tuple[str, ...] = templates_mod.resolve(None, "compare")

    @classmethod
    def named(cls, rate: str | None = None, compare: str | None = None) -> "Templates":
        """From template names (or `ensemble`); None is the kind's default."""
        return cls(templates_mod.resolve(rate, "rate"), templates_mod.resolve(compare, "compare"))

    def hash_for(self, mode: str) -> str:
        """The hash of the phrasing(s) a rating or pairwise record is judged with."""
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
        return templates_mod.template_hash(self.rate if mode == "rating" else self.compare)


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


def digit_probs(probs: list[float] | None, raw: str | None) -> list[float] | None:
    """Renormalised digit probabilities (logprob backends), or a one-hot of the parsed digit (parse mode);
    None when there is no usable answer."""
    if probs is not None:
        total = sum(probs)
        return [p / total for p in probs] if total > 0 else None
    digit = parse_digit(raw or "")
    return None if digit is None else [float(k == int(digit)) for k in range(10)]


def label_mass(answers: Sequence[tuple[list[float] | None, str | None]]) -> float | None:
    """The labels' smallest total probability over the answers (None for parsed answers)."""
    masses = [sum(p) for p, _ in answers if p is not None]
    return min(masses) if masses else None


def too_little(mass: float | None, raw: str | None, least: float = MIN_LABEL_MASS) -> str | None:
    """The invalid status of an answer whose labels hold less than `least` of the probability, else None."""
    if mass is None or mass >= least:
        return None
    return (f"invalid: the labels hold {mass:.3g} of the probability (< {least:g}); the judge answered "
            f"something else ({(raw or '')!r:.40})")


def rating_from_probs(judge: str, story: Story, answers: Sequence[tuple[list[float] | None, str | None]], th: str,
                      latency: float, least: float = MIN_LABEL_MASS) -> Rating:
    """A Rating from one answer per template: the digit distributions are averaged over templates (an
    ensemble); any template without a usable answer, or whose digits hold almost none of the probability
    (`MIN_LABEL_MASS`), makes the rating invalid (counted, never scored)."""
    raw = " | ".join(r for _, r in answers if r) or None
    mass = label_mass(answers)
    common = {"judge": judge, "story_id": story.id, "raw": raw, "template_hash": th, "latency_s": latency,
              "label_mass": mass}
    if (status := too_little(mass, raw, least)) is not None:
        return Rating(**common, status=status)
    dists = [digit_probs(p, r) for p, r in answers]
    if any(d is None for d in dists):
        return Rating(**common, status=f"invalid: no digit 0-9 in the answer {raw!r:.60}")
    mean = [sum(d[k] for d in dists) / len(dists) for k in range(10)]
    e, k = expected_and_argmax(mean)
    return Rating(**common, expected=e, argmax=k, probs=mean if answers[0][0] is not None else None)


def p_first(probs: list[float] | None, raw: str | None) -> float | None:
    """P(the first-shown story is preferred) from label probabilities, or 1/0 from a parsed answer."""
    if probs is not None:
        return probs[0] / sum(probs) if sum(probs) > 0 else None
    label = parse_digit(raw or "", LABELS)
    return None if label is None else float(label == "1")


def mean_p_first(values: Sequence[float | None]) -> float | None:
    """P(first) averaged over templates; None when any template gave no usable answer."""
    return None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[arg-type]


def debiased(p_ab: float, p_ba: float) -> float:
    """P(A is preferred), averaged over both orders: ½·[P(first | A,B) + 1 − P(first | B,A)].
    A judge that names the first position in both orders (p_ab = p_ba) gets ½ plus half their difference,
    so its position bias cancels and what is left is how much more it prefers A when A is first."""
    return (p_ab + 1 - p_ba) / 2


def decide(p_a: float, tie_band: float = 0.0) -> str:
    """A when P(A>B) − ½ exceeds `tie_band`, B when ½ − P(A>B) does, else a tie."""
    return "tie" if abs(p_a - 0.5) <= tie_band else ("A" if p_a > 0.5 else "B")


def preference(judge: str, item: PairItem, p_ab: float | None, p_ba: float | None, th: str, latency: float,
               tie_band: float = 0.0, mass: float | None = None, raw: str | None = None,
               least: float = MIN_LABEL_MASS) -> Preference:
    """The position-debiased decision (`decide` on P(A>B) of `debiased`). `consistent` (both orders name the same
    story) is kept as a diagnostic, not a condition. Labels holding almost none of the probability in either
    order (`mass` < `least`) make it invalid."""
    common = {"judge": judge, "pair_id": item.id, "story_a": item.a.id, "story_b": item.b.id, "p_first_ab": p_ab,
              "p_first_ba": p_ba, "template_hash": th, "latency_s": latency, "label_mass": mass}
    if (status := too_little(mass, raw, least)) is not None:
        return Preference(**common, decision=None, consistent=None, status=status)
    if p_ab is None or p_ba is None:
        return Preference(**common, decision=None, consistent=None, status="invalid: no label 1/2 in one order")
    p_a = debiased(p_ab, p_ba)
    return Preference(**common, p_a=p_a, decision=decide(p_a, tie_band), consistent=(p_ab > 0.5) == (p_ba < 0.5))


class Judge:
    """Base class: subclasses implement `_ask(texts, labels)` -> per text (probs over labels or None, raw text).
    `progress` shows a bar over the prompts of one call, for callers that judge everything at once (the lm-eval
    tasks); `judges.run` counts its own judgements instead."""

    progress: bool = False

    def __init__(self, judge_id: str, templates: Templates = Templates(), tie_band: float = 0.0,
                 min_label_mass: float = MIN_LABEL_MASS):
        if tie_band < 0:
            raise ValueError(f"judge {judge_id!r}: tie_band must be >= 0, got {tie_band}")
        if not 0 <= min_label_mass < 1:
            raise ValueError(f"judge {judge_id!r}: min_label_mass must be in [0, 1), got {min_label_mass}")
        self.id, self.templates, self.tie_band = judge_id, templates, tie_band
        self.min_label_mass = min_label_mass

    def hash_for(self, mode: str) -> str:
        return self.templates.hash_for(mode)

    def _ask(self, texts: Sequence[str], labels: Sequence[str]) -> list[tuple[list[float] | None, str | None]]:
        raise NotImplementedError

    def _per_template(self, texts: list[str], n: int, labels: Sequence[str]) -> list[list[tuple]]:
        """Ask every text at once (one batch for the backend); answers regrouped per item: [item][template]."""
        answers = self._ask(texts, labels)
        return [answers[i::n] for i in range(n)]

    def rate(self, items: Sequence[Story]) -> list[Rating]:
        start = time.perf_counter()
        texts = [t.format(prompt=s.prompt, story=s.text) for t in self.templates.rate for s in items]
        answers = self._per_template(texts, len(items), DIGITS)
        latency = (time.perf_counter() - start) / max(len(items), 1)
        th = self.hash_for("rating")
        return [rating_from_probs(self.id, s, a, th, latency, self.min_label_mass) for s, a in zip(items, answers)]

    def compare(self, items: Sequence[PairItem]) -> list[Preference]:
        start = time.perf_counter()
        n = len(items)
        texts = [t.format(prompt=i.a.prompt, first=first.text, second=second.text) for t in self.templates.compare
                 for order in (0, 1) for i in items for first, second in [(i.a, i.b) if order == 0 else (i.b, i.a)]]
        answers = self._per_template(texts, 2 * n, LABELS)  # [order * n + item][template]
        p = [mean_p_first([p_first(probs, raw) for probs, raw in a]) for a in answers]
        latency = (time.perf_counter() - start) / max(n, 1)
        th = self.hash_for("pairwise")
        return [preference(self.id, it, p[i], p[n + i], th, latency, self.tie_band,
                           mass=label_mass(answers[i] + answers[n + i]),
                           raw=" | ".join(r for _, r in answers[i] + answers[n + i] if r) or None,
                           least=self.min_label_mass)
                for i, it in enumerate(items)]
