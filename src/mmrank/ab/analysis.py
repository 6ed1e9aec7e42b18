"""Analysis of an A/B (rollout) or shadow log: sample-ratio mismatch, per-arm metrics with
confidence intervals, guardrails, and the stop / rollback rule (docs/ab_testing.md).

Order of the verdict (each step stops the ones after it):

1. **invalid** — sample-ratio mismatch: the arm counts are not what the rollout share predicts
   (chi-square goodness of fit, ``scipy.stats.chisquare``, p < ``srm_alpha`` = 0.001 by default,
   the threshold of Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled
   Experiments", KDD). The assignment is broken; no metric of the test can be trusted. Fix it and
   restart.
2. **rollback** — a guardrail is breached: the treatment's p95 latency is above control's by more
   than ``max_latency_increase_ms`` (the lower bound of its CI is past the limit), or its
   model-fault fallback rate is above ``max_fallback_rate`` (one-sided binomial test, p < alpha);
   or the primary metric is significantly worse (the CI of treatment − control is below 0).
3. **ship** — the primary metric is significantly better (CI above 0) and each arm has reached the
   planned sample size (the size that detects a relative lift of ``mde`` with 80% power at
   ``alpha``). Looking before then and shipping on the first significant look inflates false
   positives (the "peeking" problem), so a significant early result says **continue**.
4. **stop_no_effect** — the planned size is reached and the CI includes 0: keep control.
5. **continue** — otherwise: keep collecting.

A shadow log (every scored query has status ``shadow``: users all saw the original order) has no
live effect to test; it reports how much the model's order agrees with the shown one and where
clicked candidates would have landed, and the verdict is **shadow**.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from mmrank.ab.events import ARMS, FAULT_REASONS, ABLog
from mmrank.errors import ConfigError, DataError
from mmrank.stats import paired_bootstrap_ci

METRICS = ("clicked", "clicks", "reciprocal_rank", "value")


@dataclass(frozen=True)
class Rules:
    """The thresholds of the verdict (module docstring)."""

    expected_treatment_share: float
    primary: str = "clicked"
    alpha: float = 0.05
    srm_alpha: float = 0.001
    mde: float | None = 0.05
    power: float = 0.8
    max_latency_increase_ms: float = 10.0
    max_fallback_rate: float = 0.01

    def check(self) -> None:
        """Refuse impossible settings before reading the log.

        Raises:
            ConfigError: for a share outside (0, 1), an unknown metric, or a level outside (0, 1).
        """
        if not 0.0 < self.expected_treatment_share < 1.0:
            raise ConfigError(f"expected treatment share {self.expected_treatment_share:g} — use the rollout share in (0, 1)")
        if self.primary not in METRICS:
            raise ConfigError(f"primary metric {self.primary!r} — use one of {', '.join(METRICS)}")
        for name in ("alpha", "srm_alpha", "power"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} — use a value in (0, 1)")
        if self.mde is not None and self.mde <= 0:
            raise ConfigError(f"mde={self.mde} — use a positive relative lift, e.g. 0.05")


def per_assignment(log: ABLog) -> pd.DataFrame:
    """One row per assignment with its outcome metrics: ``clicked`` (0/1), ``clicks``,
    ``reciprocal_rank`` (1 / shown position of the first clicked candidate, 0 without a click),
    ``value`` (sum of outcome values), ``fault`` (a model-fault fallback) and
    ``rr_model`` (the same reciprocal rank in the model's order, NaN when it has none)."""
    a = log.assignments.reset_index(drop=True).copy()
    a["aid"] = np.arange(len(a))
    clicks: dict[int, set] = {}
    values = np.zeros(len(a))
    orphans = 0
    if len(log.outcomes):
        joined = pd.merge_asof(log.outcomes.sort_values("ts"), a[["ts", "query_id", "aid"]].sort_values("ts"),
                               on="ts", by="query_id", direction="backward")
        orphans = int(joined["aid"].isna().sum())
        for aid, c, v in zip(joined["aid"], joined["clicks"], joined["value"]):
            if not np.isnan(aid):
                clicks.setdefault(int(aid), set()).update(map(str, c or []))
                values[int(aid)] += 0.0 if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)
    a["clicks"] = [len(clicks.get(i, ())) for i in range(len(a))]
    a["clicked"] = (a["clicks"] > 0).astype(float)
    a["reciprocal_rank"] = [_rr(s, clicks.get(i)) for i, s in enumerate(a["shown"])]
    a["rr_model"] = [np.nan if m is None else _rr(m, clicks.get(i)) for i, m in enumerate(a["model_order"])]
    a["value"] = values
    a["fault"] = a["reason"].isin(FAULT_REASONS)
    a.attrs["orphan_outcomes"] = orphans
    return a


