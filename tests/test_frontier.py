"""The steering frontier on the tiny model: the probe gate, the random control's norm, the recommendation
rule on a hand-made table, the debiased preference, repetition measures and the command's input checks."""

from __future__ import annotations

import json

import pytest
import torch

from creative_eval import cli, rater_stats
from creative_eval.evals import coherence, frontier, frontier_stats
from creative_eval import direction, judges, models, report, steering
from creative_eval.steering import gating, generate
from creative_eval.report import frontier as frontier_report

from test_pipeline import PAIRS

SAMPLING = generate.Sampling(max_new_tokens=6, seed=3, batch_size=2)


@pytest.fixture(scope="module")
def dirs(tiny):
    model, tokenizer = tiny
    return direction.extract(model, tokenizer, PAIRS, [2, 3], model_id="tiny")


def _gen(tiny, steer, gate=None):
    model, tokenizer = tiny
    return generate.generate(model, tokenizer, [p.uncreative for p in PAIRS], steers=[steer] if steer else [],
                             gate=gate, sampling=SAMPLING)


def test_gate_steers_no_step_below_every_score_and_every_step_above(tiny, dirs):
    steer = steering.Steer.from_direction(dirs[2], 8.0, "relative", "generated")
    plain, constant = _gen(tiny, None), _gen(tiny, steer)
    assert [g.text for g in plain] != [g.text for g in constant]  # the steer changes the text
    closed = _gen(tiny, steer, gating.Gate(-2.0))  # cosines are >= -1: the running mean is never below -2
    assert all(g.steered_steps == 0 and g.gate_steps > 0 for g in closed)
    assert [g.text for g in closed] == [g.text for g in plain]
    opened = _gen(tiny, steer, gating.Gate(2.0))  # ... and always below 2
    assert all(g.steered_steps == g.gate_steps > 0 for g in opened)
    assert [g.text for g in opened] == [g.text for g in constant]


def test_gate_between_scores_steers_some_steps(tiny, dirs):
    steer = steering.Steer.from_direction(dirs[2], 8.0, "relative", "generated")
    state, _ = gating.Gate(0.0, 1).attach(steer)
    model, tokenizer = tiny
    with torch.inference_mode(), steering.steering(model, [], trace=state):
        generate.generate(model, tokenizer, [PAIRS[0].uncreative], sampling=SAMPLING)
    cos = state.cosines()[0, -len(state.decisions):]
    expected = cos < 0.0  # window 1: open exactly where the token's own cosine is below the target
    assert torch.equal(torch.stack(state.decisions, 1)[0], expected)


def test_random_control_has_the_real_vectors_norm(dirs):
    d = dirs[2]
    r = frontier.random_direction(d, seed=1)
    assert abs(float(torch.dot(r.vector, d.vector))) < 0.5
    for norm in steering.NORMS:
        real = frontier.steer_for(frontier.Arm("real", 0.3), dirs, 2, norm)
        rand = frontier.steer_for(frontier.Arm("random", 0.3), dirs, 2, norm, seed=1)
        assert torch.isclose(real.vector.norm(), rand.vector.norm(), rtol=1e-5)
        assert not torch.allclose(real.vector, rand.vector)


def _est(estimate, low=None, high=None):
    return {"estimate": estimate, "ci_low": estimate - 0.1 if low is None else low,
            "ci_high": estimate + 0.1 if high is None else high}


def _arm(alpha, ppl, rep, win, gain, gain_low, win_low=None):
    return {"arm": f"real-{alpha}", "kind": "real", "alpha": alpha, "layer": None, "positions": "all", "gate": None,
            "ppl_ratio": _est(ppl), "repetition": _est(rep), "win_rate": _est(win, win_low),
            "vs_random": {"win_rate_diff": _est(gain, gain_low)}}


