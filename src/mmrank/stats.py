"""Paired statistics for comparing two rankers query by query, on top of ``scipy.stats``.

Every function takes *per-query* values of the two systems on the same queries (``a[i]`` and
``b[i]`` belong to query ``i``), so the comparison is paired: the unit of resampling is the
query, and what is resampled or sign-flipped is the per-query difference ``d = a - b``.

* ``paired_bootstrap_ci``: CI of ``mean(d)`` by ``scipy.stats.bootstrap`` over queries.
  Method: **BCa** by default (bias-corrected and accelerated, Efron 1987: second-order
  accurate, corrects the skew that per-query nDCG differences usually have); ``"percentile"``
  and ``"basic"`` are accepted. BCa is undefined when every difference is equal (the
  jackknife has zero spread); then the CI collapses to that value, which is exact.
* ``randomization_test``: paired (sign-flip) permutation test of ``mean(d) == 0`` by
  ``scipy.stats.permutation_test(permutation_type="samples")``: within each query the two
  systems' values are swapped at random, the null being that the labels "a"/"b" are
  exchangeable per query (Smucker, Allan & Carterette 2007 recommend it for IR).
* ``paired_t_test`` / ``wilcoxon_test``: the parametric and rank-based companions.
* ``holm``: Holm-Bonferroni step-down adjustment when several comparisons are made.
* ``seed_variance``: k seeds -> mean ± sample sd.
* ``paired_power`` / ``required_sample_size``: power of the two-sided paired t-test (exact,
  noncentral t) and the smallest number of queries that reaches the target power.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

from mmrank.errors import ConfigError, DataError

__all__ = [
    "BootstrapCI",
    "TestResult",
    "paired_bootstrap_ci",
    "randomization_test",
    "paired_t_test",
    "wilcoxon_test",
    "holm",
    "seed_variance",
    "paired_power",
    "required_sample_size",
]

_METHODS = ("BCa", "percentile", "basic")


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap confidence interval of a mean (difference): the sample mean, the interval's
    ``low``/``high`` bounds, and how it was computed (confidence, method, resamples, ``n`` pairs)."""

    mean: float
    low: float
    high: float
    confidence: float
    method: str
    n_resamples: int
    n: int

    def to_dict(self) -> dict:
        """Every field as a plain dict (mean, low, high, confidence, method, n_resamples, n)."""
        return asdict(self)


@dataclass(frozen=True)
class TestResult:
    """One hypothesis test's statistic and p-value, the test's name and the number of pairs."""

    statistic: float
    pvalue: float
    test: str
    n: int

    def to_dict(self) -> dict:
        """Every field as a plain dict (statistic, pvalue, test, n)."""
        return asdict(self)


def paired_differences(a: Sequence[float], b: Sequence[float] | None = None) -> np.ndarray:
    """``a - b`` as float64 after checking the pairing (same length, finite, non-empty).

    ``b=None`` means ``a`` already holds the differences."""
    a = np.asarray(a, dtype=np.float64).ravel()
    d = a if b is None else a - _same_shape(a, np.asarray(b, dtype=np.float64).ravel())
    if d.size == 0:
        raise DataError("no queries to compare — the per-query arrays are empty")
    if not np.all(np.isfinite(d)):
        raise DataError(
            "per-query values contain NaN or infinity",
            hint="drop queries with no defined metric (no_relevant='skip') before comparing",
        )
    return d