def _rr(order, clicked) -> float:
    if not clicked:
        return 0.0
    ranks = [n for n, c in enumerate(order or []) if str(c) in clicked]
    return 1.0 / (ranks[0] + 1) if ranks else 0.0


@dataclass
class ArmMetric:
    """One metric in both arms, and the treatment − control difference (Welch)."""

    metric: str
    control: dict
    treatment: dict
    difference: float
    ci: tuple[float, float]
    relative_lift: float | None
    pvalue: float


def _arm(x: np.ndarray, confidence: float) -> dict:
    mean = float(np.mean(x)) if len(x) else float("nan")
    if len(x) < 2 or np.std(x) == 0:
        return {"n": int(len(x)), "mean": mean, "ci": [mean, mean]}
    lo, hi = sps.t.interval(confidence, len(x) - 1, loc=mean, scale=sps.sem(x))
    return {"n": int(len(x)), "mean": mean, "ci": [float(lo), float(hi)]}


def compare_arms(rows: pd.DataFrame, metric: str, alpha: float) -> ArmMetric:
    """Means with t intervals per arm and Welch's CI of the difference (``scipy.stats.ttest_ind``)."""
    c = rows.loc[rows["arm"] == "control", metric].to_numpy(dtype=float)
    t = rows.loc[rows["arm"] == "treatment", metric].to_numpy(dtype=float)
    if len(c) < 2 or len(t) < 2:
        raise DataError("each arm needs at least 2 assignments to compare", hint="collect more traffic")
    diff = float(t.mean() - c.mean())
    if np.std(c) == 0 and np.std(t) == 0:
        ci, p = (diff, diff), (1.0 if diff == 0 else 0.0)
    else:
        res = sps.ttest_ind(t, c, equal_var=False)
        interval = res.confidence_interval(1 - alpha)
        ci, p = (float(interval.low), float(interval.high)), float(res.pvalue)
    lift = diff / c.mean() if c.mean() else None
    return ArmMetric(metric, _arm(c, 1 - alpha), _arm(t, 1 - alpha), diff, ci, lift, p)


def sample_ratio(rows: pd.DataFrame, share: float, srm_alpha: float) -> dict:
    """Chi-square goodness of fit of the arm counts against the expected treatment share."""
    counts = np.array([(rows["arm"] == arm).sum() for arm in ARMS], dtype=float)
    expected = counts.sum() * np.array([1 - share, share])
    res = sps.chisquare(counts, f_exp=expected)
    return {"control": int(counts[0]), "treatment": int(counts[1]), "expected_treatment_share": share,
            "observed_treatment_share": float(counts[1] / counts.sum()), "chi2": float(res.statistic),
            "pvalue": float(res.pvalue), "flagged": bool(res.pvalue < srm_alpha)}


