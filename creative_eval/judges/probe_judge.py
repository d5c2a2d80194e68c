"""The probe as a judge: rating = probe score (optionally mapped to 0-9), pairwise = higher score wins.

The optional 0-9 mapping is linear between two probe scores `lo` -> 0 and `hi` -> 9 (clipped), e.g. the
5th and 95th percentiles of probe scores on the validation split; without it `expected` is the raw score.
Scores within `tie_band` of each other are a tie."""

from __future__ import annotations

import time
from typing import Sequence

from ..direction import Direction
from ..probe import Probe
from ..records import Preference, Rating, Story
from .base import PairItem, Templates


class ProbeJudge:
    def __init__(self, judge_id: str, model, tokenizer, direction: Direction, *, tie_band: float = 0.0,
                 scale: tuple[float, float] | None = None, tokens: str = "input+response", batch_size: int = 8):
        self.id, self.tie_band, self.scale = judge_id, tie_band, scale
        self.probe = Probe(model, tokenizer, direction, tokens=tokens, batch_size=batch_size)
        self.template_hash = f"probe-L{direction.layer}-{tokens}"
        self.templates = Templates()

    def _scores(self, stories: Sequence[Story]) -> list[float]:
        return [p.score for p in self.probe.score([s.prompt for s in stories], [s.text for s in stories])]

    def _mapped(self, score: float) -> float:
        if self.scale is None:
            return score
        lo, hi = self.scale
        return min(9.0, max(0.0, 9.0 * (score - lo) / (hi - lo)))

    def rate(self, items: Sequence[Story]) -> list[Rating]:
        start = time.perf_counter()
        scores = self._scores(items)
        latency = (time.perf_counter() - start) / max(len(items), 1)
        return [Rating(self.id, s.id, self._mapped(x), round(self._mapped(x)) if self.scale else None, None, "ok",
                       None, self.template_hash, latency) for s, x in zip(items, scores)]

    def compare(self, items: Sequence[PairItem]) -> list[Preference]:
        start = time.perf_counter()
        scores = self._scores([i.a for i in items] + [i.b for i in items])
        latency = (time.perf_counter() - start) / max(len(items), 1)
        n, out = len(items), []
        for k, it in enumerate(items):
            diff = scores[k] - scores[n + k]
            decision = "tie" if abs(diff) <= self.tie_band else ("A" if diff > 0 else "B")
            out.append(Preference(self.id, it.id, it.a.id, it.b.id, scores[k], scores[n + k], decision, True, "ok",
                                  self.template_hash, latency))
        return out
