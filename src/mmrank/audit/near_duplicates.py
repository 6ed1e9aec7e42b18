"""near_duplicates: test queries that nearly copy a training query, under any id.

Exact copies are ``split_overlap``'s and ``provenance``'s business; this catches copies with a
little noise (re-crawled documents, a query re-exported under new ids). Features are
standardised with the training mean/sd (so one large-scale column cannot make every pair look
alike) and L2-normalised; every test candidate is matched to its nearest training candidate of
*any* query by cosine with faiss (exact inner-product search up to ``exact_up_to`` training rows,
HNSW above: 100k+ candidates in seconds).

A single near-twin decides nothing: 8-10% of clean MQ2008 test candidates have a cosine >= 0.98
twin somewhere in training (measured, benchmarks/results/audit_false_alarms.md). The rule is per
query: a test query is a **copy** when at least ``query_share`` of its candidates (and at least
``min_twins`` of them) have their twin (cosine >= ``cosine``) in one single training query. On
clean MQ2008 (5 folds) the largest such share at cosine 0.99 is 0.25; a copy with 1-5% noise is
near 1.0. Candidates whose twin lies in a training query of the same id or text are counted as
well (the same query's documents re-crawled).
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.data.model import RankingSet

NAME = "near_duplicates"


def _query_keys(rset: RankingSet) -> list[set[tuple[str, str]]]:
    """Per query, what identifies it: its id, and its text when the data has one."""
    keys = [{("id", str(q))} for q in rset.query_ids]
    if rset.query_texts is not None:
        for k, t in zip(keys, rset.query_texts):
            if t:
                k.add(("text", str(t)))
    return keys


def standardised_unit_rows(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both matrices standardised by the training mean/sd, then scaled to unit length (float32)."""
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)

    def unit(x: np.ndarray) -> np.ndarray:
        z = (x - mu) / sd
        return np.ascontiguousarray(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12), dtype=np.float32)

    return unit(train), unit(test)


def nearest_training_rows(train: np.ndarray, test: np.ndarray, exact_up_to: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, training row) of each test row's nearest training row (inputs: unit rows).

    HNSW draws its levels from faiss' fixed internal seed: the same inputs give the same answer."""
    import faiss

    d = train.shape[1]
    if len(train) <= exact_up_to:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = 80, 64
    index.add(train)
    sims, rows = index.search(test, 1)
    return sims[:, 0].astype(np.float64), rows[:, 0].astype(np.int64)


def twin_share_per_query(test: RankingSet, twin_query: np.ndarray, is_twin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per test query: (share of its candidates whose twin lies in its most frequent training
    query, that number of candidates, that training query's index or -1)."""
    share = np.zeros(test.n_queries)
    count = np.zeros(test.n_queries, dtype=np.int64)
    source = np.full(test.n_queries, -1, dtype=np.int64)
    for i in range(test.n_queries):
        a, b = test.offsets[i], test.offsets[i + 1]
        hits = twin_query[a:b][is_twin[a:b]]
        if b > a and hits.size:
            values, counts = np.unique(hits, return_counts=True)
            j = int(np.argmax(counts))
            share[i], count[i], source[i] = counts[j] / (b - a), counts[j], values[j]
    return share, count, source


def check(ctx: AuditContext) -> CheckResult:
    """Measure the share of test queries that nearly copy one training query: at least
    ``query_share`` of their candidates (and at least ``min_twins``, or all of a smaller query)
    have their nearest training candidate, at cosine >= ``cosine``, in that one query.

    Rule (policy ``near_duplicates.*``; search exact up to ``exact_up_to`` training rows, HNSW
    above): FAIL when the copied-query share exceeds ``fail_query_share`` or the share of test
    candidates twinned inside a training query of the same id/text exceeds ``fail_share``
    (NO_GO: a leakage check); WARN when at least ``warn_queries`` queries are copies or any
    candidate has a same-id/text twin; PASS otherwise. SKIP when train and test share no
    candidate feature layout. ``value`` is the copied-query share."""
    p = ctx.policy[NAME]
    threshold = float(p["cosine"])
    query_share, min_twins = float(p["query_share"]), int(p["min_twins"])
    warn_q, fail_q, fail_share = int(p["warn_queries"]), float(p["fail_query_share"]), float(p["fail_share"])
    rule = (f"copy = >= {query_share:g} of a query's candidates with a cosine >= {threshold:g} twin in one training "
            f"query; WARN if copies >= {warn_q}, FAIL if copies > {fail_q:g} of test queries or same-query "
            f"twins > {fail_share:g} of candidates")
    train, test = ctx.train, ctx.test
    if not train.features or train.modality_dims != test.modality_dims or not train.n_candidates or not test.n_candidates:
        return CheckResult.skip(NAME, "train and test have no common candidate features to compare")
    xtr, xte = standardised_unit_rows(train.feature_matrix(with_query_features=False).astype(np.float64),
                                      test.feature_matrix(with_query_features=False).astype(np.float64))
    cos, row = nearest_training_rows(xtr, xte, int(p["exact_up_to"]))
    is_twin = cos >= threshold
    twin_query = train.query_index[np.clip(row, 0, None)]
    share, count, source = twin_share_per_query(test, twin_query, is_twin)
    copies = np.flatnonzero((share >= query_share) & (count >= np.minimum(min_twins, test.group_sizes)) & (count > 0))
    # the old rule, kept: twins inside a training query of the same id or text (re-crawled documents)
    train_keys, test_keys = _query_keys(train), _query_keys(test)
    same_query = np.array([bool(is_twin[r] and test_keys[test.query_index[r]] & train_keys[twin_query[r]])
                           for r in range(test.n_candidates)]) if is_twin.any() else np.zeros(test.n_candidates, bool)
    copy_share = len(copies) / test.n_queries
    same_share = float(same_query.mean())
    examples = [{"test_query": str(test.query_ids[i]), "training_query": str(train.query_ids[source[i]]),
                 "twin_share": float(share[i]), "candidates": int(test.group_sizes[i])} for i in copies[:10]]
    evidence = {"test_queries": test.n_queries, "test_candidates": test.n_candidates,
                "copied_queries": len(copies), "copied_query_share": copy_share, "examples": examples,
                "largest_twin_share": float(share.max()), "candidates_with_twin_anywhere": float(is_twin.mean()),
                "same_query_twin_share": same_share,
                "search": "exact" if train.n_candidates <= int(p["exact_up_to"]) else "hnsw"}
    advice = (f"{len(copies)} test queries nearly copy a training query (e.g. {examples[0]['test_query']} ~ "
              f"{examples[0]['training_query']}): remove them from the test set or split before copying"
              if examples else "test candidates nearly copy training candidates of the same query: split by query")
    if copy_share > fail_q or same_share > fail_share:
        return CheckResult(NAME, FAIL, copy_share, fail_q, rule, evidence, advice)
    if len(copies) >= warn_q or same_share > 0:
        return CheckResult(NAME, WARN, copy_share, fail_q, rule, evidence, advice)
    return CheckResult(NAME, PASS, copy_share, fail_q, rule, evidence)
