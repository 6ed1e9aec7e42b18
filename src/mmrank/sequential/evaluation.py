"""Evaluation of sequential recommenders: per-user full-ranking metrics of a split's stage
(every catalogue item ranked, each user's seen items masked), optionally with sampled metrics
next to them (marked ``sampled_``).

A user with several targets in a stage (a data set's own split) is evaluated once per target:
each target is ranked against every item the user has not seen, the user's *other* targets of
the stage taken out of the ranking (so they neither outrank it nor count as misses), and the
user's metric is the mean over its targets. With one target per user (leave-one-out) this is
exactly the single-target evaluation."""

from __future__ import annotations

import contextlib
from typing import Iterable

import numpy as np
import torch

from mmrank.sequential.data import Histories, SequenceSplit, Targets
from mmrank.sequential.full_ranking import full_ranking_metrics, sampled_ranking_metrics

KS = (5, 10, 20)
# Users scored per evaluation chunk. Small chunks keep a chunk's activations in cache: on ML-100K
# (943 users, max_len 50) 64 evaluates 1.5x faster than 256 on one core (benchmarks/results/seqrec.md, P7).
EVAL_CHUNK = 64


def seen_csr(histories: Histories, extra: Histories | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seen items per user as CSR over score columns; column 0 (padding) is seen by everyone,
    so it can never compete with a real item. ``extra``: more seen events per user (the
    cold-start split's held-out ones, ``SequenceSplit.seen_extra``)."""
    lens = histories.lengths() + 1 + (0 if extra is None else extra.lengths())
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    indices = np.zeros(indptr[-1], dtype=np.int64)
    for u in range(histories.n_users):
        h = histories.of(u)
        indices[indptr[u] + 1 : indptr[u] + 1 + len(h)] = h
        if extra is not None:
            indices[indptr[u] + 1 + len(h) : indptr[u + 1]] = extra.of(u)
    return indptr, indices


def evaluate_stage(ranker, split: SequenceSplit, stage: str, ks: Iterable[int] = KS, *,
                   sampled_negatives: int = 0, seed: int = 0, chunk_size: int = EVAL_CHUNK) -> dict[str, np.ndarray]:
    """Per-user metrics of ``stage`` ("valid"/"test"): full ranking over all items with each
    user's seen items masked; with ``sampled_negatives`` > 0 also ``sampled_*`` metrics (target
    among that many random unseen items). Users without a held-out item are left out; the
    returned ``users`` array says which dense users the rows are (ascending). A user with
    several targets gets the mean over them (module docstring). Chunks of rows are scored by
    one worker thread per torch thread, each running torch single-threaded, so the metrics are
    the same bits at any thread count."""
    histories = split.history_for(stage)
    targets = split.targets_for(stage)
    row_users, row_targets = targets.rows()
    evaluated = np.unique(row_users)
    indptr, indices = _row_seen(histories, targets, row_users, split.seen_extra)
    several = len(row_users) != len(evaluated)

    def ranking_args(rows_: np.ndarray) -> tuple:
        """What the metric functions take for these evaluation rows, in ``rows_`` order."""
        sub_indptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[rows_])]).astype(np.int64)
        sub_indices = np.concatenate([indices[indptr[r]:indptr[r + 1]] for r in rows_]) if len(rows_) else indices[:0]
        users = row_users[rows_]

        def score(rows: torch.Tensor) -> torch.Tensor:
            chunk = users[rows.numpy()]
            if not several:
                return ranker.score_users(torch.as_tensor(chunk), histories)
            # a user's rows are adjacent: score each user once, then repeat its scores per target
            uniq, inverse = np.unique(chunk, return_inverse=True)
            return ranker.score_users(torch.as_tensor(uniq), histories)[torch.as_tensor(inverse)]

        return score, len(rows_), row_targets[rows_], sub_indptr, sub_indices, tuple(ks)

    # Full ranking scores rows in order of history length (then user), so each chunk holds
    # histories of similar length and pads little; its rows are put back in row order. The
    # sampled protocol keeps row order: its negatives are drawn per row.
    rows = np.arange(len(row_users))
    order = np.lexsort((row_users, histories.lengths()[row_users]))
    with getattr(ranker, "scoring_session", contextlib.nullcontext)():
        full = full_ranking_metrics(*ranking_args(rows[order]), chunk_size=chunk_size, workers=None)
        out = {k: v[np.argsort(order)] for k, v in full.items()}
        if sampled_negatives:
            sampled = sampled_ranking_metrics(*ranking_args(rows), n_negatives=sampled_negatives, seed=seed,
                                              chunk_size=chunk_size, workers=None)
            out.update({f"sampled_{k}": v for k, v in sampled.items()})
    if several:
        user_row = np.searchsorted(evaluated, row_users)
        n = np.bincount(user_row, minlength=len(evaluated))
        out = {k: np.bincount(user_row, weights=v, minlength=len(evaluated)) / n for k, v in out.items()}
    out["users"] = evaluated
    return out


def _row_seen(histories: Histories, targets: Targets, row_users: np.ndarray,
              seen_extra: Histories | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seen items per evaluation row (CSR): the user's history (column 0, padding, included) and
    ``seen_extra`` events (the cold-start split's held-out ones), plus all the user's targets when
    it has several (the metric functions never mask a row's own target, so only the others leave
    the ranking)."""
    indptr, indices = seen_csr(histories, seen_extra)
    counts = targets.counts()[row_users]
    extra = np.where(counts > 1, counts, 0)
    out_ptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[row_users] + extra)]).astype(np.int64)
    out = np.empty(out_ptr[-1], dtype=np.int64)
    for r, u in enumerate(row_users):
        start, stop = indptr[u], indptr[u + 1]
        out[out_ptr[r]:out_ptr[r] + stop - start] = indices[start:stop]
        if extra[r]:
            out[out_ptr[r] + stop - start:out_ptr[r + 1]] = targets.of(u)
    return out_ptr, out


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of every per-user metric array (the ``users`` index left out)."""
    return {k: float(np.mean(v)) for k, v in per_user.items() if k != "users"}
