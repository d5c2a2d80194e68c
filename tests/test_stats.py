"""Tests for creative_eval.stats: known published values, agreement with the
underlying libraries, and a coverage simulation for the cluster bootstrap."""

import math

import krippendorff
import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import cohen_kappa_score

from creative_eval import rater_stats as R
from creative_eval import stats as S


def test_wilson_known_value():
    est = S.proportion_ci(72, 100, unit="prompt")
    assert (round(est.ci_low, 3), round(est.ci_high, 3)) == (0.625, 0.799)
    assert est.estimate == 0.72 and est.n == 100
    assert str(est) == "0.72 [0.63, 0.80] (n=100 prompt, wilson)"
    assert est.to_dict()["extra"] == {"k": 72}


def test_proportion_ci_empty_is_nan():
    est = S.proportion_ci(0, 0)
    assert est.n == 0 and math.isnan(est.estimate) and math.isnan(est.ci_low)


def test_t_interval_matches_scipy_and_hand_formula():
    x = np.array([2.1, 3.4, 1.9, 5.6, 4.2, 3.3, 2.8])
    est = S.mean_ci(x, method="t")
    lo, hi = sps.t.interval(0.95, df=x.size - 1, loc=x.mean(), scale=sps.sem(x))
    assert est.ci_low == pytest.approx(lo) and est.ci_high == pytest.approx(hi)
    half = sps.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    assert est.ci_high - est.estimate == pytest.approx(half)
    assert est.n == 7 and est.method == "t"


def test_mean_ci_drops_nan_and_handles_tiny_n():
    est = S.mean_ci([1.0, np.nan, 3.0, np.nan])
    assert est.n == 2 and est.extra["n_dropped"] == 2 and est.estimate == 2.0
    single = S.mean_ci([5.0, np.nan])
    assert single.n == 1 and single.estimate == 5.0
    assert math.isnan(single.ci_low) and math.isnan(single.ci_high)


def test_bca_contains_mean_and_is_deterministic():
    x = np.random.default_rng(3).exponential(size=60)
    a = S.mean_ci(x, method="bca", seed=7)
    b = S.mean_ci(x, method="bca", seed=7)
    c = S.mean_ci(x, method="bca", seed=8)
    assert a.ci_low < x.mean() < a.ci_high
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def _correlated_pairs(rng, n_clusters, icc=0.8):
    shared = np.repeat(rng.normal(size=n_clusters), 2) * math.sqrt(icc)
    return shared + rng.normal(size=2 * n_clusters) * math.sqrt(1 - icc)


def test_cluster_bootstrap_coverage_beats_naive():
    # Percentile bootstrap is slightly narrow for few clusters (~0.94 at 40), so use
    # 100 clusters and enough data sets that 0.93 is > 2 SE below the expected ~0.945.
    rng = np.random.default_rng(2024)
    n_sims, n_naive, n_clusters = 1000, 300, 100
    clusters = np.repeat(np.arange(n_clusters), 2)
    items = np.arange(2 * n_clusters)
    hits_cluster = hits_naive = 0
    for i in range(n_sims):
        values = _correlated_pairs(rng, n_clusters)  # true mean 0
        est = S.cluster_bootstrap(values, clusters, n_boot=500, seed=i)
        hits_cluster += est.ci_low <= 0 <= est.ci_high
        if i < n_naive:
            naive = S.cluster_bootstrap(values, items, n_boot=500, seed=i, unit="item")
            hits_naive += naive.ci_low <= 0 <= naive.ci_high
    coverage, naive_coverage = hits_cluster / n_sims, hits_naive / n_naive
    assert coverage >= 0.93
    assert naive_coverage < coverage - 0.04  # item-level resampling ignores the correlation


