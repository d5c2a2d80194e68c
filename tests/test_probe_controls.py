"""Probe controls: random-direction percentiles on a planted direction, cross-validation by pair that never
scores a pair it trained on, cached per-text states equal to the probe, the cached story bank, direction
sources, and the probe judge's token rule for stories of different prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from creative_eval.sources import calibration, storybank
from creative_eval import cli
from creative_eval.probe import controls, textstates
from creative_eval.evals import criteria
from creative_eval import direction, probe, sources
from creative_eval.steering import generate
from creative_eval.judges.base import PairItem
from creative_eval.judges.probe_judge import ProbeJudge
from creative_eval.records import HumanLabel, Pair, Story
from creative_eval.probe.textstates import States

HIDDEN = 64


def planted(n: int = 80, strength: float = 0.6, seed: int = 0) -> tuple[States, torch.Tensor]:
    """Creative rows (first half) = noise + strength * a, negated rows = noise: the answer is a."""
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.normalize(torch.randn(HIDDEN, generator=g), dim=0)
    x = torch.randn(2 * n, HIDDEN, generator=g) / HIDDEN ** 0.5
    x[:n] += strength * a
    unit = torch.nn.functional.normalize(x, dim=-1)
    return States(x, unit, torch.ones(2 * n)), a


def test_planted_direction_beats_every_random_direction_and_a_random_one_does_not():
    st, a = planted()
    labels = np.r_[np.ones(80), np.zeros(80)]
    rand = controls.random_directions(HIDDEN, 200, seed=1)
    null = controls.auroc_columns(labels, st.scores(rand).numpy())
    real = controls.auroc_columns(labels, st.scores(a)[:, None].numpy())[0]
    assert real > 0.95
    assert controls.percentile(real, null) > 0.99
    # a direction orthogonal to the planted one is just another random direction
    other = torch.nn.functional.normalize(controls.random_directions(HIDDEN, 1, seed=7)[0] - a * (a @ controls.random_directions(HIDDEN, 1, seed=7)[0]), dim=0)
    fake = controls.auroc_columns(labels, st.scores(other)[:, None].numpy())[0]
    assert 0.01 < controls.percentile(fake, null) < 0.99
    # shuffled-label directions recover nothing, the real labels recover a
    shuffled = controls.shuffled_directions(st.mean[:80], st.mean[80:], 200, seed=2)
    assert torch.allclose(shuffled.norm(dim=-1), torch.ones(200))
    assert float((shuffled @ a).abs().mean()) < 0.5 < float(torch.nn.functional.normalize((st.mean[:80] - st.mean[80:]).mean(0), dim=0) @ a)


def test_auroc_columns_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    scores = rng.normal(size=(50, 3)).round(1)  # ties included
    assert np.allclose(controls.auroc_columns(labels, scores), [roc_auc_score(labels, scores[:, j]) for j in range(3)])


def test_percentile_counts_ties_half_and_ignores_nan():
    assert controls.percentile(1.0, np.array([0.0, 1.0, 2.0, np.nan])) == pytest.approx(0.5)
    assert controls.percentile(3.0, np.array([0.0, 1.0])) == 1.0


def test_cross_validation_never_scores_a_pair_it_trained_on():
    n = 23
    # each pair's preferred mean state is a one-hot code, so the fit sees exactly which pairs it was given
    good = States(torch.eye(n, HIDDEN), torch.randn(n, HIDDEN), torch.ones(n))
    bad = States(torch.zeros(n, HIDDEN), torch.randn(n, HIDDEN), torch.ones(n))
    seen: list[set[int]] = []

    def spy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append(set(a.mean.argmax(1).tolist()))
        return calibration.fit(a.mean, b.mean)

    cv = calibration.cross_validate(good, bad, k=5, seed=3, fit_fn=spy)
    assert len(seen) == 5 and not np.isnan(cv.margins).any()
    assert sorted(np.concatenate([np.flatnonzero(cv.fold_of == i) for i in range(5)])) == list(range(n))
    for i, trained in enumerate(seen):
        scored = set(np.flatnonzero(cv.fold_of == i).tolist())
        assert scored and not scored & trained  # scored only by a direction fitted without it
        assert trained | scored == set(range(n))


@pytest.mark.parametrize("method", calibration.METHODS)
def test_cross_validated_agreement_finds_a_planted_preference_and_shuffling_destroys_it(method):
    st, a = planted(n=60, strength=0.4)
    good, bad = st.take(range(60)), st.take(range(60, 120))
    cv = calibration.cross_validate(good, bad, k=5, fit_fn=calibration.Fitting(method))
    est = cv.agreement()
    assert est.estimate > 0.9 and est.n == 60 and est.unit == "pair"
    if method == "mean":  # the controls' code path does not depend on the fit
        rand, shuffled = calibration.cv_controls(est.estimate, good, bad, k=5, n=30, fitting=calibration.Fitting(method))
        assert rand.percentile > 0.95 and shuffled.percentile > 0.95
        assert shuffled.null_median < 0.8


def test_preferred_sides_follow_the_label_and_drop_ties():
    stories = [Story(prompt_id=f"p{i}", condition=c, prompt="Write.", text=f"{c} {i}") for i in range(5) for c in "xy"]
    labels = [HumanLabel(item_id=f"p{i}", story_a=f"p{i}:x", story_b=f"p{i}:y", choice=ch)
              for i, ch in enumerate("ABAB")] + [HumanLabel(item_id="p4", story_a="p4:x", story_b="p4:y", choice="tie")]
    good, bad, items = calibration.preferred_sides(stories, labels)
    assert items == ["p0", "p1", "p2", "p3"]
    assert [s.condition for s in good] == ["x", "y", "x", "y"] and [s.condition for s in bad] == ["y", "x", "y", "x"]


@pytest.mark.parametrize("tokens", ["response", "input+response"])
def test_cached_states_give_exactly_the_probe_score(tiny, tokens):
    model, tokenizer = tiny
    prompts = ["A dog meets a cat.", "The space tanker crashes and spills its cargo. Write a news story."]
    texts = ["Once upon a time a clock argued.", "The cat"]
    d = direction.Direction(torch.nn.functional.normalize(torch.randn(model.config.hidden_size), dim=0),
                            {"layer": "2", "raw_norm": "1", "resid_norm": "1", **direction.model_meta(model, "tiny")})
    st = textstates.read(model, tokenizer, prompts, texts, [2], tokens=tokens)[2]
    want = [s.score for s in probe.Probe(model, tokenizer, d, tokens=tokens).score(prompts, texts)]
    assert st.scores(d.vector).tolist() == pytest.approx(want, abs=1e-5)


def test_story_bank_is_cached_and_feeds_a_story_direction(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path))
    pairs = [Pair(id=f"p{i}", creative=f"A dragon council argues {i}.", uncreative=f"A council meets {i}.",
                  split="validation") for i in range(3)]
    sampling = generate.Sampling(max_new_tokens=4, batch_size=2)
    first = storybank.unsteered(model, tokenizer, pairs, model_id="tiny", sampling=sampling)
    assert [s.condition for s in first] == [storybank.CREATIVE] * 3 + [storybank.NEGATED] * 3
    assert all(s.settings["alpha"] == 0.0 and s.settings["max_new_tokens"] == 4 for s in first)

    def fail(*args, **kwargs):
        raise AssertionError("a cached story was generated again")

    monkeypatch.setattr(generate, "generate", fail)
    again = storybank.unsteered(model, tokenizer, pairs, model_id="tiny", sampling=sampling)
    assert [(s.id, s.text) for s in again] == [(s.id, s.text) for s in first]
    d = sources.from_stories(model, tokenizer, first, [2], model_id="tiny")[2]
    assert d.source == "stories" and d.meta["stories_sha256"] == storybank.stories_hash(first)
    assert d.meta["tokens"] == "response" and "max_new_tokens=4" in d.meta["generation"]
    assert float(d.vector.norm()) == pytest.approx(1.0, abs=1e-5)


def _probe_direction(model, **meta) -> direction.Direction:
    g = torch.Generator().manual_seed(5)
    return direction.Direction(torch.nn.functional.normalize(torch.randn(model.config.hidden_size, generator=g), dim=0),
                               {"layer": "2", "raw_norm": "1", "resid_norm": "1", **direction.model_meta(model, "tiny"),
                                **meta})


def test_probe_judge_compares_different_prompts_on_response_tokens_only(tiny):
    model, tokenizer = tiny
    d = _probe_direction(model)
    judge = ProbeJudge("probe", model, tokenizer, d)
    a = Story(prompt_id="p", condition="creative", prompt="A dragon council argues about the rain.", text="The cat")
    b = Story(prompt_id="p", condition="baseline", prompt="A council meets.", text="Once upon a time a clock argued.")
    c = Story(prompt_id="p", condition="induced", prompt="A council meets.", text="The dog and the cat")
    cross, same = judge.compare([PairItem(a, b), PairItem(c, b)])

    def margin(x: Story, y: Story, tokens: str) -> float:
        s = probe.Probe(model, tokenizer, d, tokens=tokens).score([x.prompt, y.prompt], [x.text, y.text])
        return s[0].score - s[1].score

    assert cross.margin == pytest.approx(margin(a, b, "response"), abs=1e-6)
    assert abs(cross.margin - margin(a, b, "input+response")) > 1e-4  # the prompts would have counted
    assert same.margin == pytest.approx(margin(c, b, "input+response"), abs=1e-6)


def test_probe_judge_refuses_stories_its_human_direction_was_fitted_on(tiny):
    model, tokenizer = tiny
    judge = ProbeJudge("probe", model, tokenizer, _probe_direction(model, source="humans", trained_on="wq-1,wq-2"))
    fitted = Story(prompt_id="wq-2", condition="p1", prompt="Write a paragraph.", text="The cat")
    fresh = Story(prompt_id="hanna-00", condition="human", prompt="Write a paragraph.", text="The dog")
    with pytest.raises(ValueError, match="fitted on 1 of these stories"):
        judge.rate([fitted, fresh])
    assert len(judge.rate([fresh])) == 1
    assert judge.template_hash.endswith("-humans")


def test_within_pair_rate_and_its_random_control():
    st, a = planted(n=40)
    out = criteria._within_pair(st, a, controls.random_directions(HIDDEN, 100))
    assert out["estimate"] == 1.0 and out["n"] == 40 and out["random"]["percentile"] > 0.99


def test_condition_comparisons_use_response_tokens_across_prompts():
    stories = [Story(prompt_id=f"p{i}", condition=c, prompt=("Be wild." if c == "creative" else "Be plain."),
                     text=" ".join(["w"] * (i + 1 + (c == "creative")))) for i in range(40) for c in ("creative", "baseline")]
    st, a = planted(n=40)
    # stories alternate creative/baseline; planted() puts the creative rows first
    idx = torch.tensor([k for i in range(40) for k in (i, 40 + i)])
    same, cross = st.take(idx.flip(0)), st.take(idx)  # `same` states are deliberately wrong: they must not be used
    out = controls.condition_comparisons(stories, same, cross, a, "input+response", n=50)
    (row,) = out["comparisons"]
    assert (row["a"], row["b"], row["tokens"]) == ("creative", "baseline", "response")  # asked as "beats baseline?"
    assert row["win_rate"]["estimate"] == 1.0 and row["random"]["percentile"] >= 0.95
    assert out["length_spearman"] is not None
    assert "response tokens" in controls.describe(out)["probe creative > baseline"]


@pytest.mark.parametrize("value", ["stories", "humans", "prompts", "auto"])
def test_cli_accepts_direction_sources(value):
    args = cli.build_parser().parse_args(["score", "--input", __file__, "--direction", value])
    assert args.direction == value


def test_cli_refuses_an_unknown_source_before_loading(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["score", "--input", __file__, "--direction", "storys"])
    assert "stories" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["sweep", "--criteria", "--layers", "8,12"])
    assert args.criteria and args.layers == [8, 12]


def test_criteria_sweep_reports_every_criterion_with_controls(tiny, tmp_path, monkeypatch):
    from creative_eval import report

    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path))

    def pairs(split: str, n: int) -> list[Pair]:
        return [Pair(id=f"{split}{i}", creative=f"A dragon council argues about the rain {i}.",
                     uncreative=f"A council meets and approves the minutes {i}.", split=split) for i in range(n)]

    wq_stories = [Story(prompt_id=f"wq-{i}", condition=c, prompt="Write a paragraph.",
                        text=("The cat and the clock argued." if c == "p1" else "The dog slept.") + f" {i}")
                  for i in range(10) for c in ("p1", "p2")]
    labels = [HumanLabel(item_id=f"wq-{i}", story_a=f"wq-{i}:p1", story_b=f"wq-{i}:p2", choice="AB"[i % 2])
              for i in range(10)]
    result = criteria.sweep(model, tokenizer, [2, 4], validation=pairs("v", 4), test=pairs("t", 4),
                            robustness=pairs("r", 3), hard=pairs("h", 3), wq=(wq_stories, labels), model_id="tiny",
                            n_boot=20, n_random=20, folds=2, fit_pairs=2,
                            sampling=generate.Sampling(max_new_tokens=4, batch_size=4))
    assert [(r["layer"], r["source"]) for r in result["rows"]] == [(l, s) for l in (2, 4) for s in criteria.SOURCES]
    for r in result["rows"]:
        for key in ("prompt_auroc", "story_auroc", "robust_auroc", "hard_auroc"):
            assert {"estimate", "ci_low", "ci_high", "random", "shuffled"} <= set(r[key])
        assert r["wq_agreement"]["cross_validated"] == (r["source"] == "humans")
        assert r["hard_within_pair"]["n"] == 3 and "random" in r["hard_within_pair"]
        beside = r["story_within_pair"]
        assert beside["n"] == 4 and {"random", "agree_when_longer_chosen", "length_logit"} <= set(beside)
        assert beside["agree_when_longer_chosen"]["n"] + beside["agree_when_shorter_chosen"]["n"] <= 4
    assert result["n"]["story_fit_pairs"] == 2 and result["n"]["held_stories"] == 8
    rec = result["recommended"]
    assert rec["criterion"] == criteria.CRITERION and rec["source"] in criteria.SOURCES
    table = report.criteria_table(result)
    assert "Recommended: layer" in table and " cv" in table and table.count("\n| ") >= 6
    assert "story within-pair, beside length" in table and "; longer " in table


def test_criteria_sweep_carries_the_length_control_to_its_humans_rows(tiny, monkeypatch):
    from creative_eval import cli, models
    from creative_eval.people import humans
    from creative_eval.sources import calibration

    seen = {}
    monkeypatch.setattr(models, "load", lambda *a, **k: tiny)
    monkeypatch.setattr(humans, "wq_pairs", lambda *a, **k: ([], []))
    monkeypatch.setattr(criteria, "sweep", lambda *a, **k: seen.update(k) or (_ for _ in ()).throw(RuntimeError("x")))
    assert cli.main(["sweep", "--criteria", "--layers", "2", "--length-control", "residual"]) == 2
    assert seen["human_fit"] == calibration.Fitting(length_control="residual")


def test_paired_auroc_matches_the_cluster_bootstrap():
    from creative_eval import stats

    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0.5, 1, 40), rng.normal(0, 1, 40)]
    fast = controls.paired_auroc(scores, n_boot=400)
    slow = stats.auroc_ci(np.r_[np.ones(40), np.zeros(40)], scores, clusters=list(range(40)) * 2, n_boot=400)
    assert fast.estimate == pytest.approx(slow.estimate)
    assert fast.ci_low == pytest.approx(slow.ci_low, abs=0.05) and fast.ci_high == pytest.approx(slow.ci_high, abs=0.05)


def test_layer_sweep_reports_the_hard_set_beside_robustness(tiny):
    from creative_eval.evals import sweeps

    model, tokenizer = tiny

    def pairs(split: str, n: int) -> list[Pair]:
        return [Pair(id=f"{split}{i}", creative=f"A dragon council argues about the rain {i}.",
                     uncreative=f"A council meets and approves the minutes {i}.", split=split) for i in range(n)]

    out = sweeps.layer_sweep(model, tokenizer, pairs("v", 4), pairs("t", 4), pairs("r", 3), pairs("h", 5),
                             model_id="tiny", n_boot=20)
    assert out["n_hard"] == 5 and "hard_auroc" in out["lexical_baseline"]
    for row in out["layers"]:
        assert 0 <= row["hard_auroc"] <= 1 and row["hard_within_pair"]["n"] == 5


def test_crossfit_never_scores_a_pair_with_its_own_stories():
    st, a = planted(n=30)
    base = criteria.crossfit_scores(st, k=5)
    # changing one pair's fitting states must not change that pair's own scores
    moved = States(st.mean.clone(), st.unit, st.n_tokens)
    moved.mean[0] += 100 * torch.randn(HIDDEN)
    moved.mean[30] -= 100 * torch.randn(HIDDEN)
    again = criteria.crossfit_scores(moved, k=5)
    assert torch.allclose(again[[0, 30]], base[[0, 30]])
    assert not torch.allclose(again, base)  # but it does move the pairs of the other folds
    assert controls.paired_auroc(base.numpy(), 100).estimate > 0.9


def test_pairs_sharing_a_text_never_straddle_train_and_test():
    texts = ["g0", "g0", "g0", "g1", "g1", "g2", "g3", "g4", "g5", "g6"]  # a preferred text reused across pairs
    good = [Story(prompt_id=f"p{i}", condition="x", prompt="Write.", text=t) for i, t in enumerate(texts)]
    bad = [Story(prompt_id=f"p{i}", condition="y", prompt="Write.", text=f"other {i}") for i in range(10)]
    bad[6] = Story(prompt_id="p6", condition="y", prompt="Write.", text="g2")  # linked to pair 5 through a text
    groups = calibration.shared_text_groups(good, bad)
    assert len(set(groups[:3])) == 1 and groups[3] == groups[4] and groups[5] == groups[6]
    assert len(set(groups)) == 6
    for test in calibration.folds(10, 3, seed=1, groups=groups):
        train = np.setdiff1d(np.arange(10), test)
        test_texts = {good[i].text for i in test} | {bad[i].text for i in test}
        train_texts = {good[i].text for i in train} | {bad[i].text for i in train}
        assert not test_texts & train_texts


def test_probe_humans_preset_uses_the_humans_direction_and_refuses_its_pairs(tiny):
    from creative_eval import judges
    from creative_eval.judges import presets

    cfg = presets.load("probe-humans")
    assert (cfg["backend"], cfg["direction"], cfg["tie_band"], cfg["tokens"]) == ("probe", "humans", 0.0, "response")
    model, tokenizer = tiny
    judge = judges.load_judge(cfg, model, tokenizer, _probe_direction(model, source="humans", trained_on="wq-1"))
    with pytest.raises(ValueError, match="fitted on 1 of these stories"):
        judge.rate([Story(prompt_id="wq-1", condition="p1", prompt="Write a paragraph.", text="The cat")])
    assert judge.template_hash.startswith(f"probe-L{judge.direction.layer}-response-")
