"""feature_label_leakage: one feature that, used alone as the score, ranks almost perfectly.

Every candidate feature column (both directions: high-is-good and low-is-good) scores the test
queries by itself. Ties are broken *against* the feature (lower label first), so a constant or
coarse column cannot look good thanks to the file's row order. Queries whose candidates all
share one label are left out: any order is perfect there and they would inflate every column.
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.data.model import RankingSet

NAME = "feature_label_leakage"


def feature_columns(rset: RankingSet) -> tuple[np.ndarray, list[str]]:
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


def check(ctx: AuditContext) -> CheckResult:
    p = ctx.policy[NAME]
    fail_at, warn_at, k = float(p["fail_ndcg"]), float(p["warn_ndcg"]), int(p["k"])
    rule = f"WARN if best single-feature nDCG@{k} >= {warn_at:g}, FAIL if >= {fail_at:g}"
    test = ctx.test.subset(np.flatnonzero(varied_queries(ctx.test)))
    if test.n_queries == 0 or not test.features:
        return CheckResult.skip(NAME, "no test query with mixed labels, or no features")
    x, names = feature_columns(test)
    per_feature = []
    for j, name in enumerate(names):
        for sign in (1.0, -1.0):
            s = pessimistic_scores(sign * x[:, j], test.labels)
            v = ctx.per_query(test, s, metric=f"ndcg@{k}", no_relevant="skip")
            per_feature.append((float(np.nanmean(v)), name, sign))
    per_feature.sort(reverse=True)
    best, best_name, best_sign = per_feature[0]
    evidence = {"queries_scored": test.n_queries, "features_scored": len(names),
                "top_features": [{"feature": n, "direction": "+" if s > 0 else "-", "ndcg": v}
                                 for v, n, s in per_feature[:10]]}
    advice = (f"feature {best_name} alone ranks test queries at nDCG@{k} {best:.3f}: it is (derived from) the "
              "label — drop it, or recompute it without access to relevance judgements")
    if best >= fail_at:
        return CheckResult(NAME, FAIL, best, fail_at, rule, evidence, advice)
    if best >= warn_at:
        return CheckResult(NAME, WARN, best, warn_at, rule, evidence, advice)
    return CheckResult(NAME, PASS, best, fail_at, rule, evidence)
