"""Human labels: the importer (good and bad files) and the HANNA adapter on the real data."""

from __future__ import annotations

import ast
import csv
import json

import numpy as np
import pytest

from creative_eval.people import humans
from creative_eval.records import HumanLabel

HANNA = humans.HANNA_DIR
needs_hanna = pytest.mark.skipif(not (HANNA / "hanna_llm_stories.csv").is_file(), reason="HANNA data not present")


def _csv(path, rows: list[list[str]]):
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_csv_with_pairwise_and_rating_rows(tmp_path):
    path = _csv(tmp_path / "h.csv", [
        ["item_id", "story_a", "story_b", "choice", "rating", "rater"],
        ["i1", "p1:baseline", "p1:induced", "b", "", "ann"],
        ["i2", "p1:induced", "", "", "4", ""],
    ])
    pref, rating = humans.load_labels(path)
    assert pref == HumanLabel(item_id="i1", story_a="p1:baseline", story_b="p1:induced", choice="B", rater="ann")
    assert rating.rating == 4.0 and rating.story_b is None and rating.choice is None


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"item_id": "i", "story_a": "a", "story_b": "b", "choice": "tie"}) + "\n")
    (label,) = humans.load_labels(path)
    assert label.choice == "tie" and label.rater == ""


@pytest.mark.parametrize("rows, message", [
    ([["item_id", "choice"], ["i", "A"]], r"lacks column\(s\) \['story_a'\]"),
    ([["item_id", "story_a", "story_b"], ["i", "a", "b"]], "needs a 'choice' column"),
    ([["item_id", "story_a", "story_b", "choice"], ["i", "a", "b", "left"]], r"h.csv:2: choice 'left' is not one"),
    ([["item_id", "story_a", "story_b", "choice"], ["i", "a", "", "A"]], "h.csv:2: a pairwise row needs story_b"),
    ([["item_id", "story_a", "story_b", "choice"], ["i", "a", "a", "A"]], "the same story"),
    ([["item_id", "story_a", "choice", "rating"], ["i", "a", "A", "3"]], "exactly one of choice"),
    ([["item_id", "story_a", "rating"], ["i", "a", "great"]], "h.csv:2: rating 'great' is not a number"),
    ([["item_id", "story_a", "rating"], ["", "a", "3"]], "h.csv:2: item_id is empty"),
    ([["item_id", "story_a", "rating"]], "no human labels"),
])
def test_bad_csv_names_line_and_fix(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        humans.load_labels(_csv(tmp_path / "h.csv", rows))


def test_bad_jsonl_and_paths(tmp_path):
    bad = tmp_path / "h.jsonl"
    bad.write_text('{"item_id": "i", "story_a": "a", "rating": 2, "score": 3}\n')
    with pytest.raises(ValueError, match=r"h.jsonl:1: unknown field\(s\) \['score'\]"):
        humans.load_labels(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        humans.load_labels(tmp_path / "missing.csv")
    (tmp_path / "h.xlsx").write_text("x")
    with pytest.raises(ValueError, match="use .csv or .jsonl"):
        humans.load_labels(tmp_path / "h.xlsx")


@needs_hanna
def test_hanna_pairs_put_the_human_story_on_a_random_side():
    labels = humans.hanna_pairs()
    every = humans.hanna_pairs(keep_artefacts=True)
    assert len(every) == 96 * 6
    # the stories with chat artefacts (28 Llama-7b, 27 OrcaPlatypus-13b, 3 Mistral-7b) are dropped, the other
    # pairs keep their sides, and every label says it is a source label
    dropped = {h.item_id for h in every} - {h.item_id for h in labels}
    assert len(labels) == 96 * 6 - 58 and sum("Llama-7b" in i for i in dropped) == 28
    assert all(h in every for h in labels) and all("source label" in h.comment for h in labels)
    for h in labels:
        human_side = h.story_a if h.choice == "A" else h.story_b
        assert human_side.endswith(":human") and h.story_a.split(":")[0] == h.story_b.split(":")[0]
    share_a = np.mean([h.choice == "A" for h in labels])
    assert 0.4 < share_a < 0.6
    assert labels == humans.hanna_pairs()  # seeded


@needs_hanna
def test_hanna_ratings_match_the_published_means():
    labels = humans.hanna_ratings(aspects=("Surprise",))
    assert len(labels) == 96 * 3 and {h.rating for h in labels} <= {1.0, 2.0, 3.0, 4.0, 5.0}
    with (HANNA / "hanna_metric_scores_llm.csv").open(encoding="utf-8", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Model"] == "Human")
    published = ast.literal_eval(row["Surprise"])
    by_story: dict[str, list[float]] = {}
    for h in labels:
        by_story.setdefault(h.story_a, []).append(h.rating)
    means = [np.mean(by_story[f"hanna-{i:02d}:human"]) for i in range(96)]
    assert means == pytest.approx(published)
    stories = {s.id: s for s in humans.hanna_stories()}
    assert len(stories) == 96 * 7 and stories["hanna-00:human"].prompt.startswith("When you die")


def _mini_hanna(root, lengths: list[int]) -> None:
    """A five-prompt HANNA in the real files' layout."""
    root.mkdir()
    stories = [["", "Prompt", "Human", "Story", "Model"]]
    stories += [[str(i), f"prompt {i}", " ".join(["w"] * (10 * (i + 1))), f"model story {i}", "M"] for i in range(5)]
    _csv(root / "hanna_llm_stories.csv", stories)
    header = ["Model", "Surprise", "Text length ¤§"] + [f"Human {k} SU" for k in (1, 2, 3)]
    _csv(root / "hanna_metric_scores_llm.csv",
         [header, ["Human", str([3.0] * 5), str(lengths)] + [str([1, 2, 3, 4, 5])] * 3])


def test_hanna_order_is_checked(tmp_path):
    _mini_hanna(tmp_path / "good", [12, 24, 36, 48, 60])
    assert len(humans.hanna_ratings(tmp_path / "good", aspects=("Surprise",))) == 15
    _mini_hanna(tmp_path / "bad", [60, 48, 36, 24, 12])
    with pytest.raises(ValueError, match="do not line up"):
        humans.hanna_ratings(tmp_path / "bad", aspects=("Surprise",))
    with pytest.raises(ValueError, match="unknown HANNA aspect"):
        humans.hanna_ratings(tmp_path / "good", aspects=("Wit",))
    with pytest.raises(FileNotFoundError, match="hanna_llm_stories.csv"):
        humans.hanna_pairs(tmp_path)


def test_reference_labels_are_not_human_choices():
    chosen = HumanLabel(item_id="i1", story_a="p:baseline", story_b="p:induced", choice="B", rater="r1")
    source = HumanLabel(item_id="i2", story_a="h:human", story_b="h:model", choice="A", rater=humans.SOURCE_RATER)
    assert [p.pair_id for p in humans.as_preferences([chosen, source])] == ["i1"]
