"""One rule for every interval: Wilson for shares (a cluster bootstrap only where clusters hold several items,
falling back to Wilson where it collapses), means cut to their range, and no informative-looking CI below
`stats.MIN_N`. Cases computed by hand (z = 1.959964)."""

from __future__ import annotations

import math

import pytest

from creative_eval import rater_stats, stats
from creative_eval.harness import tasks
from creative_eval.probe import controls
from creative_eval.report.render import fmt_estimate

Z = 1.959964


def wilson(k: int, n: int) -> tuple[float, float]:
    centre = (k + Z * Z / 2) / (n + Z * Z)
    half = Z * math.sqrt(k * (n - k) / n + Z * Z / 4) / (n + Z * Z)
    return centre - half, centre + half


def test_wilson_by_hand_at_n_3_with_exact_ends():
    for k in range(4):
        e = stats.proportion_ci(k, 3)
        low, high = wilson(k, 3)
        assert e.ci_low == pytest.approx(max(low, 0), abs=1e-6) and e.ci_high == pytest.approx(min(high, 1), abs=1e-6)
    assert stats.proportion_ci(0, 3).ci_low == 0.0 and stats.proportion_ci(3, 3).ci_high == 1.0  # not 5.6e-17
    assert stats.proportion_ci(2, 3).ci_low == pytest.approx(0.2077, abs=1e-4)
    assert stats.proportion_ci(2, 3).ci_high == pytest.approx(0.9385, abs=1e-4)


def test_a_share_over_single_item_clusters_is_wilson():
    e = stats.proportion([1, 1, 0], clusters=["p1", "p2", "p3"])
    assert (e.ci_low, e.ci_high) == pytest.approx(wilson(2, 3), abs=1e-6) and e.method == "wilson"


def test_a_collapsed_cluster_bootstrap_falls_back_to_wilson():
    e = stats.proportion([0] * 6, clusters=["a", "a", "b", "b", "c", "c"])
    assert e.estimate == 0 and e.ci_low == 0 and e.ci_high == pytest.approx(wilson(0, 6)[1], abs=1e-6)
    assert "collapsed" in e.method and e.n == 3
    wide = stats.proportion([1, 1, 0, 0, 1, 0, 0, 0] * 10, clusters=[f"p{i // 2}" for i in range(80)])
    assert wide.method == "cluster-bootstrap" and 0 <= wide.ci_low < 3 / 8 < wide.ci_high <= 1


def test_a_win_rate_of_0_of_3_is_not_0_to_0():
    parts = rater_stats.pairwise_agreement(["B", "B", "B"], ["A", "A", "A"], clusters=["p1", "p2", "p3"])
    acc = parts["accuracy_incl_ties"]
    assert acc.estimate == 0 and acc.ci_high == pytest.approx(wilson(0, 3)[1], abs=1e-6)


def test_a_mean_probability_stays_inside_0_1():
    x = [0.99, 0.97, 0.70]
    free = stats.mean_ci(x)
    cut = stats.mean_ci(x, bounds=(0, 1))
    assert free.ci_high > 1 and cut.ci_high == 1.0 and cut.ci_low == pytest.approx(free.ci_low)
    assert tasks.p_ci95_high(x) == 1.0 and tasks.ci95_high(x) > 1


def test_small_n_prints_no_interval():
    small = stats.plain(stats.proportion_ci(2, 3))
    assert fmt_estimate(small) == "0.67 (n too small for a CI)"
    big = stats.plain(stats.proportion_ci(20, 30))
    assert fmt_estimate(big) == f"0.67 [{wilson(20, 30)[0]:.2f}, {wilson(20, 30)[1]:.2f}]"
    assert stats.MIN_N > 3


def test_score_lines_follow_the_same_small_n_rule():
    """`score` prints the probe's comparisons by the report's rule: at 3 prompts no interval."""
    win = stats.plain(stats.proportion_ci(2, 3, unit="prompt"))
    rho = stats.plain(stats.correlation_ci([0.1, 0.3, 0.2, 0.5], [10, 30, 20, 50]))
    lines = controls.describe({"comparisons": [{"a": "induced", "b": "baseline", "tokens": "response", "win_rate": win,
                                                "random": {"percentile": 0.5, "n": 200, "null_p99": 1.0}}],
                               "length_spearman": rho})
    assert lines["probe induced > baseline"].startswith("0.67 (n too small for a CI) of 3 prompts")
    assert lines["probe vs story length"] == "Spearman 1.00 (n too small for a CI) (n=4 stories)"
