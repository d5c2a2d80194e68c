"""Annotation pack: blinding of the page, seeded order, and every way an import can go wrong."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from creative_eval.people import annotate, humans
from creative_eval import cli
from creative_eval.people.humans import load_labels
from creative_eval.records import HumanLabel, Story, write_jsonl

SETTINGS = {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "alpha": 0.5, "direction_file": "dir-l8.safetensors"}
NEGATED, CREATIVE = "Write a note about a lighthouse.", "Write a strange, surprising tale about a lighthouse."


def make_stories(path: Path, n: int = 4, conditions=("baseline", "induced", "creative")) -> Path:
    """Stories whose texts say nothing of their condition, so any leak in the page is structural."""
    stories = [Story(prompt_id=f"p{i}", condition=c, prompt=CREATIVE if c == "creative" else NEGATED,
                     text=f"Tale {i}.{j}: the keeper counts gulls & <waves>.", settings=SETTINGS)
               for i in range(n) for j, c in enumerate(conditions)]
    return write_jsonl(path, stories)


def page_data(pack: Path) -> dict:
    text = (pack / annotate.PAGE_FILE).read_text(encoding="utf-8")
    return json.loads(re.search(r"const PACK = (.*);\n", text).group(1))


def answers_file(path: Path, key: annotate.Key, choices: dict[str, str], rater: str = "r1", **head) -> Path:
    data = {"format": annotate.RESULTS_FORMAT, "pack_id": key.pack_id, "key_digest": key.digest(), "rater": rater,
            "answers": [{"item": i, "choice": c, "comment": ""} for i, c in choices.items()]} | head
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def pack(tmp_path: Path) -> tuple[Path, annotate.Key]:
    out = tmp_path / "pack"
    return out, annotate.export(make_stories(tmp_path / "stories.jsonl"), out, seed=3)


def test_page_leaks_no_condition_model_or_story_id(pack):
    out, key = pack
    html = (out / annotate.PAGE_FILE).read_text(encoding="utf-8")
    for secret in ["baseline", "induced", "SmolLM", "safetensors", "alpha", "p0:", key.salt, "stories_hash",
                   *{i.story_a for i in key.items}]:
        assert secret not in html, secret
    empty = annotate.page(key, [])
    assert html.count("creative") == empty.count("creative")  # the question says "creative", no story data does
    data = page_data(out)
    assert all(set(item) == {"id", "text_a", "text_b"} for item in data["items"])  # prompts differ: hidden
    assert data["key_digest"] == key.digest() and len(data["items"]) == len(key.items) == 12
    assert not (out / annotate.PAGE_FILE).read_text().count("<waves>")  # story text cannot open a tag


def test_shared_prompt_is_shown_and_only_requested_pairs(tmp_path):
    key = annotate.export(make_stories(tmp_path / "s.jsonl"), tmp_path / "pack", compare=[("induced", "baseline")],
                          seed=0)
    items = page_data(tmp_path / "pack")["items"]
    assert len(key.items) == 4 and all(item["prompt"] == NEGATED for item in items)
    assert {frozenset((i.story_a[-8:], i.story_b[-8:])) for i in key.items} == {frozenset((":induced", "baseline"))}


def test_order_and_sides_are_seeded_and_shuffled(tmp_path):
    stories = make_stories(tmp_path / "s.jsonl", n=20, conditions=("baseline", "induced"))
    k1 = annotate.export(stories, tmp_path / "a", seed=7)
    k2 = annotate.export(stories, tmp_path / "b", seed=7)
    k3 = annotate.export(stories, tmp_path / "c", seed=8)
    assert k1.items == k2.items and k1.items != k3.items and k1.pack_id != k2.pack_id
    induced_first = sum(i.story_a.endswith(":induced") for i in k1.items)
    assert 0 < induced_first < 20
    assert [i.story_a.split(":")[0] for i in k1.items] != [f"p{i}" for i in range(20)]


def test_export_refuses_bad_input_and_existing_pack(tmp_path, pack):
    out, _ = pack
    with pytest.raises(annotate.AnnotationError, match="already there"):
        annotate.export(make_stories(tmp_path / "s.jsonl"), out)
    with pytest.raises(annotate.AnnotationError, match="two stories"):
        annotate.export(make_stories(tmp_path / "one.jsonl", conditions=("baseline",)), tmp_path / "x")
    dup = make_stories(tmp_path / "dup.jsonl")
    dup.write_text(dup.read_text() + dup.read_text().splitlines()[0] + "\n")
    with pytest.raises(annotate.AnnotationError, match="p0:baseline appears twice"):
        annotate.export(dup, tmp_path / "y")


def test_import_unblinds_into_canonical_labels(tmp_path, pack):
    out, key = pack
    choices = {i.id: c for i, c in zip(key.items, ["A", "B", "tie"] * 4)}
    labels = annotate.import_results(out, [answers_file(tmp_path / "r1.json", key, choices)], tmp_path / "h.jsonl")
    assert len(labels) == 12 and load_labels(tmp_path / "h.jsonl") == labels
    for item, label in zip(key.items, labels):
        shown = choices[item.id]
        winner = {"A": item.story_a, "B": item.story_b}.get(shown)
        assert {label.story_a, label.story_b} == {item.story_a, item.story_b}
        assert label.choice == ("tie" if winner is None else "A" if winner == label.story_a else "B")
        rank = [annotate._condition_rank(s.split(":")[1]) for s in (label.story_a, label.story_b)]
        assert rank[0] < rank[1] and label.item_id == f"{label.story_a}-vs-{label.story_b.split(':')[1]}"
    flipped = [i for i in key.items if annotate.canonical(i.story_a, i.story_b, "A")[2] == "B"]
    assert flipped, "the seeded sides should put some later condition first"


def test_import_reads_csv_like_json(tmp_path, pack):
    out, key = pack
    rows = [{"format": annotate.RESULTS_FORMAT, "pack_id": key.pack_id, "key_digest": key.digest(), "rater": "r2",
             "item": i.id, "choice": "B", "comment": "odd, \"bold\"", "answered_at": ""} for i in key.items[:3]]
    with (tmp_path / "r2.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labels = annotate.import_results(out, [tmp_path / "r2.csv"], tmp_path / "h.jsonl")
    assert [h.comment for h in labels] == ['odd, "bold"'] * 3 and {h.rater for h in labels} == {"r2"}


@pytest.mark.parametrize("change, message", [
    (lambda k, a: a | {"answers": a["answers"] + [{"item": "q99", "choice": "A"}]}, "unknown item 'q99'"),
    (lambda k, a: a | {"answers": a["answers"] + a["answers"][:1]}, "answered twice"),
    (lambda k, a: a | {"answers": [{"item": k.items[0].id, "choice": "C"}]}, "choice 'C'"),
    (lambda k, a: a | {"pack_id": "0123456789ab"}, "pass the pack folder these results"),
    (lambda k, a: a | {"rater": " "}, "no rater id"),
    (lambda k, a: a | {"format": "something-else"}, "format 'something-else'"),
    (lambda k, a: {"hello": 1}, "format None"),
])
def test_import_refuses_bad_results(tmp_path, pack, change, message):
    out, key = pack
    good = json.loads(answers_file(tmp_path / "ok.json", key, {key.items[0].id: "A"}).read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(change(key, good)))
    with pytest.raises(annotate.AnnotationError, match=re.escape(message)):
        annotate.import_results(out, [bad], tmp_path / "h.jsonl")
    assert not (tmp_path / "h.jsonl").exists()


def test_import_refuses_tampered_key_and_non_results(tmp_path, pack):
    out, key = pack
    results = answers_file(tmp_path / "r.json", key, {key.items[0].id: "A"})
    raw = json.loads((out / annotate.KEY_FILE).read_text())
    raw["items"][0]["story_a"], raw["items"][0]["story_b"] = raw["items"][0]["story_b"], raw["items"][0]["story_a"]
    (out / annotate.KEY_FILE).write_text(json.dumps(raw))
    with pytest.raises(annotate.AnnotationError, match="changed after export"):
        annotate.import_results(out, [results], tmp_path / "h.jsonl")
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    with pytest.raises(annotate.AnnotationError, match="format None, expected"):
        annotate.read_results(tmp_path / "junk.csv")
    (tmp_path / "torn.json").write_text('{"format": "creative-eval-annotations/1", "answ')
    with pytest.raises(annotate.AnnotationError, match="not a results file"):
        annotate.read_results(tmp_path / "torn.json")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(annotate.AnnotationError, match="empty; download the results again"):
        annotate.read_results(tmp_path / "empty.csv")
    with pytest.raises(annotate.AnnotationError, match="no key"):
        annotate.read_key(tmp_path)


def test_reimport_is_idempotent_and_conflicts_are_refused(tmp_path, pack):
    out, key = pack
    first = answers_file(tmp_path / "r1.json", key, {key.items[0].id: "A"})
    later = answers_file(tmp_path / "r1-later.json", key, {key.items[0].id: "A", key.items[1].id: "tie"})
    h = tmp_path / "h.jsonl"
    assert len(annotate.import_results(out, [first], h)) == 1
    assert len(annotate.import_results(out, [first, later], h)) == 1
    assert len(load_labels(h)) == 2
    changed = answers_file(tmp_path / "r1-changed.json", key, {key.items[0].id: "B"})
    with pytest.raises(annotate.AnnotationError, match="answered .* differently"):
        annotate.import_results(out, [changed], h)
    assert len(load_labels(h)) == 2


def test_agreement_needs_two_raters(tmp_path):
    def label(rater: str, item: int, choice: str) -> HumanLabel:
        return HumanLabel(item_id=f"p{item}:baseline-vs-induced", story_a=f"p{item}:baseline", story_b=f"p{item}:induced", choice=choice, rater=rater)

    choices = ["A", "B", "tie", "A", "B", "A"]
    same = [label(r, i, c) for r in ("r1", "r2") for i, c in enumerate(choices)]
    assert humans.inter_rater_agreement(same[:6]) is None
    assert humans.inter_rater_agreement(same).estimate == pytest.approx(1.0)
    other = same[:6] + [replace(h, choice={"A": "B", "B": "A", "tie": "A"}[h.choice]) for h in same[6:]]
    assert humans.inter_rater_agreement(other).estimate < 0


def test_cli_export_and_import(tmp_path, capsys):
    stories = make_stories(tmp_path / "s.jsonl", n=2, conditions=("baseline", "induced"))
    assert cli.main(["annotate", "export", "--input", str(stories), "--out", str(tmp_path / "p"), "--seed", "1"]) == 0
    assert "2 pairs" in capsys.readouterr().out
    key = annotate.read_key(tmp_path / "p")
    files = [answers_file(tmp_path / f"{r}.json", key, {i.id: "A" for i in key.items}, rater=r) for r in ("x", "y")]
    assert cli.main(["annotate", "import", *map(str, files), "--pack", str(tmp_path / "p"),
                     "--out", str(tmp_path / "h.jsonl")]) == 0
    assert "4 labels from 2 rater(s)" in capsys.readouterr().out
    assert cli.main(["annotate", "import", str(files[0]), "--pack", str(tmp_path), "--out", "h.jsonl"]) == 2
    assert "no key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["annotate", "export", "--input", "s", "--out", "o", "--compare", "baseline"])
