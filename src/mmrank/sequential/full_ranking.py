"""Full-ranking (and sampled) evaluation of recommenders with one held-out item per user.

``score_users(user_idx: LongTensor (b,)) -> Tensor (b, n_items)`` scores every item for a chunk of
users; users are dense indices ``0..n_users-1`` and items dense column indices ``0..n_items-1``.
Users are processed ``chunk_size`` at a time, so memory holds at most a few
``(chunk_size, n_items)`` tensors whatever the number of users.

Conventions:

* **Seen items** (CSR ``seen_indptr (U+1,)``, ``seen_indices``: items each user interacted with
  before the target) take no part in the ranking: they neither outrank the target nor count as
  ties. **The target itself is never masked**, even when it appears in its user's seen list
  (repeat consumption): it is the item being ranked. To take an item column out of the ranking
  for everyone (e.g. a padding item 0), list it as seen for every user.
* **Rank** of the target = 1 + (number of unmasked items with a strictly higher score)
  + tie share. ``ties="pessimistic"`` (default) puts the target after every item with the same
  score, so a model that scores everything alike gets the worst rank, not the best (the classic
  evaluation bug this default guards against). ``"optimistic"`` puts it first. ``"mean"`` gives
  the exact expectation of each metric when ties are broken uniformly at random.
* With one relevant item, ``ndcg@k = 1/log2(rank+1)``, ``hr@k = [rank <= k]``,
  ``mrr@k = 1/rank`` when rank <= k (all 0 beyond k). ``rank`` is returned too (for "mean", the
  expected rank).
* NaN scores are refused (a NaN compares false with everything and would rank first).

``sampled_ranking_metrics`` ranks the target among ``n_negatives`` items drawn uniformly, without
replacement, from the user's unseen items (never the target): the protocol many papers report,
kept here under a name that says so, so the audit can compare it with full ranking.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from mmrank.errors import ConfigError, DataError
from mmrank.torch_workers import map_chunks

__all__ = ["full_ranking_metrics", "sampled_ranking_metrics", "metrics_from_rank_counts"]

ScoreUsers = Callable[[torch.Tensor], torch.Tensor]
_TIES = ("pessimistic", "optimistic", "mean")


def metrics_from_rank_counts(higher: np.ndarray, tied: np.ndarray, ks: Sequence[int],
                             ties: str = "pessimistic") -> dict[str, np.ndarray]:
    """Per-user ``ndcg@k``, ``hr@k``, ``mrr@k`` (and ``rank``) of one relevant item, given the
    number of competing items scored strictly higher (``higher``) and equal (``tied``).

    Every tie mode is the mean of the metric over an integer rank range ``[lo, hi]``
    (pessimistic/optimistic: a single rank), taken with prefix sums of the discounts."""
    if ties not in _TIES:
        raise ConfigError(f"ties={ties!r} — use one of {_TIES}")
    higher = np.asarray(higher, dtype=np.int64)
    tied = np.asarray(tied, dtype=np.int64)
    lo = higher + 1 + (tied if ties == "pessimistic" else 0)
    hi = higher + 1 + (0 if ties == "optimistic" else tied)
    width = (hi - lo + 1).astype(np.float64)
    k_max = int(max(ks))
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    # prefix[m] = sum over ranks 1..m of the per-rank value; index 0 is the empty sum.
    ndcg_prefix = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(ranks + 1.0))])
    mrr_prefix = np.concatenate([[0.0], np.cumsum(1.0 / ranks)])
    out: dict[str, np.ndarray] = {"rank": (lo + hi) / 2.0}
    for k in ks:
        top_hi, top_lo = np.minimum(hi, k), np.minimum(lo - 1, k)  # ranks of [lo, hi] within k
        out[f"ndcg@{k}"] = (ndcg_prefix[top_hi] - ndcg_prefix[top_lo]) / width
        out[f"hr@{k}"] = (top_hi - top_lo) / width
        out[f"mrr@{k}"] = (mrr_prefix[top_hi] - mrr_prefix[top_lo]) / width
    return out


def _check_common(n_users: int, targets, seen_indptr, seen_indices, ks, chunk_size):
    targets = np.asarray(targets, dtype=np.int64)
    seen_indptr = np.asarray(seen_indptr, dtype=np.int64)
    seen_indices = np.asarray(seen_indices, dtype=np.int64)
    if targets.shape != (n_users,):
        raise DataError(f"targets has shape {targets.shape}, expected ({n_users},)",
                        hint="give exactly one held-out item index per user")
    if seen_indptr.shape != (n_users + 1,) or seen_indptr[0] != 0 \
            or seen_indptr[-1] != len(seen_indices) or np.any(np.diff(seen_indptr) < 0):
        raise DataError(f"seen_indptr must be a CSR index pointer of shape ({n_users + 1},) "
                        f"from 0 to len(seen_indices)={len(seen_indices)}",
                        hint="build it with np.concatenate([[0], np.cumsum(counts)])")
    if np.any(targets < 0) or np.any(seen_indices < 0):
        raise DataError("item indices must be >= 0", hint="map item ids to dense indices first")
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks={tuple(ks)} — give cut-offs >= 1, e.g. (5, 10, 20)")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size} — use a positive number of users per chunk")
    return targets, seen_indptr, seen_indices


def _score_chunk(score_users: ScoreUsers, users: torch.Tensor, device) -> torch.Tensor:
    with torch.inference_mode():
        scores = torch.as_tensor(score_users(users)).to(device)
    if scores.ndim != 2 or scores.shape[0] != len(users):
        raise DataError(f"score_users returned shape {tuple(scores.shape)} for {len(users)} users",
                        hint="return a (users, n_items) score tensor")
    if torch.isnan(scores).any():
        raise DataError("score_users returned NaN scores",
                        hint="fix the model; NaN would rank the target first")
    return scores


def _chunks(n_users: int, chunk_size: int, device):
    for start in range(0, n_users, chunk_size):
        stop = min(start + chunk_size, n_users)
        yield start, stop, torch.arange(start, stop, dtype=torch.long, device=device)


def _seen_mask(start: int, stop: int, n_items: int, targets: np.ndarray, seen_indptr: np.ndarray,
               seen_indices: np.ndarray, device) -> np.ndarray:
    """(b, n_items) bool, True for each user's seen items except its target."""
    counts = np.diff(seen_indptr[start:stop + 1])
    cols = seen_indices[seen_indptr[start]:seen_indptr[stop]]
    if len(cols) and cols.max() >= n_items:
        raise DataError(f"seen item index {cols.max()} is out of range for {n_items} items",
                        hint="seen lists must use the same dense item indices as the scores")
    mask = torch.zeros((stop - start, n_items), dtype=torch.bool, device=device)
    rows = torch.as_tensor(np.repeat(np.arange(stop - start), counts), device=device)
    mask[rows, torch.as_tensor(cols, device=device)] = True
    users = torch.arange(stop - start, device=device)
    mask[users, torch.as_tensor(targets[start:stop], device=device)] = False
    return mask


