"""The report on a small synthetic run: files, figure, numbers against `stats`, CI-mode exit codes, and
compare-judges."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from creative_eval import rater_stats, report, stats
from creative_eval.people import humans as humans_mod
from creative_eval.report import render
from creative_eval.cli import main
from creative_eval.records import CONDITIONS, HumanLabel, Preference, Rating, Story, write_jsonl

N_PROMPTS = 12
N_BOOT = 300


def _run() -> tuple[list[Story], list[Rating], list[Preference], dict[str, float], list[HumanLabel]]:
    """12 prompts x 3 conditions; judge 'self' rates induced higher, 'api.v1' is noisier; known decisions."""
    rng = np.random.default_rng(0)
    pids = [f"p{i:02d}" for i in range(N_PROMPTS)]
    stories = [Story(prompt_id=p, condition=c, prompt=f"prompt {p}", text=f"story {p} {c}", settings={"model": "embedded", "alpha": 0.5 if c == "induced"
                                                             else 0.0, "seed": 0, "layer": 8})
               for p in pids for c in CONDITIONS]
    base = {"baseline": 3.0, "induced": 5.0, "creative": 6.0}
    ratings = [Rating(judge=j, story_id=s.id, expected=float(np.clip(base[s.condition] + rng.normal(0, sd), 0, 9)), argmax=None, probs=None)
               for j, sd in (("self", 0.5), ("api.v1", 2.0)) for s in stories]
    ratings[0] = Rating(judge="self", story_id=stories[0].id, expected=None, argmax=None, probs=None, status="invalid: no digit")
    probe = {s.id: {"baseline": 0.01, "induced": 0.05, "creative": 0.03}[s.condition] + rng.normal(0, 0.01)
             for s in stories}
    # self: induced preferred on 10 prompts, one tie, one invalid; api.v1: right on even prompts only
    prefs = []
    for i, p in enumerate(pids):
        a, b = (f"{p}:baseline", f"{p}:induced") if i % 2 else (f"{p}:induced", f"{p}:baseline")
        right = "B" if i % 2 else "A"
        wrong = "A" if i % 2 else "B"
        self_dec = {10: "tie", 11: None}.get(i, right)
        prefs.append(Preference(judge="self", pair_id=f"{p}:bi", story_a=a, story_b=b, p_first_ab=0.6, p_first_ba=0.4, decision=self_dec, consistent=self_dec != "tie",
                                status="ok" if self_dec else "invalid: parse"))
        prefs.append(Preference(judge="api.v1", pair_id=f"{p}:bi", story_a=a, story_b=b, p_first_ab=0.6, p_first_ba=0.4, decision=right if i % 2 == 0 else wrong, consistent=True))
    # humans: prefer the induced story, written in the opposite A/B order to the judges'
    humans = [HumanLabel(item_id=f"h{p}", story_a=f"{p}:baseline", story_b=f"{p}:induced", choice="B", rater="r1") for p in pids]
    return stories, ratings, prefs, probe, humans


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    stories, ratings, prefs, probe, humans = _run()
    root = tmp_path_factory.mktemp("reports")
    path = report.build("fixture", stories, ratings, prefs, probe, humans, meta={"direction_layer": 8},
                        checks=["pairwise.self.win_rate.estimate>=0.8"], out_root=root, n_boot=N_BOOT)
    return path, json.loads((path.parent / "summary.json").read_text())


def test_files_exist_and_figure_is_drawn(built):
    path, _ = built
    folder = path.parent
    for name in ("report.md", "report.html", "figure1.png", "summary.json", "summary.md"):
        assert (folder / name).stat().st_size > 200, name
    img = imread(folder / "figure1.png")
    assert img.shape[0] > 300 and img.shape[1] > 1000
    assert img[..., :3].std() > 0.05  # not a blank canvas
    md = path.read_text()
    assert "figure1.png" in md and "| self | induced |" in md and "api.v1" in md
    assert "<table>" in (folder / "report.html").read_text()


def test_numbers_match_stats(built):
    _, doc = built
    s = doc["summary"]
    stories, ratings, _, probe, _ = _run()
    ok = [r for r in ratings if r.judge == "self" and r.status == "ok" and r.story_id.endswith(":induced")]
    ref = stats.cluster_bootstrap([r.expected for r in ok], [r.story_id.split(":")[0] for r in ok], n_boot=N_BOOT)
    got = s["ratings"]["self"]["conditions"]["induced"]
    assert got["estimate"] == pytest.approx(ref.estimate)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high))
    assert got["n"] == N_PROMPTS and s["ratings"]["self"]["n_invalid"] == 1
    assert s["ratings"]["self"]["conditions"]["baseline"]["n"] == N_PROMPTS - 1  # the invalid rating is left out
    # pairwise: 10 right, 1 tie (counts as a loss), 1 invalid (left out, counted)
    pw = s["pairwise"]["self"]
    assert pw["win_rate"]["estimate"] == pytest.approx(10 / 11)
    assert pw["win_rate_excl_ties"]["estimate"] == pytest.approx(1.0)
    assert (pw["n_ties"], pw["n_invalid"]) == (1, 1)
    assert s["pairwise"]["api.v1"]["win_rate"]["estimate"] == pytest.approx(0.5)
    # humans labelled in the other A/B order: the decisions must be flipped before comparing
    assert s["humans"]["judges"]["self"]["agreement"]["estimate"] == pytest.approx(10 / 11)
    assert s["probe"]["induced"]["estimate"] == pytest.approx(
        np.mean([v for k, v in probe.items() if k.endswith(":induced")]))
    assert s["meta"]["lambda"] == [0.5] and s["meta"]["seeds"] == [0] and s["meta"]["direction_layer"] == 8
    assert doc["passed"] is True


def test_pairwise_win_rates_are_split_by_comparison():
    _, _, prefs, _, _ = _run()
    # the judge always prefers the baseline over the creative-prompt story
    prefs += [Preference(judge="self", pair_id=f"p{i:02d}:cb", story_a=f"p{i:02d}:creative", story_b=f"p{i:02d}:baseline", p_first_ab=0.3, p_first_ba=0.7, decision="B", consistent=True)
              for i in range(N_PROMPTS)]
    pw = report.pairwise_summary(prefs, n_boot=N_BOOT)["self"]
    assert pw["comparisons"]["induced>baseline"]["win_rate"]["estimate"] == pytest.approx(10 / 11)
    assert pw["comparisons"]["creative>baseline"]["win_rate"]["estimate"] == 0.0
    assert pw["win_rate"]["estimate"] == pytest.approx(10 / 23)
    assert pw["n_judgements"] == 2 * N_PROMPTS


def test_human_raters_get_a_bar_and_inter_rater_agreement():
    stories, ratings, prefs, probe, humans = _run()
    # a second rater who prefers the baseline on the first four prompts
    humans += [HumanLabel(item_id=h.item_id, story_a=h.story_a, story_b=h.story_b, choice="A" if i < 4 else "B", rater="r2")
               for i, h in enumerate(humans)]
    s = report.summarize(stories, ratings, prefs, probe, humans, n_boot=N_BOOT)
    assert s["pairwise"]["humans"]["comparisons"]["induced>baseline"]["win_rate"]["estimate"] == pytest.approx(20 / 24)
    ref = humans_mod.inter_rater_agreement(humans)
    assert s["humans"]["inter_rater"]["estimate"] == pytest.approx(ref.estimate) and ref.estimate < 1
    assert "humans" not in s["humans"]["judges"]  # humans are the reference there, not a judge
    titles = [t for t, _, _ in report.tables(s)]
    assert "Human raters: inter-rater agreement" in titles


def test_pair_biases_count_consistency_and_longer_wins():
    words = {"p:a": 10, "p:b": 20, "q:a": 5, "q:b": 5, "r:a": 30, "r:b": 3}
    prefs = [Preference(judge="j", pair_id="1", story_a="p:a", story_b="p:b", p_first_ab=0.2, p_first_ba=0.8, decision="B", consistent=True),    # longer wins
             Preference(judge="j", pair_id="2", story_a="r:a", story_b="r:b", p_first_ab=0.3, p_first_ba=0.7, decision="B", consistent=True),    # shorter wins
             Preference(judge="j", pair_id="3", story_a="q:a", story_b="q:b", p_first_ab=0.9, p_first_ba=0.1, decision="A", consistent=True),    # same length: left out
             Preference(judge="j", pair_id="4", story_a="p:a", story_b="p:b", p_first_ab=0.9, p_first_ba=0.9, decision="tie", consistent=False),  # tie: not decisive, inconsistent
             Preference(judge="j", pair_id="5", story_a="x:a", story_b="x:b", p_first_ab=None, p_first_ba=None, decision=None, consistent=None, status="invalid: parse")]
    got = report.pair_biases(prefs, words)
    assert got["position_consistency"]["estimate"] == pytest.approx(3 / 4) and got["position_consistency"]["n"] == 4
    assert got["longer_wins"]["estimate"] == pytest.approx(1 / 2) and got["longer_wins"]["n"] == 2


def test_compare_judges_mcnemar_holm():
    _, ratings, prefs, _, humans = _run()
    res = report.compare_judges(prefs, ratings, humans, n_boot=N_BOOT)
    (t,) = res["mcnemar"]
    assert {t["judge_a"], t["judge_b"]} == {"self", "api.v1"}
    assert t["n"] == 11  # items both judged validly
    ref = rater_stats.mcnemar_exact(*zip(*[(i < 10, i % 2 == 0) for i in range(11)]))
    assert t["p_value"] == pytest.approx(ref["p_value"]) and t["p_holm"] >= t["p_value"]
    assert res["judges"]["api.v1"]["kappa"]["estimate"] < res["judges"]["self"]["kappa"]["estimate"]


def test_rating_judges_get_spearman_with_human_ratings():
    stories, ratings, _, _, _ = _run()
    humans = [HumanLabel(item_id=f"{s.id}#Surprise", story_a=s.id, rating={"baseline": 1.0, "induced": 3.0, "creative": 5.0}
                         [s.condition] + k, rater=f"r{k}") for s in stories for k in (0, 1)]
    res = report.compare_judges([], ratings, humans, n_boot=N_BOOT)
    assert res["judges"]["self"]["spearman"]["Surprise"]["estimate"] > 0.8
    assert res["judges"]["self"]["spearman"]["Surprise"]["n"] == 3 * N_PROMPTS - 1


def _files(tmp_path) -> list[str]:
    stories, ratings, prefs, probe, humans = _run()
    run = tmp_path / "run1"
    write_jsonl(run / "stories.jsonl", stories)
    write_jsonl(run / "ratings.jsonl", ratings)
    write_jsonl(run / "preferences.jsonl", prefs)
    write_jsonl(run / "probe.jsonl", [{"story_id": k, "probe": v} for k, v in probe.items()])
    write_jsonl(tmp_path / "humans.jsonl", humans)
    return [str(run), "--humans", str(tmp_path / "humans.jsonl"), "--out-root", str(tmp_path / "out"),
            "--n-boot", "200"]


@pytest.mark.parametrize("check, code", [
    ("pairwise.self.win_rate.ci_low>=0.5", 0),
    ("ratings.self.conditions.induced.estimate > 8", 1),
    ("pairwise.nobody.win_rate.estimate>=0.5", 1),   # missing path fails, it does not pass silently
    ("pairwise.self.win_rate >= 0.5", 1),            # not a number
    ("pairwise.self.win_rate.ci_low ~ 0.5", 2),      # malformed: usage error
])
def test_ci_mode_exit_codes(tmp_path, capsys, check, code):
    assert main(["report", *_files(tmp_path), "--check", check]) == code
    if code == 2:
        assert "PATH OP NUMBER" in capsys.readouterr().err
        return
    doc = json.loads((tmp_path / "out" / "run1" / "summary.json").read_text())
    assert doc["passed"] is (code == 0) and doc["checks"][0]["expr"] == check
    assert ("❌ fail" in (tmp_path / "out" / "run1" / "summary.md").read_text()) is (code == 1)


def test_cli_compare_judges_reads_files(tmp_path, capsys):
    args = _files(tmp_path)
    assert main(["compare-judges", *args[:3], "--n-boot", "200", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["judges"]["self"]["n_labels"] == N_PROMPTS and res["judges"]["self"]["n_invalid"] == 1


def test_lm_eval_outputs_are_read(tmp_path):
    (tmp_path / "results_2026-01-01T00-00-00.json").write_text(json.dumps(
        {"results": {"creative_rating": {"alias": "x", "rating,none": 4.5, "rating_stderr,none": 0.25}}}))
    write_jsonl(tmp_path / "samples_creative_rating_2026-01-01T00-00-00.jsonl",
                [{"doc_id": i, "metrics": ["rating"], "rating": float(v)} for i, v in enumerate([3, 4, 5, 6])])
    s = report.lm_eval_summary(report.load_runs([tmp_path]).lm_eval)
    m = s["creative_rating"]["rating"]
    assert (m["value"], m["stderr"]) == (4.5, 0.25)
    assert m["samples"]["estimate"] == 4.5 and m["samples"]["n"] == 4


def test_lm_eval_interval_bounds_fold_into_their_metric_with_the_task_interval(tmp_path):
    """One row per metric, carrying the interval lm-eval printed (the task's Wilson bounds), not a second one."""
    from creative_eval.harness import tasks

    wins = [1.0, 0.0, 1.0, 1.0] * 3
    low, high = tasks.ci95_low(wins), tasks.ci95_high(wins)
    (tmp_path / "results_2026-01-01T00-00-00.json").write_text(json.dumps({"results": {"creative_pairwise": {
        "win_rate,none": 0.75, "win_rate_stderr,none": 0.13, "win_rate_ci95_low,none": low,
        "win_rate_ci95_low_stderr,none": "N/A", "win_rate_ci95_high,none": high}}}))
    write_jsonl(tmp_path / "samples_creative_pairwise_2026-01-01T00-00-00.jsonl",
                [{"doc_id": i, "metrics": ["win_rate"], "win_rate": v} for i, v in enumerate(wins)])
    s = report.lm_eval_summary(report.load_runs([tmp_path]).lm_eval)
    assert list(s["creative_pairwise"]) == ["win_rate"]
    ci = s["creative_pairwise"]["win_rate"]["ci"]
    assert (ci["estimate"], ci["ci_low"], ci["ci_high"], ci["n"]) == (0.75, low, high, 12)
    assert s["creative_pairwise"]["win_rate"]["samples"]["ci_low"] == pytest.approx(low)  # Wilson, the same rule
    summary = report.summarize([], [], [], {}, lm_eval=report.load_runs([tmp_path]).lm_eval, n_boot=50)
    (rows,) = [r for title, _, r in render.tables(summary) if title == "lm-eval task creative_pairwise"]
    assert rows == [["win_rate", f"0.750 [{low:.3f}, {high:.3f}]", "0.13", "12"]]


def test_unknown_jsonl_is_a_clear_error(tmp_path):
    write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])
    with pytest.raises(ValueError, match="odd.jsonl.*not stories"):
        report.load_runs([tmp_path / "odd.jsonl"])


