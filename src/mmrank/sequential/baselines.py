"""Non-learned sequential baselines, scored exactly like SASRec (full ranking, seen items masked).

* ``PopularityRanker``: every user gets the items with most training interactions.
* ``RepeatRanker``: each user's own past items first (repeat consumption), popularity after.
* ``MostRecentRanker``: popularity among the most recent ``window`` training interactions
  (global time), ties broken by overall popularity — "what is being watched right now", the
  time-aware baseline a sequential model must also beat.

Both store one score per item (safetensors) plus the vocabularies (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from safetensors.numpy import load_file, save_file

from mmrank.atomic_io import atomic_write_text
from mmrank.config import Strict
from mmrank.errors import DataError
from mmrank.models.params import WithParams
from mmrank.sequential.data import IdVocab

COUNTED_KINDS = ("popularity", "most_recent", "repeat")  # fitted by counting events, nothing trained


class _ItemScoreRanker(WithParams):
    """One fixed score per item, the same for every user (seen items masked by the evaluation)."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.item_scores_: np.ndarray | None = None
        self.items_: IdVocab | None = None
        self.users_: IdVocab | None = None
        self.history_: list[dict] = []

    def fit(self, split, valid=None, **_: Any):
        self.items_, self.users_ = split.items, split.users
        self.item_scores_ = self._item_scores(split).astype(np.float64)
        self.item_scores_[0] = -np.inf
        return self

    def _item_scores(self, split) -> np.ndarray:
        raise NotImplementedError

    def score_users(self, users: torch.Tensor, histories=None) -> torch.Tensor:
        return torch.from_numpy(self.item_scores_).expand(len(users), -1)

    def score(self, rset) -> np.ndarray:
        cand = self.items_.encode(rset.candidate_ids, "<RankingSet candidate_ids>")
        return self.item_scores_[cand].copy()

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / ".model.safetensors.tmp"
        save_file({"item_scores": self.item_scores_}, str(tmp))
        tmp.replace(directory / "model.safetensors")
        meta = {"kind": self.kind, "params": self.get_params(), "item_ids": list(self.items_.ids),
                "user_ids": list(self.users_.ids)}
        atomic_write_text(directory / "model.json", json.dumps(meta, indent=1))

    @classmethod
    def load(cls, directory: str | Path):
        directory = Path(directory)
        meta = json.loads((directory / "model.json").read_text())
        self = cls(**meta["params"])
        self.items_ = IdVocab(np.array(meta["item_ids"], dtype=object), 1, "item")
        self.users_ = IdVocab(np.array(meta["user_ids"], dtype=object), 0, "user")
        self.item_scores_ = load_file(str(directory / "model.safetensors"))["item_scores"]
        return self


def _counts(items: np.ndarray, n_items: int) -> np.ndarray:
    return np.bincount(items, minlength=n_items + 1).astype(np.float64)


class PopularityRanker(_ItemScoreRanker):
    kind = "popularity"

    def _item_scores(self, split) -> np.ndarray:
        return _counts(split.train.items, split.n_items)


class MostRecentRanker(_ItemScoreRanker):
    kind = "most_recent"

    class Params(Strict):
        window: int = Field(5000, ge=1, description="most recent training events counted")

    def _item_scores(self, split) -> np.ndarray:
        train = split.train
        if train.times is None:
            raise DataError("most_recent needs event timestamps in the training histories",
                            hint="use data with a timestamp column, or the popularity baseline")
        recent = train.items[np.argsort(train.times, kind="stable")[-self.params.window:]]
        overall = _counts(train.items, split.n_items)
        # Recent count dominates; overall popularity (scaled below 1) only breaks its ties.
        return _counts(recent, split.n_items) + overall / (overall.max() + 1.0)


class RepeatRanker(_ItemScoreRanker):
    """Repeat consumption: each user's own past items first (most often consumed first, the most
    recent breaking ties), every other item after them in popularity order.

    The baseline for data where people consume the same item again (music, groceries, re-watches):
    under the usual "seen items masked" evaluation its history part only matters for a held-out
    item the user already has in their history — a split that put the test item into the training
    history makes it look perfect, which is what ``held_out_leakage`` must catch.
    """

    kind = "repeat"

    def _item_scores(self, split) -> np.ndarray:
        return _counts(split.train.items, split.n_items)

    def score_users(self, users: torch.Tensor, histories=None) -> torch.Tensor:
        """``(len(users), n_items + 1)``: popularity scaled into [0, 1) for every item; a user's
        own items get ``2 + count + recency`` (count of that item in the history, recency in
        (0, 1): the position of its latest occurrence), so they rank above every other item."""
        pop = self.item_scores_.copy()
        finite = np.isfinite(pop)
        pop[finite] /= pop[finite].max() + 1.0
        out = np.tile(pop, (len(users), 1))
        if histories is None:
            return torch.from_numpy(out)
        for row, u in enumerate(torch.as_tensor(users).tolist()):
            out[row] = self._with_history(out[row], histories.of(int(u)))
        return torch.from_numpy(out)

    @staticmethod
    def _with_history(row: np.ndarray, items: np.ndarray) -> np.ndarray:
        if len(items):
            counts = np.bincount(items, minlength=len(row)).astype(np.float64)
            latest = np.zeros(len(row))
            latest[items] = (np.arange(len(items)) + 1.0) / (len(items) + 1.0)  # later occurrences overwrite
            seen = counts > 0
            seen[0] = False
            row[seen] = 2.0 + counts[seen] + latest[seen]
        return row

    def score(self, rset) -> np.ndarray:
        """RankingSet scores: each query's ``query_texts`` entry holds the user's history as
        space-separated item ids (oldest first), as for SASRec; its candidates are item ids."""
        out = np.empty(rset.n_candidates, dtype=np.float64)
        base = self.score_users(torch.zeros(1, dtype=torch.long))[0].numpy()
        for q in range(rset.n_queries):
            text = rset.query_texts[q] if rset.query_texts is not None else ""
            seq = self.items_.encode(str(text or "").split(), "<RankingSet query_texts>")
            row = self._with_history(base.copy(), np.asarray(seq, dtype=np.int64))
            a, b = rset.offsets[q], rset.offsets[q + 1]
            out[a:b] = row[self.items_.encode(rset.candidate_ids[a:b], "<RankingSet candidate_ids>")]
        return out
