"""Judges against people: hand-computed agreement on a tiny labelled set, the WQ loader, the length-controlled
logistic model on synthetic data, and ratings turned into pairwise decisions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from statsmodels.stats.proportion import proportion_confint

from creative_eval import rater_stats
from creative_eval.people import agreement as ag
from creative_eval.people import humans
from creative_eval.records import HumanLabel, Preference

WQ = humans.WQ_DIR
needs_wq = pytest.mark.skipif(not (WQ / humans.WQ_FILE).is_file(), reason="WQ data (../shared/data/wq) not present")


def _w(n: int) -> str:
    return " ".join(["w"] * n)


# pair: (words of A, words of B, people's choice); k1 longer chosen, k2 shorter, k3 equal length, k4 shorter,
# k5 a human tie, k6 longer chosen
TINY = {"k1": (5, 3, "A"), "k2": (2, 6, "A"), "k3": (4, 4, "B"), "k4": (7, 1, "B"), "k5": (3, 3, "tie"),
        "k6": (2, 8, "B")}


def _key(k: str) -> tuple[str, str]:
    return (f"{k}:a", f"{k}:b")


@pytest.fixture
def tiny():
    texts = {}
    for k, (na, nb, _) in TINY.items():
        texts[f"{k}:a"], texts[f"{k}:b"] = _w(na), _w(nb)
    labels = [HumanLabel(item_id=k, story_a=f"{k}:a", story_b=f"{k}:b", choice=c, rater="r")
              for k, (_, _, c) in TINY.items()]
    return texts, labels


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_accuracy_ties_invalid_and_wilson_by_hand(tiny):
    texts, labels = tiny
    # right, wrong, tie (wrong), invalid (wrong), tie vs human tie (right), right -- k6 given in the other order
    decisions = {_key("k1"): "A", _key("k2"): "B", _key("k3"): "tie", _key("k4"): None, _key("k5"): "tie",
                 ("k6:b", "k6:a"): "A"}
    (row,) = ag.pairwise_agreement_table([ag.Verdicts(judge="j", decisions=decisions)], labels, texts,
                                         trivial=False)
    assert (row["n"], row["ties"], row["invalid"], row["human_ties"], row["n_unjudged"]) == (6, 2, 1, 1, 0)
    acc, excl = row["accuracy"], row["accuracy_excl_ties"]
    assert (acc.extra["k"], acc.n, acc.estimate) == (3, 6, 0.5)
    assert (acc.ci_low, acc.ci_high) == pytest.approx(_wilson(3, 6))
    assert (acc.ci_low, acc.ci_high) == pytest.approx(proportion_confint(3, 6, method="wilson"))
    assert (excl.extra["k"], excl.n) == (2, 3)  # k1, k2, k6: judge and people both decided
    assert (excl.ci_low, excl.ci_high) == pytest.approx(_wilson(2, 3))
    assert row["label"] == ag.LABEL_CREATIVITY and row["auroc"] is None and row["position_bias"] is None
    # length split: longer chosen on k1, k6 (both right); shorter chosen on k2 (wrong), k4 (invalid); k3 equal
    longer, shorter = row["agree_when_longer_chosen"], row["agree_when_shorter_chosen"]
    assert (longer.extra["k"], longer.n, shorter.extra["k"], shorter.n, row["n_equal_length"]) == (2, 2, 0, 2, 1)
    assert (shorter.ci_low, shorter.ci_high) == pytest.approx(proportion_confint(0, 2, method="wilson"))
    assert row["length_logit"]["coef"] is None and "too few pairs" in row["length_logit"]["reason"]


def test_trivial_judges_decisions_and_rows(tiny):
    texts, labels = tiny
    pairs = [_key(k) for k in TINY]
    longer, shorter, coin = ag.trivial_verdicts(pairs, texts, seed=3)
    assert [longer.decisions[p] for p in pairs] == ["A", "B", "tie", "A", "tie", "B"]
    assert [shorter.decisions[p] for p in pairs] == ["B", "A", "tie", "B", "tie", "A"]
    assert longer.margins[_key("k1")] == pytest.approx(math.log(5 / 3))
    assert shorter.margins[_key("k1")] == pytest.approx(-math.log(5 / 3))
    assert coin.decisions == ag.trivial_verdicts(pairs, texts, seed=3)[2].decisions  # reproducible
    rows = {r["judge"]: r for r in ag.pairwise_agreement_table([], labels, texts, seed=3, n_boot=50)}
    assert set(rows) == {"longer-wins", "shorter-wins", "random (seed 3)"}
    # longer-wins: right on k1, k5 (tie = tie), k6; shorter-wins: right on k2, k4, k5
    assert rows["longer-wins"]["accuracy"].extra["k"] == 3 and rows["longer-wins"]["ties"] == 2
    assert rows["shorter-wins"]["accuracy"].extra["k"] == 3
    assert rows["longer-wins"]["agree_when_longer_chosen"].extra["k"] == 2
    assert rows["shorter-wins"]["agree_when_longer_chosen"].extra["k"] == 0
    assert rows["shorter-wins"]["agree_when_shorter_chosen"].extra["k"] == 2
    assert rows["random (seed 3)"]["ties"] == 0 and rows["random (seed 3)"]["auroc"] is None


def test_random_judge_is_a_fair_reproducible_coin():
    pairs = [(f"text {i}", f"other {i}") for i in range(2000)]
    draws = [ag.random_wins(a, b, seed=1) for a, b in pairs]
    assert draws == [ag.random_wins(a, b, seed=1) for a, b in pairs]
    assert draws != [ag.random_wins(a, b, seed=2) for a, b in pairs]
    assert 0.45 < draws.count("A") / len(draws) < 0.55


def test_auroc_of_margin_and_position_bias_by_hand(tiny):
    texts, labels = tiny
    keys = [_key(k) for k in ("k1", "k2", "k4", "k6")]  # people: A, A, B, B
    margins = dict(zip(keys, [0.3, -0.1, -0.2, 0.1]))  # A-pairs beat B-pairs in 3 of 4 comparisons
    v = ag.Verdicts(judge="llm", decisions={k: ("A" if m > 0 else "B") for k, m in margins.items()},
                    margins=margins, p_first={keys[0]: (0.8, 0.6), keys[1]: (0.9, 0.4)}, margin_kind="m")
    (row,) = ag.pairwise_agreement_table([v], labels, texts, trivial=False, n_boot=200)
    assert row["auroc"].estimate == pytest.approx(0.75) and row["auroc"].n == 4
    assert row["position_bias"].estimate == pytest.approx(0.675) and row["position_bias"].n == 2
    # k1 names the first text in both orders (inconsistent), k2 names A in both orders
    assert (row["order_consistency"].extra["k"], row["order_consistency"].n) == (1, 2)
    assert (row["n"], row["n_unjudged"]) == (4, 2)


def test_preferences_become_verdicts():
    prefs = [
        Preference(judge="llm", pair_id="i1", story_a="s1", story_b="s2", p_first_ab=0.8, p_first_ba=0.4, decision="A", consistent=True, status="ok"),
        Preference(judge="llm", pair_id="i2", story_a="s3", story_b="s4", p_first_ab=None, p_first_ba=0.3, decision=None, consistent=None, status="invalid: no label"),
        Preference(judge="probe", pair_id="i1", story_a="s1", story_b="s2", margin=1.0, decision="A", consistent=True, status="ok", template_hash="probe-L3-input+response"),
    ]
    llm, probe = ag.verdicts_from_preferences(prefs)
    assert llm.margins == {("s1", "s2"): pytest.approx(0.2)}  # (0.8 + 1 - 0.4) / 2 - 0.5
    assert llm.p_first == {("s1", "s2"): (0.8, 0.4)} and llm.decisions[("s3", "s4")] is None
    assert probe.margins == {("s1", "s2"): pytest.approx(1.0)} and probe.p_first == {}
    with pytest.raises(ValueError, match="not one of"):
        ag.Verdicts(judge="x", decisions={("a", "b"): "left"})


def test_human_choices_count_each_pair_once():
    labels = [HumanLabel(item_id="i", story_a="a", story_b="b", choice="A", rater="r1"), HumanLabel(item_id="i", story_a="b", story_b="a", choice="B", rater="r2"),
              HumanLabel(item_id="i", story_a="a", story_b="b", choice="B", rater="r3"), HumanLabel(item_id="j", story_a="c", story_b="d", choice="A", rater="r1"),
              HumanLabel(item_id="j", story_a="d", story_b="c", choice="A", rater="r2"), HumanLabel(item_id="s", story_a="a", rating=3.0)]
    assert ag.human_choices(labels) == {("a", "b"): "A", ("c", "d"): "tie"}


def test_pairwise_from_ratings():
    ratings = {"a": 7.0, "b": 5.0, "c": 5.0, "d": None}
    pairs = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("a", "missing")]
    v = ag.pairwise_from_ratings(ratings, pairs)
    assert [v.decisions[p] for p in pairs] == ["A", "tie", "B", None, None]
    assert v.margins == {("a", "b"): 2.0, ("b", "c"): 0.0, ("c", "a"): -2.0}
    wide = ag.pairwise_from_ratings(ratings, pairs, tie_band=2.0)
    assert [wide.decisions[p] for p in pairs[:3]] == ["tie", "tie", "tie"]
    with pytest.raises(ValueError, match="tie_band"):
        ag.pairwise_from_ratings(ratings, pairs, tie_band=-1)


# ---------------------------------------------------------------- the length-controlled logistic model


def _synthetic(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    length = rng.normal(0, 0.3, n)
    return rng, length


def test_logit_recovers_a_planted_effect_beyond_length():
    rng, length = _synthetic()
    margin = 0.5 * length + rng.normal(0, 1, length.size)  # correlated with length, but informative on its own
    y = rng.random(length.size) < 1 / (1 + np.exp(-(0.2 + 1.5 * margin - 2.0 * length)))
    fit = rater_stats.length_logit(y.astype(int), margin, length)
    assert fit["reason"] is None and fit["ci_low"] < 1.5 < fit["ci_high"]
    assert fit["coef"] == pytest.approx(1.5, abs=0.2) and fit["p_value"] < 1e-10
    assert fit["length_coef"] == pytest.approx(-2.0, abs=0.4)


def test_logit_gives_zero_to_noise_and_to_a_noisy_length_rule():
    rng, length = _synthetic(seed=1)
    y = (rng.random(length.size) < 1 / (1 + np.exp(3.0 * length))).astype(int)  # people prefer shorter texts
    noise = rater_stats.length_logit(y, rng.normal(0, 1, length.size), length)
    assert noise["ci_low"] < 0 < noise["ci_high"] and abs(noise["coef"]) < 0.1
    # a margin that is only length plus noise agrees with the people, yet says nothing beyond length
    rule = rater_stats.length_logit(y, -length + rng.normal(0, 0.1, length.size), length)
    assert rule["ci_low"] < 0 < rule["ci_high"] and rule["length_coef"] < -1.5


def test_logit_reports_why_it_cannot_fit():
    rng, length = _synthetic(n=200)
    y = (rng.random(200) < 0.5).astype(int)
    assert "constant" in rater_stats.length_logit(y, np.ones(200), length)["reason"]
    assert "collinear" in rater_stats.length_logit(y, 2 * length, length)["reason"]
    separated = rater_stats.length_logit(y, y - 0.5 + rng.normal(0, 0.01, 200), length)
    assert separated["coef"] is None and "separation" in separated["reason"]
    assert "one side only" in rater_stats.length_logit(np.ones(200), rng.normal(0, 1, 200), length)["reason"]


def test_a_rating_beside_length_keeps_a_planted_effect_and_gives_a_length_rule_nothing():
    rng, length = _synthetic(n=400, seed=2)
    score = 0.5 * length + rng.normal(0, 1, length.size)
    people = 3 + 0.4 * score / score.std() + 1.0 * length + rng.normal(0, 0.5, length.size)
    fit = rater_stats.rating_beside_length(people, score, length)
    assert fit["reason"] is None and fit["ci_low"] < 0.4 < fit["ci_high"] and fit["ci_low"] > 0.25
    rule = rater_stats.rating_beside_length(3 + length + rng.normal(0, 0.5, length.size),
                                            length + rng.normal(0, 0.05, length.size), length)
    assert rule["ci_low"] < 0 < rule["ci_high"]
    assert "too few" in rater_stats.rating_beside_length([1, 2], [1, 2], [1, 2])["reason"]
    assert "constant" in rater_stats.rating_beside_length(people, np.ones(400), length)["reason"]


# ---------------------------------------------------------------- ratings


def test_rating_agreement_against_mean_human_ratings():
    labels = [HumanLabel(item_id=f"s{i}#Surprise", story_a=f"s{i}", rating=float(r), rater=f"r{k}")
              for k, row in enumerate([[1, 2, 3, 5, 4], [2, 2, 4, 5, 1]]) for i, r in enumerate(row)]
    judge = {"s0": 1.0, "s1": 3.0, "s2": 2.0, "s3": 8.0, "s4": None}
    (row,) = ag.rating_agreement("j", judge, labels, n_boot=100)
    assert (row["aspect"], row["n"], row["n_missing"], row["raters_per_story"]) == ("Surprise", 4, 1, 2.0)
    expected = spearmanr([1, 3, 2, 8], [1.5, 2.0, 3.5, 5.0]).statistic
    assert row["spearman"].estimate == pytest.approx(expected) and row["spearman"].n == 4


# ---------------------------------------------------------------- WQ


def _mini_wq(root, pairs: list[tuple[str, str, str]], swap_disagrees: bool = False):
    """WQ's layout: every pair twice, sides swapped; (paragraph 1, paragraph 2, preferred "1"/"2")."""
    root.mkdir()
    records = []
    for i, (p1, p2, pref) in enumerate(pairs):
        other = {"1": "2", "2": "1"}[pref]
        records.append({"original_id": f"h-{i}", "paragraph1": p1, "paragraph2": p2, "reference_preference": pref,
                        "source": "Joan_Didion", "id": f"t-{2 * i}"})
        records.append({"original_id": f"h-{i}", "paragraph1": p2, "paragraph2": p1,
                        "reference_preference": pref if swap_disagrees else other, "source": "Joan_Didion",
                        "id": f"t-{2 * i + 1}"})
    (root / humans.WQ_FILE).write_text(json.dumps(records))
    return root


