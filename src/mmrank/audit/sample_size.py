"""sample_size: are there enough test queries to detect the observed effect?

From the observed per-query differences (mean ``δ``, sd ``σ``), the number of queries a
two-sided paired t-test needs for ``power`` at ``alpha`` (exact noncentral t). WARN when the
test set is smaller: a "not significant" there means "not measured", and a "significant" one is
likely an overestimate (winner's curse).
"""

from __future__ import annotations

import math

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.stats import paired_power, required_sample_size

NAME = "sample_size"


def check(ctx: AuditContext) -> CheckResult:
    """Measure whether the number of comparable test queries (or users) reaches what a
    two-sided paired t-test needs to detect the observed mean model-vs-baseline difference.

    Rule (policy ``sample_size.power`` and ``sample_size.alpha``): WARN when fewer test units
    than required (infinitely many when the observed effect is 0); PASS otherwise. ``value`` is
    the number of units, ``threshold`` the required number. SKIP without a baseline or with
    fewer than 2 comparable units. Never FAILs."""
    if ctx.baseline_per_query is None:
        return CheckResult.skip(NAME, "no baseline: no effect to size")
    p = ctx.policy[NAME]
    keep = ctx.evaluable & ~np.isnan(ctx.baseline_per_query)
    d = ctx.model_per_query[keep] - ctx.baseline_per_query[keep]
    n = int(d.size)
    if n < 2:
        return CheckResult.skip(NAME, "fewer than 2 comparable test queries")
    effect, sd = float(d.mean()), float(d.std(ddof=1))
    power, alpha = float(p["power"]), float(p["alpha"])
    needed = required_sample_size(effect, sd, power=power, alpha=alpha)
    evidence = {"queries": n, "effect": effect, "sd": sd, "required_queries": needed,
                "power_at_n": paired_power(effect, sd, n, alpha=alpha), "power_target": power}
    unit = ctx.unit
    rule = f"WARN if test {unit} < required for {power:.0%} power"
    if needed > n:
        shown = "∞" if math.isinf(needed) else f"{int(needed)}"
        return CheckResult(NAME, WARN, n, needed, rule, evidence,
                           f"{n} test {unit} give {evidence['power_at_n']:.0%} power for Δ {effect:+.4f} (sd {sd:.3f}); "
                           f"{shown} are needed for {power:.0%} — evaluate on more {unit}")
    return CheckResult(NAME, PASS, n, needed, rule, evidence)