def test_cluster_bootstrap_reports_clusters_and_is_deterministic():
    values = _correlated_pairs(np.random.default_rng(0), 30)
    clusters = [f"p{i}" for i in np.repeat(np.arange(30), 2)]
    a = S.cluster_bootstrap(values, clusters, n_boot=300, seed=1)
    b = S.cluster_bootstrap(values, clusters, n_boot=300, seed=1)
    assert a == b
    assert a.n == 30 and a.extra["n_items"] == 60 and a.unit == "prompt"
    assert a.estimate == pytest.approx(values.mean())
    median = S.cluster_bootstrap(values, clusters, np.median, n_boot=300)
    assert median.estimate == pytest.approx(np.median(values))


def test_auroc_perfect_and_random():
    labels = np.array([0] * 20 + [1] * 20)
    perfect = S.auroc_ci(labels, np.arange(40), n_boot=300)
    assert perfect.estimate == 1.0 and perfect.ci_low == pytest.approx(1.0) and perfect.n == 40
    rng = np.random.default_rng(5)
    random_labels = rng.integers(0, 2, 300)
    chance = S.auroc_ci(random_labels, rng.normal(size=300), n_boot=300)
    assert chance.ci_low < 0.5 < chance.ci_high


def test_auroc_clusters_and_skipped_resamples():
    labels = [0, 1] * 3
    scores = [0.1, 0.9, 0.4, 0.3, 0.2, 0.8]
    est = S.auroc_ci(labels, scores, clusters=[0, 0, 1, 1, 2, 2], unit="prompt", n_boot=300)
    assert est.n == 3 and est.unit == "prompt"
    single_class_clusters = S.auroc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], clusters=[0, 0, 1, 1], n_boot=300)
    assert single_class_clusters.extra["n_skipped"] > 0  # resamples of one cluster twice have one class


def test_pairwise_agreement_counts_with_ties():
    judge = ["A", "B", "tie", "A", None, "B"]
    human = ["A", "A", "tie", "tie", "B", "B"]
    res = R.pairwise_agreement(judge, human)
    incl, excl, tie = res["accuracy_incl_ties"], res["accuracy_excl_ties"], res["tie_rate"]
    assert (incl.extra["k"], incl.n) == (3, 6)  # items 0, 2 (both tie), 5
    assert (excl.extra["k"], excl.n) == (2, 3)  # only items 0, 1, 5 are non-tie for both
    assert (tie.extra["k"], tie.n) == (2, 6)
    assert incl.extra["both_tie"] == 1 and incl.extra["human_ties"] == 2
    assert (excl.ci_low, excl.ci_high) == (S.proportion_ci(2, 3).ci_low, S.proportion_ci(2, 3).ci_high)
    numeric = R.pairwise_agreement([0, 1, None, 0, float("nan"), 1], [0, 0, "TIE", None, 1, 1])
    assert {k: v.estimate for k, v in numeric.items()} == {k: v.estimate for k, v in res.items()}


def test_pairwise_agreement_with_clusters():
    judge = ["A", "B", "A", "A", "tie", "B", "B", "B"]
    human = ["A", "B", "B", "A", "A", "B", "A", "B"]
    res = R.pairwise_agreement(judge, human, clusters=[1, 1, 2, 2, 3, 3, 4, 4], unit="pair", n_boot=300)
    incl = res["accuracy_incl_ties"]
    assert incl.n == 4 and incl.unit == "pair" and incl.method == "cluster-bootstrap"
    assert incl.estimate == pytest.approx(5 / 8)
    assert res["accuracy_excl_ties"].extra["n_items"] == 7


def test_cohen_kappa_matches_sklearn():
    rng = np.random.default_rng(11)
    a = rng.integers(0, 4, 80)
    b = np.where(rng.random(80) < 0.6, a, rng.integers(0, 4, 80))
    plain = R.cohen_kappa(a, b, n_boot=300)
    assert plain.estimate == pytest.approx(cohen_kappa_score(a, b))
    assert plain.ci_low < plain.estimate < plain.ci_high and plain.n == 80
    quad = R.cohen_kappa(a, b, weights="quadratic", n_boot=300)
    assert quad.estimate == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))
    assert quad.estimate != pytest.approx(plain.estimate)


