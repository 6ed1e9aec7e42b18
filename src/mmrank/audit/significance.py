"""significance: is the model's gain over the baseline real, on these test queries?

Paired per-query differences ``model - baseline`` of the audit metric: bootstrap CI95 (BCa) of
the mean and the paired randomization p-value; the paired t and Wilcoxon p are reported beside
them. PASS when the CI's lower bound exceeds ``min_gain`` and p < ``alpha``; FAIL when the whole
CI lies below zero (the model is worse); WARN otherwise (not shown to be better). Per-domain
differences are tested too, with Holm's correction over the domains.

Ties: the metric breaks equal scores by row position, so a model with many ties can gain from
a file sorted by label. The share of tied scores is reported for both systems and, when either
has ties, Δ is judged again with ties put in random order (``tie_draws`` seeded orders): a gain
that is not significant under random tie order is not a gain — WARN, not PASS.
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.stats import holm, paired_bootstrap_ci, paired_t_test, randomization_test, wilcoxon_test

NAME = "significance"


def per_domain(ctx: AuditContext, model: np.ndarray, base: np.ndarray, domains: np.ndarray) -> list[dict]:
    """The model-vs-baseline difference within each domain that has at least policy
    ``significance.min_domain_queries`` queries: bootstrap CI and two-sided randomization p,
    Holm-adjusted over the domains tested.

    Args:
        ctx: the audit context (policy, bootstrap options, seed).
        model: (Q,) per-query metric of the model.
        base: (Q,) per-query metric of the baseline, same queries.
        domains: (Q,) domain of each query.

    Returns:
        One dict per tested domain, sorted by domain: ``domain``, ``queries``, ``delta``,
        ``low``, ``high``, ``p``, ``p_holm``."""
    p = ctx.policy[NAME]
    rows = []
    for d in sorted(set(domains.tolist())):
        sel = domains == d
        if sel.sum() < int(p["min_domain_queries"]):
            continue
        ci = paired_bootstrap_ci(model[sel], base[sel], **ctx.stats_options())
        pv = randomization_test(model[sel], base[sel], n_resamples=int(p["permutation_resamples"]), seed=ctx.seed).pvalue
        rows.append({"domain": d, "queries": int(sel.sum()), "delta": ci.mean, "low": ci.low, "high": ci.high, "p": pv})
    for row, adj in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = float(adj)
    return rows


def tie_evidence(ctx, keep: np.ndarray, min_gain: float, alpha: float) -> dict | None:
    """Tied-score shares, and Δ with ties in random order when either system has ties (rerankers;
    None for contexts without candidate scores, e.g. recommenders ranking every item)."""
    if not hasattr(ctx, "per_query_random_ties"):
        return None
    from mmrank.audit.context import tie_share

    p = ctx.policy[NAME]
    shares = {"model": tie_share(ctx.model_scores, ctx.test.offsets),
              "baseline": tie_share(ctx.baseline_scores, ctx.test.offsets)}
    if max(shares.values()) == 0:
        return {"tie_share": shares, "significant": True}
    draws = int(p["tie_draws"])
    model = ctx.per_query_random_ties(ctx.model_scores, draws)[keep]
    base = ctx.per_query_random_ties(ctx.baseline_scores, draws)[keep]
    ci = paired_bootstrap_ci(model, base, **ctx.stats_options())
    pv = randomization_test(model, base, n_resamples=int(p["permutation_resamples"]), seed=ctx.seed).pvalue
    return {"tie_share": shares, "draws": draws, "delta_ci": ci.to_dict(), "randomization_p": pv,
            "significant": bool(ci.low > min_gain and pv < alpha)}


def check(ctx: AuditContext) -> CheckResult:
    """Measure the mean per-query gain ``model - baseline`` of the audit metric with its
    bootstrap CI (policy ``significance.confidence``, ``bootstrap_resamples``,
    ``bootstrap_method``) and a two-sided paired randomization p (``permutation_resamples``).

    Rule: PASS when the CI low bound exceeds ``significance.min_gain`` and p < ``alpha`` — and,
    when either system has tied scores, the same still holds with ties in random order
    (``tie_draws`` orders), else WARN (a gain made by row order); FAIL when the CI high bound
    is below 0 (the model is worse: NO_GO); WARN otherwise (gain not shown). SKIP without a
    baseline or with fewer than 2 comparable queries. ``value`` is the mean gain. Per-domain
    results (``min_domain_queries``) are evidence only."""
    if ctx.baseline_per_query is None:
        return CheckResult.skip(NAME, "no baseline to compare with")
    p = ctx.policy[NAME]
    keep = ctx.evaluable & ~np.isnan(ctx.baseline_per_query)
    model, base = ctx.model_per_query[keep], ctx.baseline_per_query[keep]
    if keep.sum() < 2:
        return CheckResult.skip(NAME, "fewer than 2 test queries with something relevant to find")
    ci = paired_bootstrap_ci(model, base, **ctx.stats_options())
    rand = randomization_test(model, base, n_resamples=int(p["permutation_resamples"]), seed=ctx.seed)
    min_gain, alpha = float(p["min_gain"]), float(p["alpha"])
    ties = tie_evidence(ctx, keep, min_gain, alpha)
    domains = [] if ctx.domains is None else per_domain(ctx, model, base, ctx.domains[keep])
    evidence = {
        "metric": ctx.metric, "queries": int(keep.sum()),
        "model_mean": float(model.mean()), "baseline_mean": float(base.mean()),
        "delta_ci": ci.to_dict(), "randomization_p": rand.pvalue,
        "t_test_p": paired_t_test(model, base).pvalue, "wilcoxon_p": wilcoxon_test(model, base).pvalue,
        "per_domain": domains, "ties": ties,
    }
    opts = ctx.stats_options()
    ctx.extras["metrics"] = {
        "metric": ctx.metric,
        "model": paired_bootstrap_ci(model, None, **opts).to_dict(),
        "baseline": paired_bootstrap_ci(base, None, **opts).to_dict(),
        "delta": ci.to_dict(),
    }
    ctx.extras["per_domain"] = domains
    rule = (f"PASS if Δ's CI95 low > {min_gain:g} and p < {alpha:g} (also with ties in random order); "
            "FAIL if CI95 high < 0")
    if ci.low > min_gain and rand.pvalue < alpha:
        if ties is not None and not ties["significant"]:
            return CheckResult(NAME, WARN, ci.mean, min_gain, rule, evidence,
                               f"the gain Δ {ci.mean:+.4f} exists only through the evaluation's tie order: with "
                               f"tied scores in random order Δ is {ties['delta_ci']['mean']:+.4f} (CI95 "
                               f"[{ties['delta_ci']['low']:+.4f}, {ties['delta_ci']['high']:+.4f}]) — "
                               "break ties in the model's scores, or check the file's row order")
        return CheckResult(NAME, PASS, ci.mean, min_gain, rule, evidence)
    if ci.high < 0:
        return CheckResult(NAME, FAIL, ci.mean, 0.0, rule, evidence,
                           f"the model is worse than the baseline on {ctx.metric} (Δ {ci.mean:+.4f}, CI95 "
                           f"[{ci.low:+.4f}, {ci.high:+.4f}]): do not ship it")
    return CheckResult(NAME, WARN, ci.mean, min_gain, rule, evidence,
                       f"the gain Δ {ci.mean:+.4f} (CI95 [{ci.low:+.4f}, {ci.high:+.4f}], p={rand.pvalue:.3g}) is not "
                       f"shown: evaluate on more {ctx.unit} (see sample_size) or improve the model")
