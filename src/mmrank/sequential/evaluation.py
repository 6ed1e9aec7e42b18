"""Evaluation of sequential recommenders: per-user full-ranking metrics of a split's stage
(every catalogue item ranked, each user's seen items masked), optionally with sampled metrics
next to them (marked ``sampled_``)."""

from __future__ import annotations

import contextlib
from typing import Iterable

import numpy as np
import torch

from mmrank.sequential.data import Histories, SequenceSplit
from mmrank.sequential.full_ranking import full_ranking_metrics, sampled_ranking_metrics

KS = (5, 10, 20)
# Users scored per evaluation chunk. Small chunks keep a chunk's activations in cache: on ML-100K
# (943 users, max_len 50) 64 evaluates 1.5x faster than 256 on one core (benchmarks/results/seqrec.md, P7).
EVAL_CHUNK = 64


def seen_csr(histories: Histories) -> tuple[np.ndarray, np.ndarray]:
    """Seen items per user as CSR over score columns; column 0 (padding) is seen by everyone,
    so it can never compete with a real item."""
    lens = histories.lengths() + 1
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    indices = np.zeros(indptr[-1], dtype=np.int64)
    for u in range(histories.n_users):
        indices[indptr[u] + 1 : indptr[u + 1]] = histories.of(u)
    return indptr, indices


def evaluate_stage(ranker, split: SequenceSplit, stage: str, ks: Iterable[int] = KS, *,
                   sampled_negatives: int = 0, seed: int = 0, chunk_size: int = EVAL_CHUNK) -> dict[str, np.ndarray]:
    """Per-user metrics of ``stage`` ("valid"/"test"): full ranking over all items with each
    user's seen items masked; with ``sampled_negatives`` > 0 also ``sampled_*`` metrics (target
    among that many random unseen items). Users without a held-out item are left out; the
    returned ``users`` array says which dense users the rows are. Chunks of users are scored by
    one worker thread per torch thread, each running torch single-threaded, so the metrics are
    the same bits at any thread count."""
    histories = split.history_for(stage)
    targets = split.target_for(stage)
    evaluated = np.flatnonzero(targets > 0)
    indptr, indices = seen_csr(histories)

    def ranking_args(users: np.ndarray) -> tuple:
        """What the metric functions take for these users, rows in ``users`` order."""
        sub_indptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[users])]).astype(np.int64)
        sub_indices = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users]) if len(users) else indices[:0]

        def score(rows: torch.Tensor) -> torch.Tensor:
            return ranker.score_users(torch.as_tensor(users[rows.numpy()]), histories)

        return score, len(users), targets[users], sub_indptr, sub_indices, tuple(ks)

    # Full ranking scores users in order of history length, so each chunk holds histories of
    # similar length and pads little; its rows are put back in user order. The sampled protocol
    # keeps user order: its negatives are drawn per row.
    order = np.argsort(histories.lengths()[evaluated], kind="stable")
    with getattr(ranker, "scoring_session", contextlib.nullcontext)():
        full = full_ranking_metrics(*ranking_args(evaluated[order]), chunk_size=chunk_size, workers=None)
        out = {k: v[np.argsort(order)] for k, v in full.items()}
        if sampled_negatives:
            sampled = sampled_ranking_metrics(*ranking_args(evaluated), n_negatives=sampled_negatives, seed=seed,
                                              chunk_size=chunk_size, workers=None)
            out.update({f"sampled_{k}": v for k, v in sampled.items()})
    out["users"] = evaluated
    return out


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of every per-user metric array (the ``users`` index left out)."""
    return {k: float(np.mean(v)) for k, v in per_user.items() if k != "users"}
