"""``recommend``: the top-k next items for one user of a trained sequential run.

A run trained by this version keeps what it needs in ``RUN/recommend/``
(``mmrank.sequential.recommend_state``): the first call scores every user once and caches each
one's top items; every later call reads one row of that cache (no torch, no data: well under a
second). With ``data`` (other events than the run's) or for an older run the data is read and
the user scored live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mmrank.sequential.recommend_state import TOP_K, RecommendState


def recommend(run_dir: str | Path, user: str, k: int = 10, data: str | Path | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Top ``k`` items for ``user`` after everything they have seen (train, valid and test
    events), seen items left out: ``[{"rank", "item_id", "title", "score"}, ...]``; ``title`` is
    None when the data has no item titles.

    Args:
        run_dir: a sequential run directory.
        user: a user id of the run.
        k: how many items.
        data: read these events (with the run's data settings) instead of the run's own.
        progress: ``progress(done, total)`` while the first call scores every user.
    """
    run_dir = Path(run_dir)
    state = RecommendState.load(run_dir) if data is None else None
    if state is None:
        return _live(run_dir, user, k, data)
    state.user_row(user)  # an unknown user fails before any scoring
    top = state.cached_top(k)
    if top is None:
        from mmrank.sequential.run import load_run

        ranker, _ = load_run(run_dir)
        top = state.build_top(ranker, max(k, TOP_K), progress)
    return state.answer(top, user, k)


def _live(run_dir: Path, user: str, k: int, data: str | Path | None) -> list[dict]:
    """Score ``user`` from the data itself (other data than the run's, or a run without state)."""
    import torch

    from mmrank.sequential.dataset import load_sequence_data
    from mmrank.sequential.run import load_run

    ranker, config = load_run(run_dir)
    seq = load_sequence_data(config.data, data)
    s = seq.split
    u_own = ranker.users_.encode([user], f"--user (users of {run_dir})")[0]
    u_data = s.users.encode([user], seq.inter_path)[0]
    full = s.full_history().of(u_data)
    history = ranker.items_.encode(s.items.ids[full - 1], seq.inter_path)
    scores = ranker.score_users(torch.tensor([u_own]), _OneUser(u_own, history))[0].double()
    scores[torch.from_numpy(history)] = float("-inf")
    scores[0] = float("-inf")
    top = torch.topk(scores, min(k, len(scores) - 1 - len(set(history.tolist()))))
    titles = None
    if seq.catalogue is not None and seq.catalogue.titles is not None:
        titles = dict(zip(seq.catalogue.item_ids, seq.catalogue.titles))
    out = []
    for r, (score, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        item = str(ranker.items_.ids[idx - 1])
        out.append({"rank": r, "item_id": item, "title": None if titles is None else titles.get(item), "score": score})
    return out


class _OneUser:
    """A Histories stand-in holding one user's sequence (for scoring a single user)."""

    def __init__(self, user: int, items: np.ndarray) -> None:
        self.user, self.items = user, items

    def of(self, user: int) -> np.ndarray:
        return self.items