def _target_scores(scores: torch.Tensor, tgt: np.ndarray) -> torch.Tensor:
    if tgt.max(initial=0) >= scores.shape[1]:
        raise DataError(f"target item index {tgt.max()} is out of range for {scores.shape[1]} items",
                        hint="targets must use the same dense item indices as the scores")
    return scores.gather(1, torch.as_tensor(tgt, device=scores.device)[:, None])


def full_ranking_metrics(
    score_users: ScoreUsers,
    n_users: int,
    targets,
    seen_indptr,
    seen_indices,
    ks: Sequence[int] = (5, 10, 20),
    *,
    chunk_size: int = 256,
    device: str | torch.device = "cpu",
    ties: str = "pessimistic",
    workers: int | None = 1,
) -> dict[str, np.ndarray]:
    """Rank each user's held-out target against every unseen item; per-user metric arrays.

    Returns ``{"ndcg@k", "hr@k", "mrr@k" for k in ks, "rank"}``, each ``(n_users,)`` float64
    in user order. Conventions (seen masking, target never masked, ties) in the module doc.
    ``workers`` > 1 scores chunks of users in that many threads at once (``score_users`` must then
    be safe to call concurrently, as mmrank's rankers are; None = one per torch thread)."""
    targets, seen_indptr, seen_indices = _check_common(n_users, targets, seen_indptr, seen_indices,
                                                       ks, chunk_size)
    higher = np.zeros(n_users, dtype=np.int64)
    tied = np.zeros(n_users, dtype=np.int64)

    def count(chunk) -> None:
        start, stop, users = chunk
        scores = _score_chunk(score_users, users, device)
        target = _target_scores(scores, targets[start:stop])
        competing = ~_seen_mask(start, stop, scores.shape[1], targets, seen_indptr, seen_indices, device)
        higher[start:stop] = ((scores > target) & competing).sum(1).cpu().numpy()
        # minus one: the target ties with itself
        tied[start:stop] = ((scores == target) & competing).sum(1).cpu().numpy() - 1

    map_chunks(count, _chunks(n_users, chunk_size, device), workers=_workers(workers, device))
    return metrics_from_rank_counts(higher, tied, ks, ties)