def test_wq_loader_on_a_mini_file(tmp_path):
    root = _mini_wq(tmp_path / "ok", [(f"x{i}", f"y{i}", "12"[i % 2]) for i in range(8)])
    stories, labels = humans.wq_pairs(root)
    assert len(labels) == 8 and len(stories) == 16
    assert sum(h.choice == "A" for h in labels) == 4
    texts = {s.id: s.text for s in stories}
    for i, h in enumerate(labels):
        preferred = texts[h.story_a if h.choice == "A" else h.story_b]
        assert preferred == (f"x{i}" if i % 2 == 0 else f"y{i}")
    assert stories[0].prompt == "Write a paragraph in the style of Joan Didion." and stories[0].id == "wq-h-0:p1"
    with pytest.raises(ValueError, match="prefer different paragraphs"):
        humans.wq_pairs(_mini_wq(tmp_path / "bad", [("x", "y", "1")], swap_disagrees=True))
    with pytest.raises(FileNotFoundError, match="CREATIVE_EVAL_WQ"):
        humans.wq_pairs(tmp_path / "none")


@needs_wq
def test_wq_pairs_on_the_real_file():
    stories, labels = humans.wq_pairs()
    raw = json.loads((WQ / humans.WQ_FILE).read_text(encoding="utf-8"))
    assert len(raw) == 300 and len(labels) == 150 == len({h.item_id for h in labels})
    assert len(stories) == 300 == len({s.id for s in stories})
    assert sum(h.choice == "A" for h in labels) == 75  # balanced sides
    assert labels == humans.wq_pairs()[1] and labels != humans.wq_pairs(seed=1)[1]
    texts = {s.id: s.text for s in stories}
    preferred = {h.item_id: texts[h.story_a if h.choice == "A" else h.story_b] for h in labels}
    for r in raw:  # both copies of every pair prefer the text the label prefers
        assert r["paragraph" + r["reference_preference"]] == preferred[f"wq-{r['original_id']}"]
    assert {h.rater for h in labels} == {humans.WQ_RATER} and "writing quality" in labels[0].comment
    assert all(s.prompt.startswith("Write a paragraph in the style of ") for s in stories)


