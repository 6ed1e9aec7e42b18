"""baseline_agreement: is the model just the baseline with a different scale?

Within each query: Pearson, Spearman and Kendall correlation of model vs baseline scores, the
share of queries whose top-1 is unchanged and the mean rank displacement of a candidate. A mean
Spearman at or above ``warn_spearman`` means the model reorders almost nothing — the seeds'
0.99 meant "a linear offset of the baseline" — WARN.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from mmrank.audit.context import AuditContext
from mmrank.audit.result import PASS, WARN, CheckResult

NAME = "baseline_agreement"
_SCATTER_POINTS = 2000


def within_query_agreement(a: np.ndarray, b: np.ndarray, offsets: np.ndarray) -> dict:
    """How alike two score vectors order the candidates of each query, averaged over queries.

    Args:
        a: (N,) first system's scores.
        b: (N,) second system's scores, same rows as ``a``.
        offsets: (Q+1,) query bounds.

    Returns:
        Means over queries of ``pearson``, ``spearman`` and ``kendall`` (only queries with at
        least 3 candidates and non-constant scores in both), ``top1_same`` (share of queries
        whose top candidate is the same) and ``mean_rank_displacement`` (mean |rank difference|
        of a candidate; both over queries with at least 2 candidates), plus
        ``queries_correlated``. A mean over no query is NaN."""
    pearson, spearman, kendall, top1, displacement = [], [], [], [], []
    for i in range(len(offsets) - 1):
        x, y = a[offsets[i]:offsets[i + 1]], b[offsets[i]:offsets[i + 1]]
        if len(x) < 2:
            continue
        top1.append(float(np.argmax(x) == np.argmax(y)))
        rx, ry = sps.rankdata(-x), sps.rankdata(-y)
        displacement.append(float(np.abs(rx - ry).mean()))
        if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            continue  # correlation undefined for a constant list
        pearson.append(np.corrcoef(x, y)[0, 1])
        spearman.append(np.corrcoef(rx, ry)[0, 1])
        kendall.append(sps.kendalltau(x, y).statistic)
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return {"pearson": mean(pearson), "spearman": mean(spearman), "kendall": mean(kendall),
            "top1_same": mean(top1), "mean_rank_displacement": mean(displacement),
            "queries_correlated": len(spearman)}


def check(ctx: AuditContext) -> CheckResult:
    """Measure the mean within-query Spearman correlation of model and baseline test scores:
    is the model only the baseline on another scale?

    Rule (policy ``baseline_agreement.warn_spearman``): WARN when the mean Spearman is at or
    above it (the model reorders almost nothing), or when either system gives every candidate of
    every query the same score (its ranking is the row order); PASS otherwise. SKIP without a
    baseline or when no query has 3+ candidates with non-constant scores. Never FAILs. A sample
    of scores goes to ``ctx.extras["agreement_scatter"]`` for the report."""
    if ctx.baseline_scores is None:
        return CheckResult.skip(NAME, "no baseline to compare with")
    limit = float(ctx.policy[NAME]["warn_spearman"])
    agreement = within_query_agreement(ctx.model_scores, ctx.baseline_scores, ctx.test.offsets)
    rng = np.random.default_rng(ctx.seed)
    pick = np.sort(rng.choice(ctx.test.n_candidates, min(_SCATTER_POINTS, ctx.test.n_candidates), replace=False))
    ctx.extras["agreement_scatter"] = {"model": ctx.model_scores[pick], "baseline": ctx.baseline_scores[pick],
                                       "label": ctx.test.labels[pick]}
    value = agreement["spearman"]
    rule = f"WARN if mean within-query Spearman >= {limit:g}, or either system's scores are constant in every query"
    constant = [name for name, s in (("model", ctx.model_scores), ("baseline", ctx.baseline_scores))
                if all(np.ptp(s[a:b]) == 0 for a, b in zip(ctx.test.offsets[:-1], ctx.test.offsets[1:]) if b > a)]
    if constant:
        return CheckResult(NAME, WARN, None, limit, rule, agreement | {"constant_scores": constant},
                           f"the {' and '.join(constant)} gives every candidate of a query the same score: its "
                           "ranking is the file's row order, not a model — check that it loaded and scores")
    if np.isnan(value):
        return CheckResult.skip(NAME, "no query with at least 3 candidates and non-constant scores")
    if value >= limit:
        return CheckResult(NAME, WARN, value, limit, rule, agreement,
                           "the model orders candidates almost exactly like the baseline: its gain, if any, is "
                           "a tie-break — check that the model is not the baseline score plus a small offset")
    return CheckResult(NAME, PASS, value, limit, rule, agreement)
