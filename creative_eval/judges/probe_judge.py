"""The probe as a judge: rating = probe score (optionally mapped to 0-9), pairwise = higher score wins.

The optional 0-9 mapping is linear between two probe scores `lo` -> 0 and `hi` -> 9 (clipped), e.g. the
5th and 95th percentiles of probe scores on the validation split; without it `expected` stays empty and
`score` holds the cosine. A pairwise `margin` is score(A) - score(B); margins within `tie_band` are a tie.

Two stories written for different prompts are compared on their response tokens only: with the prompt's
tokens counted, the prompt that asked for creativity would decide the comparison rather than the text. Pairs
of one prompt use the preset's `tokens` (default `input+response`, the paper's setting). A direction fitted
on people's pairs (source `humans`) refuses to judge the stories it was fitted on."""

from __future__ import annotations

import time
from typing import Sequence

from creative_eval.direction import Direction
from creative_eval.judges.base import PairItem
from creative_eval.probe import Probe, ProbeScore
from creative_eval.records import Preference, Rating, Story


class ProbeJudge:
    progress: bool = False  # a bar over the texts of one call, as `Judge.progress`

    def __init__(self, judge_id: str, model, tokenizer, direction: Direction, *, tie_band: float = 0.0,
                 scale: tuple[float, float] | None = None, tokens: str = "input+response", batch_size: int = 8,
                 max_input_tokens: int = 2048):
        self.id, self.tie_band, self.scale, self.direction = judge_id, tie_band, scale, direction
        self.probe = Probe(model, tokenizer, direction, tokens=tokens, batch_size=batch_size,
                           max_length=max_input_tokens)
        self.response_probe = Probe(model, tokenizer, direction, tokens="response", batch_size=batch_size,
                                    max_length=max_input_tokens)
        source = "" if direction.source == "prompts" else f"-{direction.source}"
        if direction.meta.get("length_control", "none") != "none":  # another fit: stored judgements are not reused
            source += f"-length-{direction.meta['length_control']}"
        if "held_out_sha256" in direction.meta:  # fitted without some pairs: another fit again
            source += f"-out-{direction.meta['held_out_sha256']}"
        self.template_hash = f"probe-L{direction.layer}-{tokens}-crossprompt:response{source}"

    def hash_for(self, mode: str) -> str:
        """The probe has no phrasing: the same hash (layer and counted tokens) in both modes."""
        return self.template_hash

    def _check_unseen(self, stories: Sequence[Story]) -> None:
        seen = sorted({s.prompt_id for s in stories} & self.direction.trained_on)
        if seen:
            raise ValueError(f"the probe's direction (source {self.direction.source}) was fitted on {len(seen)} of "
                             f"these stories' pairs, e.g. {seen[0]!r}; its agreement there would be its training fit. "
                             "Use a direction fitted elsewhere (e.g. `direction: stories`) for these stories")

    def scores(self, stories: Sequence[Story], probe: Probe | None = None) -> list[ProbeScore]:
        self._check_unseen(stories)
        return (probe or self.probe).score([s.prompt for s in stories], [s.text for s in stories], self.progress)

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
        same = [it for it in items if it.a.prompt == it.b.prompt]
        cross = [it for it in items if it.a.prompt != it.b.prompt]
        margins = {}
        for group, probe in ((same, self.probe), (cross, self.response_probe)):
            if group:
                s = self.scores([i.a for i in group] + [i.b for i in group], probe)
                margins.update({id(it): (s[k].score - s[len(group) + k].score,
                                         s[k].truncated_tokens + s[len(group) + k].truncated_tokens)
                                for k, it in enumerate(group)})
        latency = (time.perf_counter() - start) / max(len(items), 1)
        out = []
        for it in items:
            margin, cut = margins[id(it)]
            decision = "tie" if abs(margin) <= self.tie_band else ("A" if margin > 0 else "B")
            out.append(Preference(judge=self.id, pair_id=it.id, story_a=it.a.id, story_b=it.b.id, margin=margin,
                                  decision=decision, consistent=True, template_hash=self.template_hash,
                                  latency_s=latency,
                                  truncated_tokens=cut))
        return out
