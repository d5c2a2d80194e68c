"""Judges against people end to end without a model: the template split, choosing on one half and reporting on
the other, the agreement suite on a hand-labelled set, the lm-eval agreement task's arithmetic, and the source
label kept out of agreement with people."""

from __future__ import annotations

import math

import pytest

from creative_eval.people import agreement, humans
from creative_eval.evals import selection, suite
from creative_eval.judges import base
from creative_eval.records import HumanLabel, Preference, Rating, Story, write_jsonl


def test_template_split_halves_never_overlap_and_cover_every_pair():
    keys = [(f"s{i}:a", f"s{i}:b") for i in range(41)] * 2  # duplicates count once
    one, two = selection.split_halves(keys, seed=3)
    assert not set(one) & set(two) and set(one) | set(two) == set(keys) and (len(one), len(two)) == (20, 21)
    assert (one, two) == selection.split_halves(list(reversed(keys)), seed=3)  # seeded, order-free
    assert one != selection.split_halves(keys, seed=4)[0]


def test_choice_is_reported_only_on_the_other_half():
    """X is right exactly on half 1, Y exactly on half 2: each fold picks the one that is right where it
    chooses and must then report it wrong on every held-out pair."""
    keys = [(f"s{i}:a", f"s{i}:b") for i in range(10)]
    choices = {k: "A" for k in keys}
    texts = {s: "w" for k in keys for s in k}
    half1, half2 = selection.split_halves(keys, seed=0)
    x = agreement.Verdicts(judge="X", decisions={k: "A" if k in half1 else "B" for k in keys})
    y = agreement.Verdicts(judge="Y", decisions={k: "A" if k in half2 else "B" for k in keys})
    result = selection.choose([x, y], choices, texts, "test", seed=0)
    assert [f["chosen"] for f in result["folds"]] == ["X", "Y"]
    assert [f["choose_accuracy"] for f in result["folds"]] == [{"X": 1.0, "Y": 0.0}, {"X": 0.0, "Y": 1.0}]
    assert [f["held_out"]["accuracy"].estimate for f in result["folds"]] == [0.0, 0.0]
    assert [f["held_out"]["n"] for f in result["folds"]] == [5, 5]
    pooled = result["pooled_held_out"]
    assert pooled["accuracy"].estimate == 0.0 and pooled["n"] == 10 and pooled["judge"] == "X / Y"
    # the pooled verdicts are X's on half 2 and Y's on half 1: wrong everywhere, as each fold reported
    assert pooled["agree_when_longer_chosen"].n == 0 and pooled["n_unjudged"] == 0


class LengthJudge(base.Judge):
    """Names the first text 0.87 of the time plus 0.01 per word it is longer (so, debiased, the longer text
    wins), and rates a text by its word count (capped at 9). Counts what it is asked."""

    asked = 0

    def _ask(self, texts, labels):
        self.asked += len(texts)
        out = []
        for t in texts:
            if len(labels) == 2:
                first, second = (len(t.split("Story 1: ")[1].split("\n\n")[0].split()),
                                 len(t.split("Story 2: ")[1].split("\n\n")[0].split()))
                p = 0.87 + 0.01 * (first - second)
                out.append(([p, 1 - p], None))
            else:
                n = min(9, len(t.split("Story: ")[1].split("\n\n")[0].split()))
                out.append(([float(k == n) for k in range(10)], None))
        return out


# (words of A, words of B, the people's choice): the longer text chosen in k1, k4; the shorter in k2, k3, k5
HAND = {"k1": (5, 3, "A"), "k2": (2, 6, "A"), "k3": (7, 1, "B"), "k4": (2, 8, "B"), "k5": (4, 3, "B")}


@pytest.fixture
def hand_set(tmp_path):
    stories = [Story(prompt_id=k, condition=side, prompt="Write.", text=" ".join(["w"] * n))
               for k, (na, nb, _) in HAND.items() for side, n in (("a", na), ("b", nb))]
    labels = [HumanLabel(item_id=k, story_a=f"{k}:a", story_b=f"{k}:b", choice=c, rater="r1")
              for k, (_, _, c) in HAND.items()]
    write_jsonl(tmp_path / "stories.jsonl", stories)
    write_jsonl(tmp_path / "labels.jsonl", labels)
    return suite.human_set(str(tmp_path / "labels.jsonl"), stories_file=str(tmp_path / "stories.jsonl"))


