"""mmrank.stats: equal to scipy called directly, calibrated under the null, powerful enough."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from mmrank import stats
from mmrank.errors import ConfigError, DataError


@pytest.fixture
def fixed_pair():
    rng = np.random.default_rng(42)
    a = rng.beta(2, 3, size=120)
    b = np.clip(a - 0.02 + rng.normal(0, 0.1, size=120), 0, 1)
    return a, b


def test_bootstrap_ci_equals_scipy_called_directly(fixed_pair):
    a, b = fixed_pair
    ci = stats.paired_bootstrap_ci(a, b, n_resamples=2000, seed=7)
    direct = sps.bootstrap((a - b,), np.mean, n_resamples=2000, method="BCa", vectorized=True,
                           rng=np.random.default_rng(7))
    assert ci.low == direct.confidence_interval.low
    assert ci.high == direct.confidence_interval.high
    assert ci.mean == pytest.approx(np.mean(a - b))
    assert ci.low < ci.mean < ci.high
    pct = stats.paired_bootstrap_ci(a, b, n_resamples=2000, seed=7, method="percentile")
    direct_pct = sps.bootstrap((a - b,), np.mean, n_resamples=2000, method="percentile",
                               vectorized=True, rng=np.random.default_rng(7))
    assert (pct.low, pct.high) == (direct_pct.confidence_interval.low, direct_pct.confidence_interval.high)


def test_randomization_p_equals_scipy_called_directly(fixed_pair):
    a, b = fixed_pair
    res = stats.randomization_test(a, b, n_resamples=3000, seed=3)
    direct = sps.permutation_test((a, b), lambda x, y, axis: np.mean(x - y, axis=axis),
                                  permutation_type="samples", vectorized=True, n_resamples=3000,
                                  rng=np.random.default_rng(3))
    assert res.pvalue == direct.pvalue
    assert res.statistic == pytest.approx(direct.statistic)


def test_exchangeable_systems_are_rarely_called_different():
    """Same distribution, independent noise: p >= 0.05 in at least 90 of 100 seeded repeats."""
    not_rejected = 0
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        quality = rng.beta(2, 2, size=200)  # per-query difficulty shared by both systems
        a = np.clip(quality + rng.normal(0, 0.1, 200), 0, 1)
        b = np.clip(quality + rng.normal(0, 0.1, 200), 0, 1)
        p = stats.randomization_test(a, b, n_resamples=999, seed=seed).pvalue
        not_rejected += p >= 0.05
    assert not_rejected >= 90


def test_planted_gain_of_five_points_on_500_queries_is_detected():
    rng = np.random.default_rng(5)
    quality = rng.beta(2, 2, size=500)
    b = np.clip(quality + rng.normal(0, 0.15, 500), 0, 1)
    a = np.clip(quality + 0.05 + rng.normal(0, 0.15, 500), 0, 1)
    p = stats.randomization_test(a, b, n_resamples=2000, seed=0).pvalue
    ci = stats.paired_bootstrap_ci(a, b, n_resamples=2000, seed=0)
    assert p < 0.05
    assert ci.low > 0 and 0.02 < ci.mean < 0.08
    assert stats.paired_t_test(a, b).pvalue < 0.05
    assert stats.wilcoxon_test(a, b).pvalue < 0.05


def test_identical_systems_give_no_evidence():
    a = np.linspace(0, 1, 30)
    ci = stats.paired_bootstrap_ci(a, a)
    assert (ci.low, ci.mean, ci.high) == (0.0, 0.0, 0.0)
    assert stats.paired_t_test(a, a).pvalue == 1.0
    assert stats.wilcoxon_test(a, a).pvalue == 1.0
    assert stats.randomization_test(a, a, n_resamples=500).pvalue == 1.0


def test_t_and_wilcoxon_match_scipy(fixed_pair):
    a, b = fixed_pair
    assert stats.paired_t_test(a, b).pvalue == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert stats.wilcoxon_test(a, b).pvalue == pytest.approx(sps.wilcoxon(a - b).pvalue)


def test_holm_matches_hand_computation():
    p = [0.01, 0.04, 0.03, 0.20]
    # sorted 0.01,0.03,0.04,0.20 -> 4*0.01, 3*0.03, 2*0.04, 1*0.20 with running max
    np.testing.assert_allclose(stats.holm(p), [0.04, 0.09, 0.09, 0.20])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])
    assert stats.holm([]).size == 0
    with pytest.raises(DataError):
        stats.holm([1.5])


def test_seed_variance():
    out = stats.seed_variance([0.40, 0.42, 0.44])
    assert out["mean"] == pytest.approx(0.42)
    assert out["sd"] == pytest.approx(0.02)
    assert out["k"] == 3
    assert stats.seed_variance([0.3])["sd"] == 0.0


def test_power_and_required_sample_size_are_consistent():
    n = stats.required_sample_size(0.05, 0.2)
    # normal approximation: ((1.96 + 0.8416) * 0.2 / 0.05)^2 = 125.6; the t-test needs a bit more
    assert 126 <= n <= 130
    assert stats.paired_power(0.05, 0.2, n) >= 0.8 > stats.paired_power(0.05, 0.2, n - 1)
    assert stats.required_sample_size(0.0, 0.2) == math.inf
    # simulated power agrees with the formula (within Monte Carlo error)
    rng = np.random.default_rng(0)
    hits = sum(sps.ttest_1samp(rng.normal(0.05, 0.2, n), 0).pvalue < 0.05 for _ in range(400))
    assert 0.72 <= hits / 400 <= 0.88


def test_bad_input_is_refused():
    with pytest.raises(DataError):
        stats.paired_bootstrap_ci([1, 2], [1, 2, 3])
    with pytest.raises(DataError):
        stats.paired_bootstrap_ci([np.nan, 1.0], [0.0, 0.0])
    with pytest.raises(ConfigError):
        stats.paired_bootstrap_ci([1.0, 2.0], [0.0, 1.0], method="magic")


def test_paired_t_with_constant_differences_follows_the_alternative():
    a, b = [1.0, 2.0, 3.0], [0.5, 1.5, 2.5]  # every difference +0.5
    assert stats.paired_t_test(a, b).pvalue == 0.0
    assert stats.paired_t_test(a, b, alternative="greater").pvalue == 0.0
    assert stats.paired_t_test(a, b, alternative="less").pvalue == 1.0
