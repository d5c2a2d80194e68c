"""Directions fitted on people, beyond the plain WQ fit: the `hanna` source (HANNA's human stories paired by
crowd Surprise), a fit that holds a judging sample out (with every pair sharing a text with it), and the
commands that make them."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from creative_eval import cli, direction, models, sources
from creative_eval.cli import demo
from creative_eval.judges import PairItem, load_judge, presets
from creative_eval.people import humans
from creative_eval.sources import calibration

RESIDUAL = calibration.Fitting(length_control="residual")
WORDS = "the clock argued with a cat about rain in the city at night while lamps hummed".split()


def fake_hanna(root, ratings: list[tuple[int, int, int]]) -> None:
    """HANNA-shaped files: one human story per rating triple (its Surprise from three raters), story i of
    length 5 + 3i words, and one model story per prompt."""
    root.mkdir()
    human = [" ".join([f"story {i}", *WORDS[: 3 + (3 * i) % 12], *["w"] * i]) for i in range(len(ratings))]
    rows = [["", "Prompt", "Human", "Story", "Model"]]
    rows += [[str(i), f"prompt {i}", text, f"model story {i}", "M"] for i, text in enumerate(human)]
    with (root / "hanna_llm_stories.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    header = ["Model", "Text length ¤§"] + [f"Human {k} SU" for k in (1, 2, 3)]
    raters = [str([r[k] for r in ratings]) for k in range(3)]
    with (root / "hanna_metric_scores_llm.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, ["Human", str([len(t.split()) for t in human]), *raters]])


def fake_wq_groups(folder, groups: int = 5) -> None:
    """A WQ-shaped file in WQ's own shape: each group's preferred paragraph is set against three imitations,
    so the three pairs of a group share a text."""
    rows = []
    for g in range(groups):
        original = " ".join([f"original {g}", *WORDS[: 4 + g]])
        for j in range(3):
            imitation = " ".join([f"imitation {g}-{j}", *WORDS * (1 + j)])
            pid = f"{g}{j}"
            rows += [{"id": f"{pid}-a", "original_id": pid, "paragraph1": original, "paragraph2": imitation,
                      "reference_preference": "1", "source": "Ben Lerner"},
                     {"id": f"{pid}-b", "original_id": pid, "paragraph1": imitation, "paragraph2": original,
                      "reference_preference": "2", "source": "Ben Lerner"}]
    folder.mkdir()
    (folder / humans.WQ_FILE).write_text(json.dumps(rows), encoding="utf-8")


RATINGS = [(5, 5, 4), (1, 2, 1), (3, 3, 3), (4, 4, 5), (2, 1, 2), (3, 3, 3), (5, 4, 4), (1, 1, 1), (2, 3, 2),
           (4, 5, 5), (3, 2, 3), (2, 2, 2)]


@pytest.fixture
def wq_here(tmp_path, monkeypatch):
    """A WQ folder in WQ's shape where the project looks for it, and a cache of this test's own."""
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_wq_groups(tmp_path / "wq")
    monkeypatch.setattr(humans, "WQ_DIR", tmp_path / "wq")
    return tmp_path / "wq"


@pytest.fixture
def hanna_here(tmp_path, monkeypatch):
    """A HANNA folder of 12 human stories (RATINGS) where the project looks for it, and a cache of its own."""
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_hanna(tmp_path / "hanna", RATINGS)
    monkeypatch.setattr(humans, "HANNA_DIR", tmp_path / "hanna")
    return tmp_path / "hanna"


def test_hanna_rating_pairs_set_rank_k_against_rank_k_plus_half(tmp_path):
    fake_hanna(tmp_path / "hanna", RATINGS)
    stories, labels = humans.hanna_rating_pairs(root=tmp_path / "hanna")
    mean = {f"hanna-{i:02d}:human": sum(r) / 3 for i, r in enumerate(RATINGS)}
    ranked = sorted(mean, key=lambda s: (-mean[s], s))
    want = [(hi, lo) for hi, lo in zip(ranked[:6], ranked[6:]) if mean[hi] != mean[lo]]
    got = [((h.story_a, h.story_b) if h.choice == "A" else (h.story_b, h.story_a)) for h in labels]
    assert got == want and len(got) == 6  # no tie here: the check below plants one
    assert {h.choice for h in labels} == {"A", "B"} and all(h.rater == humans.HANNA_PAIR_RATER for h in labels)
    ids = [i for h in labels for i in (h.story_a, h.story_b)]
    assert len(ids) == len(set(ids)) == 12 and {s.id for s in stories} == set(mean)
    tied = [(3, 3, 3)] * 4
    fake_hanna(tmp_path / "tied", tied)
    assert humans.hanna_rating_pairs(root=tmp_path / "tied")[1] == []


def test_the_hanna_source_is_fitted_on_crowd_pairs_refuses_them_and_takes_a_length_control(tiny, hanna_here,
                                                                                           tmp_path, monkeypatch):
    model, tokenizer = tiny
    plain, plain_path = sources.resolve("hanna", model, tokenizer, "tiny", 2)
    ortho, ortho_path = sources.resolve("hanna", model, tokenizer, "tiny", 2, fitting=RESIDUAL)
    assert "-hanna-mean-" in plain_path and "-hanna-mean-residual-" in ortho_path
    assert plain.source == "hanna" and "crowd Surprise" in plain.meta["labels"]
    assert not torch.allclose(plain.vector, ortho.vector)
    assert len(plain.meta["trained_on"].split(",")) == 12
    judge = load_judge({**presets.load("probe-hanna"), "layer": 2}, model, tokenizer)
    assert judge.template_hash.endswith("-hanna") and torch.equal(judge.direction.vector, plain.vector)
    residual = load_judge({**presets.load("probe-hanna-residual"), "layer": 2}, model, tokenizer)
    assert torch.equal(residual.direction.vector, ortho.vector) and residual.template_hash != judge.template_hash
    story = next(s for s in humans.hanna_stories(hanna_here) if s.condition == "human")
    with pytest.raises(ValueError, match="fitted on 1 of these stories"):
        judge.rate([story])
    monkeypatch.setattr(humans, "HANNA_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="CREATIVE_EVAL_HANNA"):
        sources.resolve("hanna", model, tokenizer, "tiny", 3)


def test_a_held_out_fit_never_sees_the_sample_nor_the_pairs_sharing_a_text_with_it(tiny, wq_here,
                                                                                   tmp_path, monkeypatch):
    model, tokenizer = tiny
    sample, labels = humans.wq_sample(2, root=wq_here)
    held = frozenset(s.prompt_id for s in sample)
    full, full_path = sources.humans_direction(model, tokenizer, "tiny", 2)
    d, path = sources.humans_direction(model, tokenizer, "tiny", 2, held_out=held)
    assert path != full_path and not torch.allclose(d.vector, full.vector)
    trained = d.meta["trained_on"].split(",")
    group = lambda pid: pid[:-1]  # noqa: E731  (wq-<group><imitation>: a group's pairs share its original)
    out = {group(pid) for pid in held}
    assert not {group(pid) for pid in trained} & out
    assert int(d.meta["n_pairs"]) == 3 * (5 - len(out)) == len(trained)
    assert d.meta["held_out_pairs"] == "2"
    judge = load_judge({**presets.load("probe-humans"), "layer": 2}, model, tokenizer, direction=d)
    assert judge.template_hash != load_judge({**presets.load("probe-humans"), "layer": 2}, model, tokenizer,
                                             direction=full).template_hash
    by_id = {s.id: s for s in sample}
    prefs = judge.compare([PairItem(by_id[h.story_a], by_id[h.story_b]) for h in labels])
    assert len(prefs) == 2 and all(p.decision in ("A", "B", "tie") for p in prefs)
    trained_story = next(s for s in humans.wq_pairs(tmp_path / "wq")[0] if s.prompt_id == trained[0])
    with pytest.raises(ValueError, match="fitted on 1 of these stories"):
        judge.rate([trained_story])
    with pytest.raises(ValueError, match="not among the labelled pairs"):
        sources.humans_direction(model, tokenizer, "tiny", 3, held_out=frozenset({"wq-nope"}))


def test_the_demo_judges_its_wq_sample_with_a_humans_probe_fitted_on_the_other_pairs(tiny, wq_here,
                                                                                     tmp_path, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setattr(direction, "default_layer", lambda m: 2)
    sample, labels = humans.wq_sample(3, root=wq_here)
    judge, d = demo.held_out_humans_judge(model, tokenizer, "tiny", sample)
    assert judge.id == demo.HELD_OUT_JUDGE and d.layer == 2
    assert not {s.prompt_id for s in sample} & judge.direction.trained_on
    by_id = {s.id: s for s in sample}
    prefs = demo.compare_all(judge, [PairItem(by_id[h.story_a], by_id[h.story_b]) for h in labels], tmp_path / "run")
    assert len(prefs) == 3 and (tmp_path / "run" / f"preferences-{demo.HELD_OUT_JUDGE}.jsonl").is_file()


def test_the_direction_command_holds_a_judging_sample_out(tiny, wq_here, tmp_path, monkeypatch, capsys):
    model, tokenizer = tiny
    monkeypatch.setattr(models, "load", lambda *a, **k: (model, tokenizer))
    out = tmp_path / "d.safetensors"
    assert cli.main(["direction", "--model", "tiny", "--source", "humans", "--hold-out-wq", "2", "--layer", "2",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "none of the first 2 of the judging sample" in printed and "--humans wq --limit 2" in printed
    saved = direction.load(out)
    assert saved.meta["held_out_pairs"] == "2" and int(saved.meta["n_pairs"]) < 15


def test_the_direction_command_validates_a_hanna_fit_cross_validated(tiny, hanna_here, tmp_path, monkeypatch, capsys):
    model, tokenizer = tiny
    monkeypatch.setattr(models, "load", lambda *a, **k: (model, tokenizer))
    out = tmp_path / "h.safetensors"
    assert cli.main(["direction", "--model", "tiny", "--source", "hanna", "--length-control", "residual",
                     "--layer", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "crowd Surprise" in printed and "6 pairs in 6 groups" in printed and "fit mean-residual" in printed
    assert direction.load(out).source == "hanna"


def test_creative_probe_takes_a_probe_preset_and_scores_on_the_live_models_weights(tiny, wq_here,
                                                                                   tmp_path, monkeypatch):
    """`--metadata '{"probe": "probe-humans"}'`: the task's probe reads the human-calibrated direction on the
    evaluated model's own weights (no second load); a preset that is not a probe is refused when the task is
    built."""
    from creative_eval.harness import model as harness_model
    from creative_eval.harness import tasks
    from creative_eval.records import Story

    model, tokenizer = tiny
    monkeypatch.setattr(direction, "default_layer", lambda m: 2)
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("a second model was loaded"))

    class Evaluated(harness_model.Live):
        model_id = "tiny"

        def probe_inputs(self):
            return model, tokenizer, None  # a preset's probe brings its own direction

    monkeypatch.setattr(harness_model.Live, "last", Evaluated())
    cfg = {**tasks.probe_preset("creative_probe", {"probe": "probe-humans"}), "model": "tiny"}
    judge = tasks._probe_judge({}, cfg)
    assert judge.direction.source == "humans" and judge.probe.model is model
    rated = judge.rate([Story(prompt_id="p0", condition="induced", prompt="Write a story.", text="The clock sang.")])
    assert rated[0].score is not None
    with pytest.raises(ValueError, match="metadata.probe='embedded' is a hf judge, not a probe"):
        tasks.probe_preset("creative_probe", {"probe": "embedded"})
    assert tasks.probe_preset("creative_probe", {}) is None


def test_a_probe_judges_numbers_stand_beside_random_directions_read_as_it_reads(tiny, wq_here, hanna_here):
    """The null of `agreement`'s random-direction column is exactly what the probe judge would report with a
    random direction in place of its own: agreement on WQ's pairs, Spearman with HANNA's crowd ratings."""
    from creative_eval.direction import Direction
    from creative_eval.evals import suite
    from creative_eval.people import agreement
    from creative_eval.probe import controls

    model, tokenizer = tiny
    judge = load_judge({**presets.load("probe"), "layer": 2}, model, tokenizer)
    wq = suite.HumanSet("wq", *humans.wq_pairs(wq_here), agreement.LABEL_WQ)
    ratings = humans.hanna_ratings(hanna_here, ("Surprise",))
    rated = {h.story_a for h in ratings}
    hanna = suite.HumanSet("hanna-ratings", [s for s in humans.hanna_stories(hanna_here) if s.id in rated], ratings,
                           agreement.LABEL_RATINGS)
    pair_null, _ = suite.random_nulls(judge, wq, n=3)
    _, rating_null = suite.random_nulls(judge, hanna, n=3)
    first = controls.random_directions(model.config.hidden_size, 3)[0]
    stand_in = load_judge({**presets.load("probe"), "layer": 2, "id": "stand-in"}, model, tokenizer,
                          direction=Direction(first, dict(judge.direction.meta)))
    prefs, _ = suite.collect(stand_in, wq, wq_here.parent / "run", ("pairwise",))
    row = suite.table(wq, suite.verdicts("stand-in", prefs, [], wq), {}, n_boot=20)["pairwise"][0]
    assert row["judge"] == "stand-in" and pair_null[0] == pytest.approx(row["accuracy"].estimate)
    _, scores = suite.collect(stand_in, hanna, wq_here.parent / "run", ("rating",))
    rho, length = suite.table(hanna, [], {"stand-in": scores}, n_boot=20)["ratings"]
    assert rho["judge"] == "stand-in" and rating_null["Surprise"][0] == pytest.approx(rho["spearman"].estimate)
    assert rho["length_ols"]["n"] == 12 and "length_ols" not in length  # the length rater needs no length control
    result = suite.table(wq, suite.verdicts(judge.id, suite.collect(judge, wq, wq_here.parent / "run",
                                                                    ("pairwise",))[0], [], wq), {}, n_boot=20)
    suite.beside_random_directions(judge, wq, result, n=20)
    assert result["pairwise"][0]["random"]["n"] == 20 and "random" not in result["pairwise"][1]  # trivial judge
