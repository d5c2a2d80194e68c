"""Judges against people's labels: pairwise agreement, length-controlled agreement, rating correlation.

Pure functions over records already in memory (labels come through `humans`); nothing here loads a model or
reads a file. Every result names its n, its ties and the kind of label it was measured against, because the
labels differ in what they mean: WQ's experts judged writing quality, HANNA's pairs only say which story a
human wrote, and neither is quite "creativity".

Pairs are keyed by (story_a id, story_b id). Each distinct human pair counts once; a judge's verdict on the
same two stories in the other order is flipped to the human label's order before it is compared.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from creative_eval import rater_stats, stats
from creative_eval.people.humans import SOURCE_RATER, WQ_RATER
from creative_eval.records import HumanLabel, Preference, Rating, Story

Key = tuple[str, str]
DECISIONS = ("A", "B", "tie")
LABEL_WQ = "writing quality (WQ experts)"
LABEL_SOURCE = "source (the human-written story)"
LABEL_CREATIVITY = "creativity"
LABEL_RATINGS = "creativity ratings (HANNA crowd, 1-5)"
DECISION_MARGIN = "decision (+1 A, -1 B, 0 tie)"


def label_kind(labels: Sequence[HumanLabel]) -> str:
    """What the labels measure, from their raters: WQ experts, HANNA source labels, or people's creativity."""
    raters = {h.rater for h in labels}
    if raters == {WQ_RATER}:
        return LABEL_WQ
    if raters == {SOURCE_RATER}:
        return LABEL_SOURCE
    return LABEL_CREATIVITY


# ---------------------------------------------------------------- a judge's verdicts


@dataclass(frozen=True)
class Verdicts:
    """One judge's verdicts on pairs, keyed by (story_a id, story_b id) in the judge's own order.

    decisions: "A", "B", "tie", or None (invalid: the judge gave no usable answer).
    margins: a continuous lean toward A (> 0 favours A), e.g. debiased P(A>B) - 0.5 or a probe-score difference.
    p_first: (P(first shown is better) with A first, the same with B first), for position bias.
    """

    judge: str
    decisions: dict[Key, str | None]
    margins: dict[Key, float] = field(default_factory=dict)
    p_first: dict[Key, tuple[float, float]] = field(default_factory=dict)
    margin_kind: str = ""

    def __post_init__(self) -> None:
        bad = {k: d for k, d in self.decisions.items() if d is not None and d not in DECISIONS}
        if bad:
            raise ValueError(f"judge {self.judge!r}: decisions {dict(list(bad.items())[:3])} are not one of "
                             f"{DECISIONS} or None (invalid)")
        stray = [k for k in (*self.margins, *self.p_first) if k not in self.decisions]
        if stray:
            raise ValueError(f"judge {self.judge!r}: margins or p_first for pairs with no decision, e.g. {stray[0]}; "
                             "give a decision (None if invalid) for every pair")


LENGTH_RATER = "length (words)"  # the trivial rater: a longer story gets a higher rating
TRIVIAL_JUDGES = ("longer-wins", "shorter-wins", "random")  # name prefixes of `trivial_verdicts`


def words(text: str) -> int:
    return len(text.split())


def length_margin(a: str, b: str) -> float:
    """log(words of a / words of b): the length difference as a ratio, so 300 vs 330 words counts like 30 vs 33."""
    return math.log(max(words(a), 1) / max(words(b), 1))


def longer_wins(a: str, b: str) -> str:
    """The longer text (in words) wins; equal length is a tie."""
    m = length_margin(a, b)
    return "tie" if m == 0 else ("A" if m > 0 else "B")


def shorter_wins(a: str, b: str) -> str:
    """The shorter text (in words) wins; equal length is a tie."""
    return {"A": "B", "B": "A", "tie": "tie"}[longer_wins(a, b)]


def random_wins(a: str, b: str, seed: int = 0) -> str:
    """A coin flip seeded by the seed and both texts, so it is reproducible and independent of call order."""
    return "A" if random.Random(f"{seed}\0{a}\0{b}").random() < 0.5 else "B"


def judge_pairs(judge: str, fn: Callable[[str, str], str], pairs: Sequence[Key], texts: Mapping[str, str],
                margin: Callable[[str, str], float] | None = None, margin_kind: str = "") -> Verdicts:
    """A pairwise function of two texts (e.g. `longer_wins`) applied to story-id pairs."""
    def text(sid: str) -> str:
        if sid not in texts:
            raise ValueError(f"no text for story {sid!r}; pass the stories of every labelled pair")
        return texts[sid]

    decisions = {k: fn(text(k[0]), text(k[1])) for k in pairs}
    margins = {k: margin(text(k[0]), text(k[1])) for k in pairs} if margin else {}
    return Verdicts(judge=judge, decisions=decisions, margins=margins, margin_kind=margin_kind)


