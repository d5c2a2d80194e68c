"""The probe as a judge: rating = probe score (optionally mapped to 0-9), pairwise = higher score wins.

The optional 0-9 mapping is linear between two probe scores `lo` -> 0 and `hi` -> 9 (clipped), e.g. the
5th and 95th percentiles of probe scores on the validation split; without it `expected` stays empty and
`score` holds the cosine. A pairwise `margin` is score(A) - score(B); margins within `tie_band` are a tie."""

from __future__ import annotations

import time
from typing import Sequence

from ..direction import Direction
from ..probe import Probe, ProbeScore
from ..records import Preference, Rating, Story
from .base import PairItem


class ProbeJudge:
    def __init__(self, judge_id: str, model, tokenizer, direction: Direction, *, tie_band: float = 0.0,
                 scale: tuple[float, float] | None = None, tokens: str = "input+response", batch_size: int = 8,
                 max_input_tokens: int = 2048):
        self.id, self.tie_band, self.scale = judge_id, tie_band, scale
        self.probe = Probe(model, tokenizer, direction, tokens=tokens, batch_size=batch_size,
                           max_length=max_input_tokens)
        self.template_hash = f"probe-L{direction.layer}-{tokens}"

    def hash_for(self, mode: str) -> str:
        """The probe has no phrasing: the same hash (layer and counted tokens) in both modes."""
        return self.template_hash

    def scores(self, stories: Sequence[Story]) -> list[ProbeScore]:
        return self.probe.score([s.prompt for s in stories], [s.text for s in stories])

    def _mapped(self, score: float) -> float | None:
        if self.scale is None:
            return None
        lo, hi = self.scale
        return min(9.0, max(0.0, 9.0 * (score - lo) / (hi - lo)))

    def rate(self, items: Sequence[Story]) -> list[Rating]:
        start = time.perf_counter()
        scores = self.scores(items)
        latency = (time.perf_counter() - start) / max(len(items), 1)
        out = []
        for s, p in zip(items, scores):
            mapped = self._mapped(p.score)
            out.append(Rating(judge=self.id, story_id=s.id, score=p.score, expected=mapped,
                              argmax=None if mapped is None else round(mapped), template_hash=self.template_hash,
                              latency_s=latency, truncated_tokens=p.truncated_tokens))
        return out

    def compare(self, items: Sequence[PairItem]) -> list[Preference]:
        start = time.perf_counter()
        scores = self.scores([i.a for i in items] + [i.b for i in items])
        latency = (time.perf_counter() - start) / max(len(items), 1)
        n, out = len(items), []
        for k, it in enumerate(items):
            margin = scores[k].score - scores[n + k].score
            decision = "tie" if abs(margin) <= self.tie_band else ("A" if margin > 0 else "B")
            out.append(Preference(judge=self.id, pair_id=it.id, story_a=it.a.id, story_b=it.b.id, margin=margin,
                                  decision=decision, consistent=True, template_hash=self.template_hash,
                                  latency_s=latency,
                                  truncated_tokens=scores[k].truncated_tokens + scores[n + k].truncated_tokens))
        return out
