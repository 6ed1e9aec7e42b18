"""split_overlap: the same queries, (query, candidate) pairs or query contents in train and test.

A test query that was trained on measures memory, not ranking skill. Three views, because a
leak often hides under new ids: the query id, the (query id, candidate id) pair, and the query's
*content* (its candidates' feature rows, rounded and order-free, hashed). Candidate ids alone are
reported but do not fail: in reranking and recommendation the same item legitimately recurs.
With interaction data, identical (user, item, timestamp) events in both splits FAIL too.

The test set is also checked against itself: a (query, candidate) pair listed twice (a join that
repeated judged documents) is counted twice by every metric — in the ideal ranking too — so the
numbers no longer describe the data. Clean MQ2008 and the ML-100K task hold none.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, CheckResult
from mmrank.data.model import RankingSet

NAME = "split_overlap"


def query_content_hashes(rset: RankingSet, decimals: int) -> list[str]:
    """One hash per query of its candidates' rounded feature rows, sorted (order-free)."""
    feats = np.round(rset.feature_matrix(with_query_features=False).astype(np.float64), decimals) + 0.0  # -0.0 -> 0.0
    out = []
    for i in range(rset.n_queries):
        rows = feats[rset.offsets[i]:rset.offsets[i + 1]]
        rows = rows[np.lexsort(rows.T[::-1])] if rows.size else rows
        out.append(hashlib.sha1(np.ascontiguousarray(rows).tobytes() + str(rows.shape).encode()).hexdigest())
    return out


def _share(n: int, total: int) -> float:
    return n / total if total else 0.0


def check(ctx: AuditContext) -> CheckResult:
    """Measure the largest share of test material also present in train: query ids,
    (query, candidate) pairs, query contents (candidate feature rows rounded to policy
    ``split_overlap.content_decimals``, order-free; only when both sides share a feature
    layout) and, with interaction data, identical (user, item, timestamp) events.

    Rule (policy ``split_overlap.max_shared_query_share``, 0 by default): FAIL when any of those
    shares exceeds it (a leakage check: NO_GO); PASS otherwise. Shared candidate ids alone are
    reported, never failed. Never WARNs or SKIPs."""
    p = ctx.policy[NAME]
    train, test = ctx.train, ctx.test
    train_q = set(train.query_ids.tolist())
    shared_q = [q for q in test.query_ids.tolist() if q in train_q]
    train_pairs = set(zip(train.query_ids[train.query_index].tolist(), train.candidate_ids.tolist()))
    test_pairs = list(zip(test.query_ids[test.query_index].tolist(), test.candidate_ids.tolist()))
    shared_pairs = sum(pair in train_pairs for pair in test_pairs)
    evidence = {
        "test_queries": test.n_queries,
        "shared_query_ids": len(shared_q),
        "shared_query_id_examples": shared_q[:10],
        "shared_query_candidate_pairs": int(shared_pairs),
        "shared_candidate_ids_any_query": int(len(set(test.candidate_ids.tolist()) & set(train.candidate_ids.tolist()))),
    }
    repeated = len(test_pairs) - len(set(test_pairs))
    evidence["repeated_test_pairs"] = repeated
    evidence["repeated_test_pair_examples"] = _repeated_examples(test_pairs)
    shares = {
        "query_ids": _share(len(shared_q), test.n_queries),
        "query_candidate_pairs": _share(shared_pairs, test.n_candidates),
        "repeated_test_pairs": _share(repeated, test.n_candidates),
    }
    if train.features and test.features and train.modality_dims == test.modality_dims:
        decimals = int(p.get("content_decimals", 6))
        train_h = set(query_content_hashes(train, decimals))
        test_h = query_content_hashes(test, decimals)
        same = [i for i, h in enumerate(test_h) if h in train_h and test.group_sizes[i] > 0]
        evidence["shared_query_contents"] = len(same)
        evidence["shared_content_examples"] = [str(test.query_ids[i]) for i in same[:10]]
        shares["query_contents"] = _share(len(same), test.n_queries)
    if ctx.train_interactions is not None and ctx.test_interactions is not None:
        key = lambda ev: set(zip(ev.user_ids.tolist(), ev.item_ids.tolist(), ev.timestamps.tolist()))  # noqa: E731
        both = key(ctx.train_interactions) & key(ctx.test_interactions)
        evidence["shared_events"] = len(both)
        shares["events"] = _share(len(both), len(ctx.test_interactions))
    evidence["shares"] = shares
    value = max(shares.values())
    limit = float(p["max_shared_query_share"])
    worst = max(shares, key=shares.get)
    rule = f"FAIL if a shared (or, in the test set, repeated) share > {limit:g}"
    if value > limit and worst == "repeated_test_pairs":
        return CheckResult(NAME, FAIL, value, limit, rule, evidence,
                           f"{repeated} test (query, candidate) pairs are listed more than once (e.g. "
                           f"{evidence['repeated_test_pair_examples'][0]}): every metric counts them twice — drop the "
                           "repeated rows (a join that repeated judged documents?)")
    if value > limit:
        return CheckResult(NAME, FAIL, value, limit, rule, evidence,
                           f"{shares[worst]:.1%} of test {worst.replace('_', ' ')} also occur in train: split by "
                           "query (and by user/time for interactions) so no test query is seen in training")
    return CheckResult(NAME, PASS, value, limit, rule, evidence)


def _repeated_examples(pairs: list[tuple[str, str]], n: int = 5) -> list[str]:
    """Up to ``n`` (query, candidate) pairs that occur more than once, as ``"query/candidate"``."""
    seen: set[tuple[str, str]] = set()
    out: list[str] = []
    for pair in pairs:
        if pair in seen and f"{pair[0]}/{pair[1]}" not in out:
            out.append(f"{pair[0]}/{pair[1]}")
            if len(out) == n:
                break
        seen.add(pair)
    return out
