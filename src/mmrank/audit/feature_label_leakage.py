"""feature_label_leakage: one feature that, used alone as the score, ranks almost perfectly.

Every candidate feature column (both directions: high-is-good and low-is-good) scores the test
queries by itself. Ties are broken *against* the feature (lower label first), so a constant or
coarse column cannot look good thanks to the file's row order. Queries whose candidates all
share one label are left out: any order is perfect there and they would inflate every column.

Two rules. **Absolute**: the best column reaches ``fail_ndcg`` (FAIL) / ``warn_ndcg`` (WARN) — a
copy of the label. **Relative** (a *soft* leak: label + noise, a score computed with the
judgements): the best column beats every other input that is not a near-copy of it
(|Pearson| < ``max_corr``) by at least ``relative_gap``, beats a small LambdaMART trained on *all
the other inputs together* by ``warn_margin`` / ``fail_margin`` (an honest feature is rarely
better than the rest of the data combined; a label copy is), *and* it carries most of the model's
lift: shuffling that column across the test rows at test time removes ``warn_lift_share`` /
``fail_lift_share`` of the model's lift over chance (random scores) — WARN / FAIL (FAIL also
needs the column alone at nDCG >= ``fail_floor``: a soft leak strong enough to fake a result). An honest
feature that dominates every other input this way (possible: the fault simulator draws such
weights) cannot be told from a label copy by numbers alone: it WARNs or FAILs, and the advice asks
where it comes from. A strong honest feature the model barely needs, or one that is only a
little better than the rest, stays quiet (clean MQ2008, the ML-100K task: see
benchmarks/results/audit_false_alarms.md).
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.data.model import RankingSet
from mmrank.errors import DataError

NAME = "feature_label_leakage"


def feature_columns(rset: RankingSet) -> tuple[np.ndarray, list[str]]:
    """The candidate features as one flat float64 matrix (query features left out) with a
    ``"modality[j]"`` name per column, modalities in sorted order.

    Returns:
        ``(x, names)``: x of shape (N, D) and D names."""
    names = [f"{m}[{j}]" for m in sorted(rset.features) for j in range(rset.features[m].shape[1])]
    return rset.feature_matrix(with_query_features=False).astype(np.float64), names


def pessimistic_scores(column: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``column`` with ties broken towards the lower label: rank order of (value, -label)."""
    order = np.lexsort((-labels, column))  # ascending value; among equal values higher label first
    scores = np.empty(len(column))
    scores[order] = np.arange(len(column), dtype=np.float64)
    return scores


def varied_queries(rset: RankingSet) -> np.ndarray:
    """(Q,) bool: queries whose candidates do not all share one label."""
    qi = rset.query_index
    lo = np.full(rset.n_queries, np.inf)
    hi = np.full(rset.n_queries, -np.inf)
    np.minimum.at(lo, qi, rset.labels)
    np.maximum.at(hi, qi, rset.labels)
    return hi > lo


def column_location(rset: RankingSet, j: int) -> tuple[str, int]:
    """(modality, column inside it) of flat column ``j`` of ``feature_columns``."""
    for m in sorted(rset.features):
        d = rset.features[m].shape[1]
        if j < d:
            return m, j
        j -= d
    raise IndexError(j)


def shuffled_column(rset: RankingSet, j: int, seed: int) -> RankingSet:
    """``rset`` with flat feature column ``j`` permuted across all rows (right marginal, wrong rows)."""
    m, c = column_location(rset, j)
    feats = dict(rset.features)
    feats[m] = feats[m].copy()
    feats[m][:, c] = feats[m][np.random.default_rng(seed).permutation(rset.n_candidates), c]
    return rset.with_features(feats)


def best_independent_rival(x: np.ndarray, per_feature: list[tuple], max_corr: float) -> tuple | None:
    """The best-scoring entry of another column that is not a near-copy (|r| >= max_corr) of the best."""
    j = per_feature[0][3]
    for entry in per_feature[1:]:
        jj = entry[3]
        if jj == j or np.ptp(x[:, jj]) == 0:
            continue
        r = np.corrcoef(x[:, j], x[:, jj])[0, 1] if np.ptp(x[:, j]) > 0 else 0.0
        if abs(r) < max_corr:
            return entry
    return None


def without_column(rset: RankingSet, j: int) -> RankingSet:
    """``rset`` with flat feature column ``j`` removed (its modality keeps its other columns)."""
    m, c = column_location(rset, j)
    feats = dict(rset.features)
    rest = np.delete(feats[m], c, axis=1)
    if rest.shape[1]:
        feats[m] = rest
    else:
        del feats[m]
    return rset.with_features(feats)


def others_probe_ndcg(ctx: AuditContext, test: RankingSet, j: int, k: int) -> float | None:
    """nDCG@k on ``test`` of a small LambdaMART trained on every input *except* column ``j``:
    what the rest of the data can do together (None when LambdaMART cannot take the labels)."""
    from mmrank.models.baselines import LambdaMART

    probe = LambdaMART(n_estimators=100, num_leaves=15, learning_rate=0.1, seed=ctx.seed, num_threads=1)
    try:
        probe.fit(without_column(ctx.train, j), None if ctx.valid is None else without_column(ctx.valid, j))
    except (DataError, ValueError):
        return None
    scores = pessimistic_scores(np.asarray(probe.score(without_column(test, j)), float), test.labels)
    return float(np.nanmean(ctx.per_query(test, scores, metric=f"ndcg@{k}", no_relevant="skip")))


