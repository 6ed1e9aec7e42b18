"""sampled_metric: a metric computed on sampled negatives next to its full-ranking value.

Ranking the positives among a few sampled negatives inflates every metric and can even flip
which of two models looks better (Krichene & Rendle, KDD 2020). When the evaluation being
audited used ``n_negatives`` sampled negatives, this recomputes it that way *and* on the full
candidate lists, and WARNs when the two differ by more than ``max_relative_gap`` for the model
or the baseline (the value is the larger gap), or the model-vs-baseline ordering flips. For recommenders the caller passes both per-user arrays
(``mmrank.sequential.full_ranking.sampled_ranking_metrics`` / ``full_ranking_metrics``). A context whose
``headline`` is ``"full"`` (mmrank's recommendation runs: full ranking is what they report, sampled
values only beside it, marked) gets the gap in the evidence, and a WARN only when the sampled
protocol flips the model-vs-baseline order (quoting it would mislead).
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.data.model import RankingSet

NAME = "sampled_metric"


def sampled_rows(rset: RankingSet, n_negatives: int, seed: int, relevance_threshold: float = 1.0) -> np.ndarray:
    """(N,) bool: every relevant candidate plus up to ``n_negatives`` random others per query."""
    rng = np.random.default_rng(seed)
    negative = rset.labels < relevance_threshold
    keys = np.where(negative, rng.random(rset.n_candidates), -1.0)  # positives sort first, always kept
    order = np.lexsort((keys, rset.query_index))
    position = np.empty(rset.n_candidates, dtype=np.int64)
    position[order] = np.arange(rset.n_candidates) - np.repeat(rset.offsets[:-1], rset.group_sizes)
    n_pos = np.bincount(rset.query_index, weights=~negative, minlength=rset.n_queries).astype(np.int64)
    return ~negative | (position < n_pos[rset.query_index] + n_negatives)


def _ranking_set_values(ctx: AuditContext, n_negatives: int) -> dict[str, dict[str, np.ndarray]]:
    rows = sampled_rows(ctx.test, n_negatives, ctx.seed)
    small = ctx.test.take_rows(rows)
    out = {"model": {"full": ctx.model_per_query, "sampled": ctx.per_query(small, ctx.model_scores[rows])}}
    if ctx.baseline_scores is not None:
        out["baseline"] = {"full": ctx.baseline_per_query, "sampled": ctx.per_query(small, ctx.baseline_scores[rows])}
    return out


def check(ctx: AuditContext) -> CheckResult:
    """Measure the largest relative gap ``(sampled - full) / |full|`` between the metric on
    sampled negatives and on full candidate lists (model and baseline), and whether the
    model-vs-baseline order flips between the two.

    Values come from ``ctx.sampled_vs_full`` (recommenders) or are recomputed on the test set
    with policy ``sampled_metric.n_negatives`` negatives per query. Rule (policy
    ``sampled_metric.max_relative_gap``): WARN when the order flips, or when the gap exceeds it
    and the context's headline is not the full ranking; PASS otherwise. SKIP when neither
    source of sampled values exists. Never FAILs."""
    p = ctx.policy[NAME]
    if ctx.sampled_vs_full is not None:
        values = {k: {kk: np.asarray(vv, float) for kk, vv in v.items()} for k, v in ctx.sampled_vs_full.items()}
    elif p.get("n_negatives"):
        values = _ranking_set_values(ctx, int(p["n_negatives"]))
    else:
        return CheckResult.skip(NAME, "the evaluation did not use sampled negatives (policy sampled_metric.n_negatives)")
    means = {s: {k: float(np.nanmean(v)) for k, v in d.items()} for s, d in values.items()}
    gaps = {s: (m["sampled"] - m["full"]) / abs(m["full"]) if m["full"] else float("inf") for s, m in means.items()}
    worst = max(gaps, key=lambda s: abs(gaps[s]))
    gap = gaps[worst]
    full, sampled = means[worst]["full"], means[worst]["sampled"]
    evidence = {"metric": ctx.metric, "means": means, "relative_gaps": gaps, "n_negatives": p.get("n_negatives")}
    flipped = False
    if "baseline" in means:
        flipped = bool(np.sign(means["model"]["sampled"] - means["baseline"]["sampled"])
                       != np.sign(means["model"]["full"] - means["baseline"]["full"]))
        evidence["ordering_flips"] = bool(flipped)
    ctx.extras["sampled_metric"] = means
    limit = float(p["max_relative_gap"])
    headline_full = getattr(ctx, "headline", "sampled") == "full"
    rule = ("WARN if the model/baseline order flips between sampled and full ranking (headline: full ranking)"
            if headline_full else f"WARN if |sampled - full| / full > {limit:g} (model or baseline) or their order flips")
    threshold = None if headline_full else limit  # with a full-ranking headline the gap decides nothing
    if (abs(gap) > limit and not headline_full) or flipped:
        return CheckResult(NAME, WARN, gap, threshold, rule, evidence,
                           f"for the {worst}, sampled evaluation says {sampled:.4f}, full ranking {full:.4f}"
                           + (" and the model/baseline order flips" if flipped else "")
                           + ": report the full-ranking value (Krichene & Rendle 2020)")
    return CheckResult(NAME, PASS, gap, threshold, rule, evidence)