def test_recommendation_follows_its_rule_on_a_hand_made_table():
    baseline = {"repetition": _est(0.10)}
    arms = [_arm(0.1, 1.1, 0.10, 0.60, 0.05, -0.2),
            _arm(0.2, 1.4, 0.14, 0.75, 0.20, 0.05, win_low=0.55),  # the largest gain within both bounds
            _arm(0.35, 1.6, 0.12, 0.90, 0.40, 0.20),  # larger gain, perplexity over 1.5x
            _arm(0.5, 1.2, 0.20, 0.95, 0.50, 0.30),  # larger gain, repetition over baseline + 0.05
            {**_arm(0.2, 1.0, 0.1, 0.99, 0.9, 0.8), "arm": "real-0.2-generated", "positions": "generated"}]
    rec = frontier_stats.recommend(arms, baseline, layer=17)
    assert rec["alpha"] == 0.2 and rec["goal_met"]
    assert [g["eligible"] for g in rec["grid"]] == [True, True, False, False]  # other positions are not the grid
    assert "perplexity" in rec["grid"][2]["excluded_because"] and "repetition" in rec["grid"][3]["excluded_because"]
    # a tighter perplexity bound leaves 0.1, whose gain's CI includes 0: recommended, goal not met
    rec = frontier_stats.recommend(arms, baseline, layer=17, ppl_bound=1.2)
    assert rec["alpha"] == 0.1 and not rec["above_random"] and not rec["goal_met"]
    # no eligible lambda beats the random direction: no recommendation
    losing = [_arm(0.1, 1.1, 0.1, 0.5, -0.05, -0.3), _arm(0.2, 1.2, 0.1, 0.5, 0.0, -0.3)]
    rec = frontier_stats.recommend(losing, baseline, layer=17)
    assert rec["alpha"] is None and not rec["goal_met"] and rec["reason"]


def test_length_control_separates_a_length_preference_from_a_real_one():
    ratio = [-0.4, -0.2, 0.0, 0.2, 0.4, 0.1, -0.1]
    only_length = rater_stats.length_ols([0.5 * r for r in ratio], ratio, offset=0.5)
    assert only_length["estimate"] == pytest.approx(0.5) and only_length["length_slope"] == pytest.approx(0.5)
    real = rater_stats.length_ols([0.2 + 0.5 * r for r in ratio], ratio, offset=0.5)
    assert real["estimate"] == pytest.approx(0.7)
    assert rater_stats.length_ols([0.1] * 3, [0.0] * 3)["reason"].startswith("too few")


def test_repetition_measures():
    assert coherence.repeated_ngram_rate("a b c a b c") == pytest.approx(1 / 4)
    assert coherence.repeated_ngram_rate("The cat sat on a mat.") == 0.0
    assert coherence.distinct_n("a b a b a b", 2) == pytest.approx(2 / 5)
    assert coherence.distinct_n("one") != coherence.distinct_n("one")  # NaN: no bigram


def test_frontier_runs_end_to_end_and_resumes(tiny, dirs, tmp_path, monkeypatch):
    model, tokenizer = tiny
    arms = frontier.plan([8.0], at=8.0, layers=[3], gate=-2.0)
    assert [a.name for a in arms] == ["baseline", "real-8", "random-8", "real-8-generated", "real-8-L3",
                                      "real-8-gate-2w16"]
    kwargs = dict(layer=2, judge=judges.load_judge("self", model, tokenizer), out=tmp_path, sampling=SAMPLING)
    result = frontier.run(model, tokenizer, PAIRS, dirs, dirs[3], arms, **kwargs)
    report.write_frontier(result, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "table.jsonl").read_text().splitlines()]
    assert len(rows) == len(arms) * len(PAIRS)
    assert {a["arm"] for a in result["arms"]} == {a.name for a in arms[1:]}
    real = next(a for a in result["arms"] if a["arm"] == "real-8")
    assert real["vs_random"] is not None and real["n"] == len(PAIRS)
    header, table = frontier_report.frontier_rows(result)
    row = dict(zip(header, next(r for r in table if r[0] == "real-8")))
    assert row["vs random: other probe diff"] == report.fmt_estimate(real["vs_random"]["probe_gain_diff"], 4)
    assert real["probe_gain_length_controlled"]["n"] == len(PAIRS)
    gated = next(a for a in result["arms"] if a["gate"] is not None)
    assert gated["steered_share"]["estimate"] == 0.0  # the target is below every cosine
    assert {g["against"] for g in result["gated_vs_constant"]} == {"real-8", "real-8-generated"}
    assert (tmp_path / "frontier.png").stat().st_size > 0 and "Rule" in (tmp_path / "frontier.md").read_text()
    path = report.build("r", [], [], [], {}, frontier={**result, "figure": "f/frontier.png"}, out_root=tmp_path)
    assert "## Steering frontier" in path.read_text() and "(f/frontier.png)" in path.read_text()
    summary = json.loads((path.parent / "summary.json").read_text())["summary"]
    assert summary["frontier"]["recommendation"]["rule"] == result["recommendation"]["rule"]
    calls = []
    monkeypatch.setattr(generate, "generate", lambda *a, **k: calls.append(1))
    again = frontier.run(model, tokenizer, PAIRS, dirs, dirs[3], arms, **kwargs)
    assert json.dumps(again["arms"]) == json.dumps(result["arms"])
    assert calls == []  # every arm's stories and judgements were read back