def test_suite_on_a_hand_labelled_set_equals_hand_counts(hand_set, tmp_path):
    judge = LengthJudge("len")
    prefs, ratings = suite.collect(judge, hand_set, tmp_path / "out")
    assert judge.asked == 2 * 5 + 10  # two orders per pair, one rating per story
    assert [p.decision for p in prefs] == ["A", "B", "A", "B", "A"]  # the longer text, debiased
    assert all(p.consistent is False and p.p_first_ab > 0.5 and p.p_first_ba > 0.5 for p in prefs[1:4])
    again = LengthJudge("len")
    assert suite.collect(again, hand_set, tmp_path / "out") == (prefs, ratings) and again.asked == 0  # resumed
    result = suite.table(hand_set, suite.verdicts("len", prefs, ratings, hand_set), {"len": ratings}, n_boot=50)
    rows = {r["judge"]: r for r in result["pairwise"]}
    assert list(rows) == ["len", "len (ratings)", "longer-wins", "shorter-wins", "random (seed 0)"]
    # right on k1 and k4 (longer chosen), wrong on k2, k3, k5: 2 of 5, like longer-wins
    for name in ("len", "len (ratings)", "longer-wins"):
        acc = rows[name]["accuracy"]
        assert (acc.extra["k"], acc.n) == (2, 5), name
        assert rows[name]["agree_when_longer_chosen"].estimate == 1.0
        assert rows[name]["agree_when_shorter_chosen"].estimate == 0.0
    assert rows["shorter-wins"]["accuracy"].extra["k"] == 3
    # mean P(first) over both orders of each pair: 0.87 + 0.01 * (d - d) / 2 = 0.87 exactly
    assert rows["len"]["position_bias"].estimate == pytest.approx(0.87)
    assert rows["len"]["ties"] == 0 and rows["len (ratings)"]["ties"] == 0
    # a judge whose pairwise verdict is already its two scores compared (the probe) gets no second row
    assert [v.judge for v in suite.verdicts("len", prefs, ratings, hand_set, from_ratings=False)] == ["len"]


def test_label_file_needs_stories_and_source_labels_are_refused(tmp_path):
    labels = tmp_path / "l.jsonl"
    write_jsonl(labels, [HumanLabel(item_id="i", story_a="p:a", story_b="p:b", choice="A", rater="r")])
    with pytest.raises(ValueError, match="--stories"):
        suite.human_set(str(labels))
    write_jsonl(labels, [HumanLabel(item_id="i", story_a="p:a", story_b="p:b", choice="A", rater=humans.SOURCE_RATER)])
    write_jsonl(tmp_path / "s.jsonl", [Story(prompt_id="p", condition=c, prompt="x", text=c) for c in "ab"])
    with pytest.raises(ValueError, match="source labels"):
        suite.human_set(str(labels), stories_file=str(tmp_path / "s.jsonl"))


def test_agreement_task_decides_on_the_debiased_probability():
    from creative_eval.harness.agreement_task import AgreementTask

    def lls(p_ab: float, p_ba: float) -> list[tuple[float, bool]]:
        return [(math.log(p_ab), True), (math.log(1 - p_ab), False), (math.log(p_ba), True), (math.log(1 - p_ba), False)]

    doc = {"a": "one two three", "b": "one", "choice": "B", "prompt": "Write."}
    tie = AgreementTask.process_results(None, doc, lls(0.87, 0.87))
    assert tie["tie_rate"] == 1.0 and tie["agreement"] == 0.0 and tie["position_bias"] == pytest.approx(0.87)
    b = AgreementTask.process_results(None, doc, lls(0.86, 0.88))  # B named first more often than A
    assert b["agreement"] == 1.0 and b["consistency"] == 0.0 and b["shorter_wins_agreement"] == 1.0
    assert b["longer_wins_agreement"] == 0.0