def lift_share_of_column(ctx: AuditContext, j: int) -> dict:
    """Share of the model's test lift over chance that disappears when column ``j`` is shuffled."""
    keep = ctx.evaluable
    chance = ctx.chance_per_query[keep]
    model = ctx.model_per_query[keep]
    shuffled = ctx.per_query(ctx.test, np.asarray(ctx.model.score(shuffled_column(ctx.test, j, ctx.seed)), float))[keep]
    lift = float(np.mean(model - chance))
    lost = float(np.mean(model - shuffled))
    return {"model_lift": lift, "lift_lost_when_shuffled": lost, "share": lost / lift if lift > 0 else 0.0}


def check(ctx: AuditContext) -> CheckResult:
    """Measure the best mean per-query nDCG@k that one candidate feature reaches alone as the
    score (either direction, ties broken against it), on test queries with mixed labels.

    Rules (policy ``feature_label_leakage.*``): FAIL when that nDCG is at least ``fail_ndcg``,
    WARN when at least ``warn_ndcg`` (a label copy). Otherwise, a soft leak when the best column
    beats every independent input (|Pearson| < ``max_corr``) by ``relative_gap`` and a small
    LambdaMART on all other inputs together by ``warn_margin``: then shuffling the column at
    test time is measured; FAIL when the margin is at least ``fail_margin``, the share of the
    model's lift over chance lost is at least ``fail_lift_share`` and the column alone reaches
    ``fail_floor``; WARN when the lost share is at least ``warn_lift_share``. PASS otherwise
    (``value`` the best nDCG). SKIP when no test query has mixed labels or there are no features.
    A FAIL marks a leakage check (NO_GO)."""
    p = ctx.policy[NAME]
    fail_at, warn_at, k = float(p["fail_ndcg"]), float(p["warn_ndcg"]), int(p["k"])
    gap_at, warn_share, fail_share = float(p["relative_gap"]), float(p["warn_lift_share"]), float(p["fail_lift_share"])
    warn_margin, fail_margin = float(p["warn_margin"]), float(p["fail_margin"])
    rule = (f"WARN if best single-feature nDCG@{k} >= {warn_at:g}, FAIL if >= {fail_at:g}; or if it beats every "
            f"independent input by >= {gap_at:g}, all others together by >= {warn_margin:g} / {fail_margin:g} and "
            f"shuffling it removes >= {warn_share:g} / {fail_share:g} of the model's lift (WARN / FAIL; FAIL needs "
            f"nDCG >= {float(p['fail_floor']):g})")
    test = ctx.test.subset(np.flatnonzero(varied_queries(ctx.test)))
    if test.n_queries == 0 or not test.features:
        return CheckResult.skip(NAME, "no test query with mixed labels, or no features")
    x, names = feature_columns(test)
    per_feature = []
    for j, name in enumerate(names):
        for sign in (1.0, -1.0):
            s = pessimistic_scores(sign * x[:, j], test.labels)
            v = ctx.per_query(test, s, metric=f"ndcg@{k}", no_relevant="skip")
            per_feature.append((float(np.nanmean(v)), name, sign, j))
    per_feature.sort(key=lambda e: (-e[0], e[3]))
    best, best_name, best_sign, best_j = per_feature[0]
    rival = best_independent_rival(x, per_feature, float(p["max_corr"]))
    gap = best - rival[0] if rival is not None else 0.0
    evidence = {"queries_scored": test.n_queries, "features_scored": len(names),
                "top_features": [{"feature": n, "direction": "+" if s > 0 else "-", "ndcg": v}
                                 for v, n, s, _ in per_feature[:10]],
                "best_independent_rival": None if rival is None else {"feature": rival[1], "ndcg": rival[0]},
                "gap_to_rival": gap}
    advice = (f"feature {best_name} alone ranks test queries at nDCG@{k} {best:.3f}: it is (derived from) the "
              "label — drop it, or recompute it without access to relevance judgements")
    if best >= fail_at:
        return CheckResult(NAME, FAIL, best, fail_at, rule, evidence, advice)
    if best >= warn_at:
        return CheckResult(NAME, WARN, best, warn_at, rule, evidence, advice)
    others = others_probe_ndcg(ctx, test, best_j, k) if gap >= gap_at else None
    evidence["all_other_inputs_together"] = others
    margin = best - others if others is not None else gap
    if gap >= gap_at and margin >= warn_margin:
        lift = lift_share_of_column(ctx, best_j)
        evidence["lift"] = lift
        soft = (f"feature {best_name} alone scores nDCG@{k} {best:.3f}: {gap:.3f} above any other input "
                f"({rival[1]} {rival[0]:.3f}), {margin:.3f} above all other inputs together, and shuffling it "
                f"removes {lift['share']:.0%} of the model's lift: a soft label leak (a score computed with the "
                "judgements?) — check how it is made; if it is honest, say why in the report")
        if margin >= fail_margin and lift["share"] >= fail_share and best >= float(p["fail_floor"]):
            return CheckResult(NAME, FAIL, lift["share"], fail_share, rule, evidence, soft)
        if lift["share"] >= warn_share:
            return CheckResult(NAME, WARN, lift["share"], warn_share, rule, evidence, soft)
    return CheckResult(NAME, PASS, best, fail_at, rule, evidence)