def test_the_judging_probe_may_not_be_the_steering_direction(tiny, dirs, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="steering direction itself"):
        frontier.run(model, tokenizer, PAIRS, dirs, dirs[2], [frontier.Arm("baseline")], layer=2, out=tmp_path)


@pytest.mark.parametrize("argv, message", [
    (["--gate", "nan"], "argument --gate"),
    (["--coherence-template", "Rate {story}"], "lacks {prompt}"),
    (["--extra-positions", "middle"], "unknown position"),
    (["--extra-layers", "12,x"], "argument --extra-layers"),
])
def test_steer_sweep_rejects_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.main(["steer-sweep", *argv])
    assert message in capsys.readouterr().err


def test_a_shipped_rating_template_is_taken_by_name():
    from creative_eval.judges import templates

    args = cli.build_parser().parse_args(["steer-sweep", "--coherence-template", "rate-quality"])
    assert args.coherence_template == templates.text("rate-quality") and "{prompt}" in args.coherence_template


@pytest.mark.parametrize("flag, extra, message", [
    ("--direction", ["--extra-layers", "12"], "--direction auto"),  # extra layers need the auto direction
    ("--judge-direction", ["--judge-layer", "3"], "a direction file has its own layer"),
])
def test_a_direction_file_refuses_layer_options_before_any_model_loads(tiny, tmp_path, capsys, monkeypatch, flag,
                                                                       extra, message):
    model, tokenizer = tiny
    d = direction.save(direction.extract(model, tokenizer, PAIRS, 2, model_id="tiny"), tmp_path / "d.safetensors")
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    assert cli.main(["steer-sweep", flag, str(d), *extra]) == 2
    assert message in capsys.readouterr().err


def test_the_human_calibrated_probe_judges_the_frontier_on_response_tokens(tiny, dirs, tmp_path, monkeypatch):
    from creative_eval import sources
    from creative_eval.people import humans
    from creative_eval.probe import Probe
    from creative_eval.records import Story, read_records
    from test_length_control import fake_wq

    model, tokenizer = tiny
    monkeypatch.setenv("CREATIVE_EVAL_CACHE", str(tmp_path / "cache"))
    fake_wq(tmp_path / "wq")
    monkeypatch.setattr(humans, "WQ_DIR", tmp_path / "wq")
    judge_d, judge_path = sources.resolve("humans", model, tokenizer, "tiny", 2)
    result = frontier.run(model, tokenizer, PAIRS, dirs, judge_d, frontier.plan([8.0]), layer=2, out=tmp_path / "f",
                          judge=judges.load_judge("self", model, tokenizer), sampling=SAMPLING, judge_source=judge_path)
    probe = result["settings"]["judge_probe"]
    cosine = float(torch.nn.functional.cosine_similarity(dirs[2].vector, judge_d.vector, 0))
    assert (probe["direction_source"], probe["tokens"], probe["layer"]) == ("humans", "response", 2)
    assert probe["cosine_with_steering_direction"] == pytest.approx(cosine, abs=1e-6)
    stories = read_records(tmp_path / "f" / "stories.jsonl", Story)
    rows = [json.loads(line) for line in (tmp_path / "f" / "table.jsonl").read_text().splitlines()]
    want = Probe(model, tokenizer, judge_d, tokens="response").score([s.prompt for s in stories], [s.text for s in stories])
    assert [r["probe"] for r in rows] == pytest.approx([p.score for p in want], abs=1e-5)
    assert "response tokens, cosine with the steering direction" in report.frontier_markdown(result)