def quantile_ci(x: np.ndarray, q: float, confidence: float) -> tuple[float, float]:
    """Distribution-free CI of the ``q`` quantile from order statistics: the ranks whose
    binomial(n, q) probabilities bound ``confidence`` (no resampling, exact coverage >= level)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n, tail = len(x), (1 - confidence) / 2
    lo = int(max(sps.binom.ppf(tail, n, q) - 1, 0))
    hi = int(min(sps.binom.ppf(1 - tail, n, q), n - 1))
    return float(x[lo]), float(x[hi])


def latency_guardrail(rows: pd.DataFrame, limit_ms: float, alpha: float) -> dict:
    """p50/p95/p99 per arm and a CI of the p95 increase; breached when its lower bound is above
    ``limit_ms``, at risk when the estimate is. The CI combines each arm's order-statistic CI of
    its p95 at level 1 − alpha/2 (``[lo_t − hi_c, hi_t − lo_c]``, joint coverage >= 1 − alpha),
    so a breach is a conservative call and costs no resampling on a million requests."""
    c = rows.loc[rows["arm"] == "control", "latency_ms"].to_numpy(dtype=float)
    t = rows.loc[rows["arm"] == "treatment", "latency_ms"].to_numpy(dtype=float)
    q = {arm: {f"p{p}": float(np.percentile(x, p)) for p in (50, 95, 99)} for arm, x in (("control", c), ("treatment", t))}
    increase = q["treatment"]["p95"] - q["control"]["p95"]
    (c_lo, c_hi), (t_lo, t_hi) = quantile_ci(c, 0.95, 1 - alpha / 2), quantile_ci(t, 0.95, 1 - alpha / 2)
    lo, hi = t_lo - c_hi, t_hi - c_lo
    return {"percentiles_ms": q, "p95_increase_ms": increase, "ci": [lo, hi], "limit_ms": limit_ms,
            "breached": bool(lo > limit_ms), "at_risk": bool(increase > limit_ms)}


def fallback_guardrail(rows: pd.DataFrame, limit: float, alpha: float) -> dict:
    """Model-fault fallback rate of the treatment arm vs ``limit`` (one-sided binomial test)."""
    t = rows[rows["arm"] == "treatment"]
    k, n = int(t["fault"].sum()), len(t)
    test = sps.binomtest(k, n, limit, alternative="greater")
    ci = sps.binomtest(k, n).proportion_ci(1 - alpha, method="wilson")
    reasons = t.loc[t["fault"], "reason"].value_counts().to_dict()
    return {"faults": k, "treatment": n, "rate": k / n, "ci": [float(ci.low), float(ci.high)], "limit": limit,
            "pvalue": float(test.pvalue), "breached": bool(test.pvalue < alpha), "at_risk": bool(k / n > limit),
            "reasons": {str(r): int(v) for r, v in reasons.items()}}


def planned_size(rows: pd.DataFrame, metric: str, mde: float | None, alpha: float, power: float) -> int | None:
    """Assignments per arm that detect a relative lift ``mde`` of the control mean with ``power``
    (two-sided ``alpha``, normal approximation, control's variance for both arms)."""
    c = rows.loc[rows["arm"] == "control", metric].to_numpy(dtype=float)
    if mde is None or len(c) < 2 or c.mean() == 0:
        return None
    delta = mde * abs(c.mean())
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return int(np.ceil(2 * z**2 * c.var(ddof=1) / delta**2))


def shadow_summary(rows: pd.DataFrame, k: int = 10) -> dict:
    """How the model's order compares with the shown one on shadow-scored queries."""
    s = rows[rows["status"] == "shadow"]
    overlap = [len(set(m[:k]) & set(o[:k])) / max(1, min(k, len(o))) for m, o in zip(s["model_order"], s["shown"])]
    top1 = [bool(m) and bool(o) and m[0] == o[0] for m, o in zip(s["model_order"], s["shown"])]
    clicked = s[s["clicked"] > 0]
    out = {"queries": len(s), f"overlap@{k}": float(np.mean(overlap)) if overlap else None,
           "same_top1": float(np.mean(top1)) if top1 else None, "queries_with_clicks": len(clicked)}
    if len(clicked) >= 2:
        ci = paired_bootstrap_ci(clicked["rr_model"].to_numpy(), clicked["reciprocal_rank"].to_numpy(), seed=0)
        out["clicked_reciprocal_rank"] = {"shown": float(clicked["reciprocal_rank"].mean()),
                                          "model": float(clicked["rr_model"].mean()), "difference_ci": [ci.low, ci.high]}
    return out


@dataclass
class ABReport:
    """Everything the analysis found and the verdict, with the reason in words."""

    verdict: str
    reason: str
    srm: dict
    metrics: list[ArmMetric]
    guardrails: dict
    planned_per_arm: int | None
    assignments: int
    outcomes: int
    orphan_outcomes: int
    shadow: dict | None = None
    rules: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {**{k: v for k, v in asdict(self).items() if k != "metrics"}, "metrics": [asdict(m) for m in self.metrics]}


def analyse(log: ABLog, rules: Rules) -> ABReport:
    """Run the whole analysis and the verdict of the module docstring on a parsed log.

    Raises:
        ConfigError: for bad rules.
        DataError: when the log has no assignment or an arm is (nearly) empty.

    Example:
        >>> report = analyse(read_ab_log("ab.jsonl")[0], Rules(expected_treatment_share=0.1))  # doctest: +SKIP
        >>> report.verdict, report.reason  # doctest: +SKIP
    """
    rules.check()
    if log.assignments.empty:
        raise DataError("the log has no assignment events", hint="serve with --ab-log and send traffic")
    rows = per_assignment(log)
    common = dict(srm=sample_ratio(rows, rules.expected_treatment_share, rules.srm_alpha), assignments=len(rows),
                  outcomes=len(log.outcomes), orphan_outcomes=rows.attrs["orphan_outcomes"], rules=asdict(rules))
    scored = rows[rows["status"] != "fallback"]
    if len(scored) and (scored["status"] == "shadow").all():
        return ABReport("shadow", "shadow mode: every user saw the original order, so there is no live effect to "
                        "test — roll out a share to measure one", metrics=[], guardrails={}, planned_per_arm=None,
                        shadow=shadow_summary(rows), **common)
    metrics = [compare_arms(rows, m, rules.alpha) for m in METRICS if m == rules.primary or rows[m].any()]
    guardrails = {"latency": latency_guardrail(rows, rules.max_latency_increase_ms, rules.alpha),
                  "fallback": fallback_guardrail(rows, rules.max_fallback_rate, rules.alpha)}
    planned = planned_size(rows, rules.primary, rules.mde, rules.alpha, rules.power)
    verdict, reason = _verdict(common["srm"], guardrails, next(m for m in metrics if m.metric == rules.primary), planned, rows)
    return ABReport(verdict, reason, metrics=metrics, guardrails=guardrails, planned_per_arm=planned, **common)


def _verdict(srm: dict, guardrails: dict, primary: ArmMetric, planned: int | None, rows: pd.DataFrame) -> tuple[str, str]:
    if srm["flagged"]:
        return "invalid", (f"sample-ratio mismatch: treatment share {srm['observed_treatment_share']:.4f} vs expected "
                           f"{srm['expected_treatment_share']:.4f} (chi-square p = {srm['pvalue']:.2g}) — the assignment is "
                           "broken; stop and fix it before reading any metric")
    breached = [name for name, g in guardrails.items() if g["breached"]]
    if breached:
        return "rollback", f"guardrail breached: {', '.join(breached)}"
    lo, hi = primary.ci
    if hi < 0:
        return "rollback", f"{primary.metric} is significantly worse: {primary.difference:+.4g} [{lo:+.4g}, {hi:+.4g}]"
    smallest = int(min((rows["arm"] == arm).sum() for arm in ARMS))
    reached = planned is None or smallest >= planned
    if lo > 0 and reached:
        return "ship", f"{primary.metric} is significantly better: {primary.difference:+.4g} [{lo:+.4g}, {hi:+.4g}]"
    if lo > 0:
        return "continue", f"significantly better so far, but {smallest} < {planned} planned per arm — keep collecting"
    if reached:
        return "stop_no_effect", (f"planned size reached and {primary.metric} shows no significant difference "
                                  f"[{lo:+.4g}, {hi:+.4g}] — keep control")
    return "continue", f"no significant difference yet; {smallest} of {planned} planned per arm"