def test_check_paths_allow_dotted_judge_names():
    summary = {"pairwise": {"gpt-4.1": {"win_rate": {"ci_low": 0.6}}}}
    (c,) = report.run_checks(summary, ["pairwise.gpt-4.1.win_rate.ci_low>=0.55"])
    assert c.passed and c.value == 0.6
    with pytest.raises(ValueError, match="PATH OP NUMBER"):
        report.parse_check("win_rate")


def test_plot_sweep(tmp_path):
    result = {"layers": [{"layer": l, "auroc": 0.6 + 0.05 * l, "ci_low": 0.5 + 0.05 * l, "ci_high": 0.7 + 0.05 * l,
                          "robust_auroc": 0.55 + 0.04 * l} for l in range(1, 6)],
              "best_layer": 4, "lexical_baseline": {"test_auroc": 0.7, "robust_auroc": 0.4}}
    path = report.plot_sweep(result, tmp_path / "sweep.png")
    assert imread(path)[..., :3].std() > 0.05


def test_cli_compare_judges_without_matching_labels_is_an_error(tmp_path, capsys):
    args = _files(tmp_path)
    write_jsonl(tmp_path / "other.jsonl", [HumanLabel(item_id="x", story_a="q1:baseline", story_b="q1:induced", choice="A")])
    assert main(["compare-judges", args[0], "--humans", str(tmp_path / "other.jsonl")]) == 2
    assert "no judgement matches" in capsys.readouterr().err