def test_source_labels_stay_out_of_agreement_with_people():
    from creative_eval.report import summarize

    stories = [Story(prompt_id="h", condition=c, prompt="x", text=t) for c, t in (("human", "a b c"), ("llm", "a"))]
    pref = Preference(judge="j", pair_id="p", story_a="h:human", story_b="h:llm", decision="A", consistent=True,
                      p_first_ab=0.9, p_first_ba=0.2, p_a=0.85)
    source = HumanLabel(item_id="h", story_a="h:human", story_b="h:llm", choice="A", rater=humans.SOURCE_RATER)
    s = summarize(stories, [], [pref], {}, [source], n_boot=50)
    assert s["people"] is None and not s["humans"]["judges"]
    assert s["source_label"]["judges"]["j"]["n_labels"] == 1
    person = HumanLabel(item_id="h", story_a="h:human", story_b="h:llm", choice="B", rater="expert")
    s = summarize(stories, [], [pref], {}, [source, person], n_boot=50)
    rows = {r["judge"]: r for r in s["people"]["rows"]}
    assert rows["j"]["accuracy"]["estimate"] == 0.0 and rows["shorter-wins"]["accuracy"]["estimate"] == 1.0
    assert s["pairwise"]["j"]["position_bias"]["estimate"] == pytest.approx(0.55)


def test_creative_pairwise_reports_position_bias_beside_the_win():
    from creative_eval.harness.tasks import _pairwise_metrics, ci95_low

    m = _pairwise_metrics({"decision": "A", "consistent": False, "p_first_ab": 0.9, "p_first_ba": 0.8, "status": "ok"})
    assert (m["win_rate"], m["tie_rate"], m["consistency"]) == (1.0, 0.0, 0.0)
    assert m["position_bias"] == pytest.approx(0.85)
    probe = _pairwise_metrics({"decision": "B", "consistent": True, "margin": -0.1, "status": "ok"})
    assert math.isnan(probe["position_bias"]) and math.isnan(ci95_low([probe["position_bias"]]))


@pytest.mark.skipif(not (humans.WQ_DIR / humans.WQ_FILE).is_file(), reason="WQ data (../shared/data/wq) not present")
def test_agreement_task_builds_four_requests_per_pair_in_both_orders(monkeypatch):
    from lm_eval.tasks._yaml_loader import load_yaml

    from creative_eval.harness import autoload
    from creative_eval.harness.model import SteeredHF

    monkeypatch.setattr(SteeredHF, "live", None)
    config = load_yaml(autoload.task_dir() / "creative_agreement.yaml")
    task = config["class"](config=config)
    docs = list(task.test_docs())
    assert len(docs) == 150 and sum(d["choice"] == "A" for d in docs[:20]) == 10  # --limit 20 is balanced
    reqs = task.construct_requests(docs[0], "", metadata=("creative_agreement", 0, 1))
    assert [r.idx for r in reqs] == [0, 1, 2, 3] and [r.arguments[1] for r in reqs] == [" 1", " 2", " 1", " 2"]
    ab, ba = reqs[0].arguments[0], reqs[2].arguments[0]
    assert ab.index(docs[0]["a"]) < ab.index(docs[0]["b"]) and ba.index(docs[0]["b"]) < ba.index(docs[0]["a"])


def test_pooled_held_out_margins_are_put_on_one_scale():
    """A rating-difference template and a probability template chosen in different folds pool in SD units."""
    keys = [(f"s{i}:a", f"s{i}:b") for i in range(4)]
    v = agreement.Verdicts(judge="X", decisions={k: "A" for k in keys},
                           margins=dict(zip(keys, [200.0, -200.0, 7.0, 9.0])))
    part = selection._restricted(v, keys[:2])
    assert part.margins == {keys[0]: 1.0, keys[1]: -1.0} and set(part.decisions) == set(keys[:2])


def test_rating_rows_put_story_length_beside_the_judges():
    """People rate longer stories higher here: the length rater correlates 1, a judge rating the reverse -1."""
    stories = [Story(prompt_id=f"s{n}", condition="human", prompt="x", text=" ".join(["w"] * n)) for n in range(1, 6)]
    labels = [HumanLabel(item_id=f"s{n}#Surprise", story_a=s.id, rating=float(n), rater="r1")
              for n, s in enumerate(stories, 1)]
    hs = suite.HumanSet(name="hand", stories=stories, labels=labels, label="test")
    reverse = [Rating(judge="j", story_id=s.id, expected=float(9 - n)) for n, s in enumerate(stories, 1)]
    rows = {r["judge"]: r["spearman"].estimate for r in suite.table(hs, [], {"j": reverse}, n_boot=50)["ratings"]}
    assert rows == {"j": pytest.approx(-1.0), agreement.LENGTH_RATER: pytest.approx(1.0)}
