"""``recommend``: the top-k next items for one user of a trained sequential run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmrank.sequential.dataset import load_sequence_data
from mmrank.sequential.run import load_run


def recommend(run_dir: str | Path, user: str, k: int = 10, data: str | Path | None = None) -> list[dict]:
    """Top ``k`` items for ``user`` after everything they have seen (train + valid + test events),
    seen items left out: ``[{"rank", "item_id", "title", "score"}, ...]``."""
    ranker, config = load_run(run_dir)
    seq = load_sequence_data(data or config.data.path)
    s = seq.split
    u_own = ranker.users_.encode([user], f"--user (users of {run_dir})")[0]
    u_data = s.users.encode([user], seq.inter_path)[0]
    full = s.history_for("test").append(s.test_target).of(u_data)
    history = ranker.items_.encode(s.items.ids[full - 1], seq.inter_path)
    scores = ranker.score_users(torch.tensor([u_own]), _OneUser(u_own, history))[0].double()
    scores[torch.from_numpy(history)] = float("-inf")
    scores[0] = float("-inf")
    top = torch.topk(scores, min(k, len(scores) - 1 - len(set(history.tolist()))))
    titles = {}
    if seq.catalogue is not None and seq.catalogue.titles is not None:
        titles = dict(zip(seq.catalogue.item_ids, seq.catalogue.titles))
    out = []
    for r, (score, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        item = str(ranker.items_.ids[idx - 1])
        out.append({"rank": r, "item_id": item, "title": titles.get(item, item), "score": score})
    return out


class _OneUser:
    """A Histories stand-in holding one user's sequence (for scoring a single user)."""

    def __init__(self, user: int, items: np.ndarray) -> None:
        self.user, self.items = user, items

    def of(self, user: int) -> np.ndarray:
        return self.items