def _workers(workers: int | None, device) -> int:
    """Chunk workers: as given; None = one per torch thread on the CPU (each running torch
    single-threaded, so a chunk's scores are the same bits as in a one-thread run), one on an
    accelerator."""
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"workers={workers} — use at least 1 (or None: one per torch thread)")
        return workers
    return torch.get_num_threads() if torch.device(device).type == "cpu" else 1


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _sample_keys(seed: int, users: np.ndarray, n_items: int) -> np.ndarray:
    """(b, n_items) pseudo-random uint64 keys, a pure function of (seed, user, item).

    A counter-based hash (splitmix64) instead of a stateful generator: a user's negatives do not
    depend on the chunk size or on which other users are evaluated."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0xD1B54A32D192ED03)
             + users.astype(np.uint64)[:, None] * np.uint64(n_items)
             + np.arange(n_items, dtype=np.uint64)[None, :] + _GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sampled_ranking_metrics(
    score_users: ScoreUsers,
    n_users: int,
    targets,
    seen_indptr,
    seen_indices,
    ks: Sequence[int] = (5, 10, 20),
    *,
    n_negatives: int = 100,
    seed: int = 0,
    chunk_size: int = 256,
    device: str | torch.device = "cpu",
    ties: str = "pessimistic",
    workers: int | None = 1,
) -> dict[str, np.ndarray]:
    """SAMPLED evaluation: rank each target among ``n_negatives`` random unseen items.

    Negatives are drawn uniformly without replacement from the items that are neither seen nor
    the target (fewer when fewer exist), reproducibly from ``seed``. Same outputs,
    conventions and ``workers`` as ``full_ranking_metrics``; only the set of competitors differs."""
    targets, seen_indptr, seen_indices = _check_common(n_users, targets, seen_indptr, seen_indices,
                                                       ks, chunk_size)
    if n_negatives < 1:
        raise ConfigError(f"n_negatives={n_negatives} — use at least 1 (100 is the usual choice)")
    higher = np.zeros(n_users, dtype=np.int64)
    tied = np.zeros(n_users, dtype=np.int64)

    def count(chunk) -> None:
        start, stop, users = chunk
        scores = _score_chunk(score_users, users, device)
        n_items = scores.shape[1]
        tgt = targets[start:stop]
        target = _target_scores(scores, tgt)
        eligible = ~_seen_mask(start, stop, n_items, targets, seen_indptr, seen_indices, "cpu").numpy()
        eligible[np.arange(stop - start), tgt] = False
        keys = _sample_keys(seed, np.arange(start, stop), n_items)
        keys[~eligible] = np.iinfo(np.uint64).max  # drawn last, and flagged invalid below
        m = min(n_negatives, n_items)
        picked = np.argpartition(keys, m - 1, axis=1)[:, :m]
        valid = torch.as_tensor(np.take_along_axis(eligible, picked, axis=1), device=scores.device)
        negatives = scores.gather(1, torch.as_tensor(picked, device=scores.device))
        higher[start:stop] = ((negatives > target) & valid).sum(1).cpu().numpy()
        tied[start:stop] = ((negatives == target) & valid).sum(1).cpu().numpy()

    map_chunks(count, _chunks(n_users, chunk_size, device), workers=_workers(workers, device))
    return metrics_from_rank_counts(higher, tied, ks, ties)
