"""near_duplicates: test candidates whose features nearly equal a training candidate of the
same query (same query id, or same query text when the data has texts).

Exact copies are ``split_overlap``'s business; this catches copies with a little noise, or
re-crawled documents. Features are standardised with the training mean/sd first so that one
large-scale column cannot make every pair look alike; similarity is cosine
(``mmrank.features.dedup.near_duplicate_pairs``, the same rule the feature pipeline dedups by).
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.data.model import RankingSet
from mmrank.features.dedup import near_duplicate_pairs

NAME = "near_duplicates"


def _query_keys(rset: RankingSet) -> list[set[tuple[str, str]]]:
    """Per query, what identifies it: its id, and its text when the data has one."""
    keys = [{("id", str(q))} for q in rset.query_ids]
    if rset.query_texts is not None:
        for k, t in zip(keys, rset.query_texts):
            if t:
                k.add(("text", str(t)))
    return keys


def check(ctx: AuditContext) -> CheckResult:
    p = ctx.policy[NAME]
    threshold, warn_share, fail_share = float(p["cosine"]), float(p["warn_share"]), float(p["fail_share"])
    rule = f"WARN if share > {warn_share:g}, FAIL if > {fail_share:g} (cosine >= {threshold:g})"
    train, test = ctx.train, ctx.test
    if not train.features or train.modality_dims != test.modality_dims:
        return CheckResult.skip(NAME, "train and test have no common candidate features to compare")
    xtr = train.feature_matrix(with_query_features=False).astype(np.float64)
    xte = test.feature_matrix(with_query_features=False).astype(np.float64)
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    by_key: dict[tuple[str, str], list[int]] = {}
    for j, keys in enumerate(_query_keys(train)):
        for key in keys:
            by_key.setdefault(key, []).append(j)
    affected = 0
    matched_queries, examples = 0, []
    for i, keys in enumerate(_query_keys(test)):
        train_q = sorted({j for key in keys for j in by_key.get(key, [])})
        if not train_q:
            continue
        matched_queries += 1
        rows = np.concatenate([np.arange(train.offsets[j], train.offsets[j + 1]) for j in train_q])
        pairs = near_duplicate_pairs(xte[test.offsets[i]:test.offsets[i + 1]], xtr[rows], threshold)
        hits = len(np.unique(pairs[:, 0]))
        affected += hits
        if hits and len(examples) < 10:
            examples.append({"query_id": str(test.query_ids[i]), "near_duplicate_candidates": hits,
                             "pairs": int(len(pairs))})
    share = affected / test.n_candidates if test.n_candidates else 0.0
    evidence = {"test_candidates": test.n_candidates, "affected_candidates": affected,
                "test_queries_matched_in_train": matched_queries, "examples": examples}
    advice = ("remove test candidates that nearly copy a training candidate of the same query, or split "
              "so that a query's candidates never straddle train and test")
    if share > fail_share:
        return CheckResult(NAME, FAIL, share, fail_share, rule, evidence, advice)
    if share > warn_share:
        return CheckResult(NAME, WARN, share, warn_share, rule, evidence, advice)
    return CheckResult(NAME, PASS, share, warn_share, rule, evidence)