def _same_shape(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:
        raise DataError(f"paired comparison needs the same queries: {a.shape[0]} vs {b.shape[0]} values")
    return b


# Resamples drawn per batch: scipy holds (batch, n) arrays, so a batch of at most ~4M values keeps
# a test over 10,000 users at tens of MB instead of gigabytes (10,000 resamples x 9,430 users held
# at once peaked at 6.7 GB in the randomization test). Batching draws the same random numbers in
# the same order, so results are identical.
BATCH_VALUES = 4_000_000


def _batch(n: int, n_resamples: int) -> int:
    return max(1, min(int(n_resamples), BATCH_VALUES // max(int(n), 1)))


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float] | None = None,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    method: str = "BCa",
    seed: int = 0,
) -> BootstrapCI:
    """CI of the mean per-query difference ``mean(a - b)`` by bootstrapping queries.

    Calls ``scipy.stats.bootstrap((d,), np.mean, ...)`` with a ``numpy.random.default_rng(seed)``;
    the same call made directly gives the same interval."""
    if method not in _METHODS:
        raise ConfigError(f"bootstrap method {method!r} — use one of {_METHODS}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} — use a value in (0, 1), e.g. 0.95")
    d = paired_differences(a, b)
    mean = float(d.mean())
    if d.size < 2 or np.all(d == d[0]):
        # Nothing to resample: every bootstrap mean equals the sample mean.
        return BootstrapCI(mean, mean, mean, confidence, method, int(n_resamples), int(d.size))
    res = sps.bootstrap(
        (d,),
        np.mean,
        n_resamples=int(n_resamples),
        confidence_level=confidence,
        method=method,
        vectorized=True,
        rng=np.random.default_rng(seed),
        batch=_batch(d.size, n_resamples),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return BootstrapCI(mean, lo, hi, confidence, method, int(n_resamples), int(d.size))


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def randomization_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = 10_000,
    alternative: str = "two-sided",
    seed: int = 0,
) -> TestResult:
    """Paired randomization test of ``mean(a - b) == 0``.

    ``scipy.stats.permutation_test((a, b), mean(x - y), permutation_type="samples")``: each
    resample swaps the two systems' values within a random subset of queries. With few queries
    (``2**n <= n_resamples``) scipy enumerates every swap pattern and the p-value is exact."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    d = paired_differences(a, b)
    res = sps.permutation_test(
        (a, b),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=int(n_resamples),
        alternative=alternative,
        rng=np.random.default_rng(seed),
        batch=_batch(d.size, n_resamples),
    )
    return TestResult(float(res.statistic), float(res.pvalue), "randomization (paired, sign-flip)", int(d.size))


def paired_t_test(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided") -> TestResult:
    """``scipy.stats.ttest_rel``; p is 1.0 when every difference is 0 (no evidence at all)."""
    d = paired_differences(a, b)
    if np.all(d == d[0]):  # no spread: t is 0 or ±inf, and p follows from the sign alone
        if d[0] == 0:
            return TestResult(0.0, 1.0, "paired t", int(d.size))
        agrees = alternative == "two-sided" or (alternative == "greater") == (d[0] > 0)
        return TestResult(math.copysign(math.inf, d[0]), 0.0 if agrees else 1.0, "paired t", int(d.size))
    res = sps.ttest_rel(np.asarray(a, float), np.asarray(b, float), alternative=alternative)
    return TestResult(float(res.statistic), float(res.pvalue), "paired t", int(d.size))


def wilcoxon_test(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided") -> TestResult:
    """``scipy.stats.wilcoxon`` signed-rank test (zero differences dropped, Wilcoxon's rule)."""
    d = paired_differences(a, b)
    if np.all(d == 0):
        return TestResult(0.0, 1.0, "Wilcoxon signed-rank", int(d.size))
    res = sps.wilcoxon(d, zero_method="wilcox", alternative=alternative)
    return TestResult(float(res.statistic), float(res.pvalue), "Wilcoxon signed-rank", int(d.size))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given), capped at 1.

    Reject hypothesis i at level alpha iff ``adjusted[i] < alpha``: controls the family-wise
    error rate without assuming independence (Holm 1979)."""
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        return p
    if np.any((p < 0) | (p > 1) | ~np.isfinite(p)):
        raise DataError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    out = np.empty(m)
    out[order] = adjusted_sorted
    return out


def seed_variance(values: Sequence[float]) -> dict:
    """k per-seed results -> ``{"mean", "sd", "k", "values"}`` (sd with ddof=1; 0.0 for k=1)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise DataError("seed_variance needs at least one seed's value")
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "sd": sd, "k": int(v.size), "values": [float(x) for x in v]}


def paired_power(effect: float, sd: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` for a true mean difference
    ``effect`` with per-query sd ``sd`` and ``n`` queries (exact, noncentral t)."""
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = n - 1
    nc = abs(effect) / sd * math.sqrt(n)
    t_crit = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(t_crit, df, nc) + sps.nct.cdf(-t_crit, df, nc))


def required_sample_size(
    effect: float, sd: float, *, power: float = 0.8, alpha: float = 0.05, max_n: int = 10_000_000
) -> float:
    """Smallest number of queries giving ``power`` for the paired t-test; ``inf`` when the
    effect is 0 or more than ``max_n`` queries would be needed."""
    if not 0 < power < 1:
        raise ConfigError(f"power={power} — use a value in (0, 1), e.g. 0.8")
    if effect == 0 or not math.isfinite(effect):
        return math.inf
    if sd <= 0:
        return 2
    # Normal approximation as a start, then exact search upward/downward on the t power.
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    n = max(2, int(math.ceil((z * sd / abs(effect)) ** 2)))
    if n > max_n:
        return math.inf
    while n > 2 and paired_power(effect, sd, n - 1, alpha=alpha) >= power:
        n -= 1
    while paired_power(effect, sd, n, alpha=alpha) < power:
        n += 1
        if n > max_n:
            return math.inf
    return n