def test_krippendorff_alpha_agrees_with_package():
    perfect = np.array([[1, 2, 3, 1, 2, 3], [1, 2, 3, 1, 2, 3]], dtype=float)
    assert R.krippendorff_alpha(perfect, n_boot=200).estimate == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    data = rng.integers(1, 6, size=(3, 40)).astype(float)
    data[0, :5] = np.nan
    est = R.krippendorff_alpha(data, level="ordinal", n_boot=200)
    assert est.estimate == pytest.approx(krippendorff.alpha(data, level_of_measurement="ordinal"))
    assert est.n == 40 and est.ci_low <= est.ci_high


def test_correlation_p_value_matches_scipy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    spear = S.correlation_ci(x, y, n_boot=300)
    ref = sps.spearmanr(x, y)
    assert spear.estimate == pytest.approx(ref.statistic)
    assert spear.extra["p_value"] == pytest.approx(ref.pvalue)
    assert spear.ci_low < spear.estimate < spear.ci_high
    kendall = S.correlation_ci(np.append(x, np.nan), np.append(y, 1.0), method="kendall", n_boot=300)
    assert kendall.extra["p_value"] == pytest.approx(sps.kendalltau(x, y).pvalue)
    assert kendall.n == 50 and kendall.extra["n_dropped"] == 1


def test_mcnemar_exact_known_table():
    # b=10, c=2: exact two-sided binomial p = 2 * P(X <= 2 | n=12, 0.5) = 158/4096
    a = [1] * 10 + [0] * 2 + [1] * 5 + [0] * 3
    b = [0] * 10 + [1] * 2 + [1] * 5 + [0] * 3
    res = R.mcnemar_exact(a, b)
    assert (res["b"], res["c"], res["n"]) == (10, 2, 20)
    assert res["p_value"] == pytest.approx(0.0386, abs=1e-4)


def test_paired_accuracy_diff():
    rng = np.random.default_rng(9)
    a = rng.random(200) < 0.8
    b = np.where(rng.random(200) < 0.7, a, rng.random(200) < 0.6)
    est = R.paired_accuracy_diff(a, b, n_boot=500)
    assert est.estimate == pytest.approx(a.mean() - b.mean())
    assert est.ci_low < est.estimate < est.ci_high and est.n == 200
    same = R.paired_accuracy_diff(a, a, n_boot=100)
    assert (same.estimate, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    clustered = R.paired_accuracy_diff(a, b, clusters=np.repeat(np.arange(50), 4), n_boot=300)
    assert clustered.n == 50 and clustered.method == "cluster-bootstrap"


def test_holm_known_values():
    assert R.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: S.mean_ci([[1, 2], [3, 4]]), "x"),
        (lambda: S.mean_ci([1, 2, 3], confidence=95), "confidence"),
        (lambda: S.proportion_ci(5, 3), "k"),
        (lambda: S.cluster_bootstrap([1.0, 2.0, 3.0], [0, 1]), "clusters"),
        (lambda: S.cluster_bootstrap([1.0, np.nan], [0, 1]), "values"),
        (lambda: S.auroc_ci([1, 1, 1], [0.1, 0.2, 0.3]), "labels"),
        (lambda: S.auroc_ci([0, 1], [0.1, 0.2, 0.3]), "labels"),
        (lambda: R.pairwise_agreement(["A", "C"], ["A", "B"]), "judge"),
        (lambda: R.pairwise_agreement(["A"], ["A", "B"]), "human"),
        (lambda: R.cohen_kappa([1, 2], [1, 2], weights="cubic"), "weights"),
        (lambda: R.cohen_kappa([1, 2, 3], [1, 2]), "b"),
        (lambda: R.krippendorff_alpha([1.0, 2.0, 3.0]), "reliability_data"),
        (lambda: S.correlation_ci([1, 2, 3], [1, 2], method="pearson"), "method"),
        (lambda: R.mcnemar_exact([1, 0, 2], [1, 0, 1]), "correct_a"),
        (lambda: R.paired_accuracy_diff([1, 0], [1, 0, 1]), "correct_b"),
        (lambda: R.holm([0.5, 1.5]), "p_values"),
    ],
)
def test_bad_inputs_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