def trivial_verdicts(pairs: Sequence[Key], texts: Mapping[str, str], seed: int = 0) -> list[Verdicts]:
    """The baselines every judge must beat: longer-wins, shorter-wins (margin: ± log word ratio) and a coin."""
    return [
        judge_pairs("longer-wins", longer_wins, pairs, texts, length_margin, "log(words A / words B)"),
        judge_pairs("shorter-wins", shorter_wins, pairs, texts, lambda a, b: -length_margin(a, b),
                    "log(words B / words A)"),
        judge_pairs(f"random (seed {seed})", lambda a, b: random_wins(a, b, seed), pairs, texts),
    ]


def verdicts_from_preferences(prefs: Sequence[Preference]) -> list[Verdicts]:
    """One Verdicts per judge from its Preference records (a later record of the same pair replaces an earlier).

    An LLM judge's margin is its stored P(A>B) − 0.5 (`p_a`, averaged over both orders; computed from the two
    P(first) for records written before `p_a` was stored), and its p_first gives position bias; a probe judge's
    margin is its score difference (`margin`), with no position bias.
    """
    by_judge: dict[str, dict[str, dict]] = {}
    for p in prefs:
        parts = by_judge.setdefault(p.judge, {"decisions": {}, "margins": {}, "p_first": {}, "probe": False})
        key = (p.story_a, p.story_b)
        ok = p.status == "ok" and p.decision in DECISIONS
        parts["decisions"][key] = p.decision if ok else None
        parts["margins"].pop(key, None)
        parts["p_first"].pop(key, None)
        if ok and p.margin is not None:
            parts["probe"] = True
            parts["margins"][key] = p.margin
        elif ok and p.p_first_ab is not None and p.p_first_ba is not None:
            p_a = p.p_a if p.p_a is not None else (p.p_first_ab + 1 - p.p_first_ba) / 2
            parts["margins"][key] = p_a - 0.5
            parts["p_first"][key] = (p.p_first_ab, p.p_first_ba)
    return [Verdicts(judge=j, decisions=v["decisions"], margins=v["margins"], p_first=v["p_first"],
                     margin_kind="probe score A - B" if v["probe"] else "debiased P(A>B) - 0.5")
            for j, v in by_judge.items()]


def expected_ratings(ratings: Sequence[Rating]) -> dict[str, float | None]:
    """story id -> a rating judge's expected 0-9 rating (None where the rating was invalid)."""
    return {r.story_id: (r.expected if r.status == "ok" else None) for r in ratings}


def pairwise_from_ratings(ratings_by_story: Mapping[str, float | None], pairs: Sequence[Key], tie_band: float = 0,
                          judge: str = "ratings") -> Verdicts:
    """A rating judge's pairwise decision: the story with the higher expected rating wins; ratings within
    `tie_band` of each other tie; a missing or invalid rating makes the pair invalid (None).
    Margin: rating A - rating B."""
    if tie_band < 0:
        raise ValueError(f"tie_band must be >= 0, got {tie_band}")
    decisions: dict[Key, str | None] = {}
    margins: dict[Key, float] = {}
    for a, b in pairs:
        ra, rb = ratings_by_story.get(a), ratings_by_story.get(b)
        if ra is None or rb is None or math.isnan(ra) or math.isnan(rb):
            decisions[(a, b)] = None
            continue
        diff = ra - rb
        margins[(a, b)] = diff
        decisions[(a, b)] = "tie" if abs(diff) <= tie_band else ("A" if diff > 0 else "B")
    return Verdicts(judge=judge, decisions=decisions, margins=margins, margin_kind="rating A - rating B")


# ---------------------------------------------------------------- people's choices


def human_choices(labels: Sequence[HumanLabel]) -> dict[Key, str]:
    """One choice per distinct pair, in the order of the pair's first label. Several labels of one pair (raters,
    or the pair shown in both orders) give the majority of A and B; equally many is a tie."""
    votes: dict[Key, Counter] = {}
    for h in labels:
        if h.choice is None or not h.story_b:
            continue
        if h.choice not in DECISIONS:
            raise ValueError(f"label {h.item_id!r}: choice {h.choice!r} is not one of {DECISIONS}")
        key, flip = (h.story_a, h.story_b), False
        if key not in votes and (h.story_b, h.story_a) in votes:
            key, flip = (h.story_b, h.story_a), True
        votes.setdefault(key, Counter())[_flip(h.choice) if flip else h.choice] += 1
    return {k: ("A" if c["A"] > c["B"] else "B" if c["B"] > c["A"] else "tie") for k, c in votes.items()}


def _flip(decision: str | None) -> str | None:
    return {"A": "B", "B": "A"}.get(decision, decision) if decision else decision


