"""Which queries the model may reorder: a stable hash bucket of the query id.

sha256 (not Python's ``hash``, which is salted per process) so that a query lands in the same
bucket on every server, every restart and in the batch path: a user sees one behaviour, and a
rollout percentage can be raised without reshuffling who already had the model.
"""

from __future__ import annotations

import hashlib

# 10,000 buckets: rollout percentages with two decimals (0.01 % steps) are exact.
N_BUCKETS = 10_000


def rollout_bucket(query_id: str) -> int:
    """Bucket in ``[0, N_BUCKETS)`` of ``query_id`` (the first 8 bytes of its sha256)."""
    digest = hashlib.sha256(str(query_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % N_BUCKETS


def in_rollout(query_id: str, percent: float) -> bool:
    """True when ``query_id`` falls in the first ``percent`` % of buckets (100 → every query)."""
    if percent >= 100.0:
        return True
    if percent <= 0.0:
        return False
    return rollout_bucket(query_id) < round(percent * N_BUCKETS / 100.0)
