"""Non-learned sequential baselines, scored exactly like SASRec (full ranking, seen items masked).

* ``PopularityRanker``: every user gets the items with most training interactions.
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