@dataclass(frozen=True)
class _Judged:
    """One human pair as the judge saw it, in the human label's order."""

    key: Key
    human: str
    decision: str | None
    margin: float | None
    p_first: tuple[float, float] | None


def _aligned(v: Verdicts, choices: Mapping[Key, str]) -> list[_Judged]:
    out = []
    for key, human in choices.items():
        rev = (key[1], key[0])
        if key in v.decisions and rev in v.decisions:
            raise ValueError(f"judge {v.judge!r} has two verdicts on pair {key} (one per order); combine the "
                             "orders into one verdict (a Preference holds both)")
        if key in v.decisions:
            out.append(_Judged(key, human, v.decisions[key], v.margins.get(key), v.p_first.get(key)))
        elif rev in v.decisions:
            m = v.margins.get(rev)
            p = v.p_first.get(rev)
            out.append(_Judged(key, human, _flip(v.decisions[rev]), None if m is None else -m,
                               None if p is None else (p[1], p[0])))
    return out


# ---------------------------------------------------------------- agreement


def _accuracy(judged: Sequence[_Judged]) -> stats.Estimate:
    """Share of pairs where the judge's decision equals the people's (a tie agrees only with a tie; an invalid
    verdict never agrees), with a Wilson interval over distinct pairs."""
    return stats.proportion_ci(sum(j.decision == j.human for j in judged), len(judged), unit="pair")


def _auroc(judged: Sequence[_Judged], n_boot: int, seed: int) -> tuple[stats.Estimate | None, str | None]:
    use = [j for j in judged if j.human in ("A", "B") and j.margin is not None]
    if not use:
        return None, "no margin (the judge gives decisions only)"
    y = [int(j.human == "A") for j in use]
    if len(set(y)) < 2:
        return None, f"the people chose one side only on the {len(use)} pairs with a margin"
    est = stats.auroc_ci(y, [j.margin for j in use], n_boot=n_boot, seed=seed, unit="pair")
    return est, None


def _position_bias(judged: Sequence[_Judged]) -> stats.Estimate | None:
    """Mean P(first shown is better) over both orders; 0.5 is no position bias."""
    both = [(p[0] + p[1]) / 2 for j in judged if (p := j.p_first) is not None]
    return stats.mean_ci(both, unit="pair", bounds=(0, 1)) if both else None


def _order_consistency(judged: Sequence[_Judged]) -> stats.Estimate | None:
    """Share of pairs where both orders name the same text (the old decision rule, kept as a diagnostic)."""
    both = [(p[0] > 0.5) == (p[1] < 0.5) for j in judged if (p := j.p_first) is not None]
    return stats.proportion_ci(sum(both), len(both), unit="pair") if both else None


def length_controlled(v: Verdicts, choices: Mapping[Key, str], texts: Mapping[str, str]) -> dict[str, Any]:
    """Agreement where the people chose the longer text and where they chose the shorter (each with n and a
    Wilson CI; equal lengths and human ties left out and counted), and `length_logit` of the choice on the
    judge's margin in units of its standard deviation (its decision as +1/-1/0 where it has no margin) and
    the log word ratio."""
    judged = _aligned(v, choices)
    longer, shorter, equal, rows = [], [], 0, []
    for j in judged:
        if j.human not in ("A", "B"):
            continue
        ratio = length_margin(_text(texts, j.key[0]), _text(texts, j.key[1]))
        if ratio == 0:
            equal += 1
        else:
            (longer if (ratio > 0) == (j.human == "A") else shorter).append(j)
        m = j.margin if v.margins else {"A": 1.0, "B": -1.0, "tie": 0.0}.get(j.decision or "")
        if m is not None:
            rows.append((int(j.human == "A"), m, ratio))
    y, m, d = (list(c) for c in zip(*rows)) if rows else ([], [], [])
    sd = float(np.std(m)) if m else 0.0
    kind = v.margin_kind if v.margins else DECISION_MARGIN
    return {
        "agree_when_longer_chosen": _accuracy(longer),
        "agree_when_shorter_chosen": _accuracy(shorter),
        "n_equal_length": equal,
        # per SD of the margin, so judges with margins on different scales have comparable coefficients
        "length_logit": {**rater_stats.length_logit(y, [x / sd for x in m] if sd > 0 else m, d),
                         "margin": f"{kind}, per SD ({sd:.3g})" if sd > 0 else kind},
    }


def _text(texts: Mapping[str, str], sid: str) -> str:
    if sid not in texts:
        raise ValueError(f"no text for story {sid!r}; pass the stories of every labelled pair")
    return texts[sid]


def _texts(stories: Sequence[Story] | Mapping[str, str]) -> Mapping[str, str]:
    return stories if isinstance(stories, Mapping) else {s.id: s.text for s in stories}


