"""The hard-negative set: both sides of a pair share their words, so words alone cannot tell them apart."""

from __future__ import annotations

import re

import pytest

from creative_eval import pairs
from creative_eval.evals.sweeps import lexical_baseline

MIN_JACCARD = 0.5  # every hard pair meets it by construction; every vocabulary-swapped pair falls below it
MAX_LEXICAL_AUROC = 0.65


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def jaccard(pair) -> float:
    a, b = words(pair.creative), words(pair.uncreative)
    return len(a & b) / len(a | b)


@pytest.fixture(scope="module")
def hard():
    return pairs.load_pairs(pairs.HARD)


def test_hard_set_loads_by_name_and_by_path(hard):
    assert len(hard) >= 60
    assert pairs.load_pairs(pairs.path_of(pairs.HARD)) == hard
    assert {p.split for p in hard} == {"hard"} and {p.kind for p in hard} == {"hard"}
    assert all(p.form for p in hard) and len({p.form for p in hard}) >= 10
    assert all(p.creative != p.uncreative for p in hard)


def test_each_hard_pair_shares_its_words(hard):
    scores = [jaccard(p) for p in hard]
    assert min(scores) >= MIN_JACCARD, [p.id for p, s in zip(hard, scores) if s < MIN_JACCARD]
    assert sum(scores) / len(scores) >= 0.75
    # the threshold separates: the vocabulary-swapped robustness pairs all fail it
    assert all(jaccard(p) < MIN_JACCARD for p in pairs.load_pairs(pairs.ROBUSTNESS))


def test_words_alone_cannot_separate_the_hard_set(hard):
    validation = pairs.load_pairs(pairs.SHIPPED, "validation")
    test = pairs.load_pairs(pairs.SHIPPED, "test")
    out = lexical_baseline(validation, test, hard)  # the third set is scored as `robust_auroc`
    assert out["robust_auroc"] <= MAX_LEXICAL_AUROC
    assert out["test_auroc"] > 0.8  # the same baseline still reads the ordinary test pairs