@needs_wq
def test_wq_sample_is_fixed_and_balanced():
    stories, labels = humans.wq_sample(10, seed=4)
    assert len(labels) == 10 and sum(h.choice == "A" for h in labels) == 5
    assert {s.id for s in stories} == {i for h in labels for i in (h.story_a, h.story_b)}
    assert (stories, labels) == humans.wq_sample(10, seed=4)
    with pytest.raises(ValueError, match="between 1 and the 150"):
        humans.wq_sample(151)


@needs_wq
def test_trivial_judges_on_wq():
    """The experts preferred the shorter paragraph in 105 of the 150 pairs, the longer in 37; 8 are equal."""
    stories, labels = humans.wq_pairs()
    rows = {r["judge"]: r for r in ag.pairwise_agreement_table([], labels, stories, n_boot=100)}
    longer, shorter = rows["longer-wins"], rows["shorter-wins"]
    assert longer["label"] == ag.LABEL_WQ and longer["n"] == 150 and longer["ties"] == 8
    assert (longer["accuracy"].extra["k"], shorter["accuracy"].extra["k"]) == (37, 105)
    assert longer["n_equal_length"] == 8 and longer["agree_when_shorter_chosen"].n == 105
    assert longer["auroc"].estimate < 0.35 and "collinear" in longer["length_logit"]["reason"]
    coin = rows["random (seed 0)"]
    assert coin["accuracy"].ci_low < 0.5 < coin["accuracy"].ci_high