def agreement_row(v: Verdicts, choices: Mapping[Key, str], texts: Mapping[str, str], label: str, *,
                  n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """One judge against the people's choices on the distinct pairs it judged (see pairwise_agreement_table)."""
    judged = _aligned(v, choices)
    decided = [j for j in judged if j.decision in ("A", "B") and j.human in ("A", "B")]
    auroc, auroc_note = _auroc(judged, n_boot, seed)
    return {
        "judge": v.judge,
        "label": label,
        "n": len(judged),
        "n_unjudged": len(choices) - len(judged),
        "ties": sum(j.decision == "tie" for j in judged),
        "invalid": sum(j.decision is None for j in judged),
        "human_ties": sum(j.human == "tie" for j in judged),
        "accuracy": _accuracy(judged),
        "accuracy_excl_ties": _accuracy(decided),
        "auroc": auroc,
        "auroc_note": auroc_note,
        "margin": v.margin_kind if v.margins else None,
        "position_bias": _position_bias(judged),
        "order_consistency": _order_consistency(judged),
        **length_controlled(v, choices, texts),
    }


def pairwise_agreement_table(verdicts: Sequence[Verdicts], labels: Sequence[HumanLabel],
                             stories: Sequence[Story] | Mapping[str, str], *, label: str | None = None,
                             trivial: bool = True, seed: int = 0, n_boot: int = 2000) -> list[dict[str, Any]]:
    """Each judge's agreement with the people over distinct pairs, then the trivial judges' (longer-wins,
    shorter-wins, random) on the same pairs.

    Per row: n (pairs judged), ties, invalid and human ties; accuracy (a judge's tie is wrong unless the people
    tied, an invalid verdict is wrong) and accuracy excluding ties and invalid verdicts, each with a Wilson 95%
    CI; AUROC of the margin (people's A = positive) where the judge has one; position bias (mean P(first) over
    both orders) where given; and the length-controlled numbers of `length_controlled`. `label` defaults to
    what the labels' raters measure (`label_kind`).
    """
    choices = human_choices(labels)
    if not choices:
        raise ValueError("no pairwise human labels (choice with story_b) among the labels")
    texts = _texts(stories)
    label = label or label_kind(labels)
    judges = list(verdicts) + (trivial_verdicts(list(choices), texts, seed) if trivial else [])
    return [agreement_row(v, choices, texts, label, n_boot=n_boot, seed=seed) for v in judges]


# ---------------------------------------------------------------- ratings


def human_mean_ratings(labels: Sequence[HumanLabel]) -> dict[str, dict[str, tuple[float, int]]]:
    """aspect -> story id -> (mean rating over raters, number of ratings). The aspect is the part of item_id after
    '#' (as HANNA's labels name it), else the label's comment, else "rating"."""
    sums: dict[str, dict[str, list[float]]] = {}
    for h in labels:
        if h.rating is None:
            continue
        aspect = h.item_id.split("#", 1)[1] if "#" in h.item_id else (h.comment or "rating")
        sums.setdefault(aspect, {}).setdefault(h.story_a, []).append(h.rating)
    return {a: {s: (float(np.mean(r)), len(r)) for s, r in by.items()} for a, by in sums.items()}


def rating_agreement(judge: str, ratings_by_story: Mapping[str, float | None], labels: Sequence[HumanLabel], *,
                     label: str = LABEL_RATINGS, n_boot: int = 2000, seed: int = 0,
                     texts: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Spearman correlation (bootstrap CI over stories) between a rating judge's scores and the people's mean
    rating, one row per aspect; stories the judge did not rate validly are dropped and counted. With the stories'
    `texts`, also the score's coefficient beside log length (`rater_stats.rating_beside_length`)."""
    means = human_mean_ratings(labels)
    if not means:
        raise ValueError("no human ratings among the labels (e.g. pass humans.hanna_ratings())")
    rows = []
    for aspect, by_story in means.items():
        kept = [s for s in by_story if (r := ratings_by_story.get(s)) is not None and not math.isnan(r)]
        scores, people = [ratings_by_story[s] for s in kept], [by_story[s][0] for s in kept]
        est = stats.correlation_ci(scores, people, n_boot=n_boot, seed=seed) if kept else None
        row = {"judge": judge, "label": label, "aspect": aspect, "n": len(kept), "n_missing": len(by_story) - len(kept),
               "raters_per_story": float(np.mean([k for _, k in by_story.values()])), "spearman": est}
        if texts is not None:
            row["length_ols"] = rater_stats.rating_beside_length(people, scores,
                                                                 [math.log(max(words(texts[s]), 1)) for s in kept])
        rows.append(row)
    return rows


# ---------------------------------------------------------------- output
