"""What every click model shares: the (query, candidate) pair table, the fitted relevance per
pair, and saving/loading as JSON (no pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmrank.atomic_io import atomic_write_text
from mmrank.clicks.log import ClickLog
from mmrank.errors import DataError

FORMAT_VERSION = 1


@dataclass
class PairIndex:
    """Unique (query, candidate) pairs of a log and, per impression, the pair it shows."""

    query_ids: np.ndarray       # (P,)
    candidate_ids: np.ndarray   # (P,)
    of_impression: np.ndarray   # (M,) int64 index into the pairs


def index_pairs(log: ClickLog) -> PairIndex:
    """Number the distinct (query_id, candidate_id) pairs of ``log`` (first-seen order)."""
    keys = pd.MultiIndex.from_arrays([log.impression_query_ids.astype(str), log.candidate_ids.astype(str)])
    codes, uniques = pd.factorize(keys)
    return PairIndex(np.asarray(uniques.get_level_values(0), dtype=object),
                     np.asarray(uniques.get_level_values(1), dtype=object), codes.astype(np.int64))


class ClickModel:
    """Base of the fitted click models: after ``fit`` they hold ``query_ids_``,
    ``candidate_ids_``, ``relevance_`` (P,) (the attractiveness / relevance probability of each
    pair) and ``impressions_`` (P,) (how often the pair was shown)."""

    kind = "base"

    def __init__(self) -> None:
        self.query_ids_: np.ndarray | None = None
        self.candidate_ids_: np.ndarray | None = None
        self.relevance_: np.ndarray | None = None
        self.impressions_: np.ndarray | None = None

    def _require_fitted(self) -> None:
        if self.relevance_ is None:
            raise DataError(f"the {self.kind} click model is not fitted", hint="call fit(log) or load a fitted model")

    def relevance_table(self) -> pd.DataFrame:
        """One row per (query_id, candidate_id) seen in the log: ``relevance`` and ``impressions``."""
        self._require_fitted()
        return pd.DataFrame({"query_id": self.query_ids_.astype(str), "candidate_id": self.candidate_ids_.astype(str),
                             "relevance": self.relevance_, "impressions": self.impressions_})

    def extra_state(self) -> dict:
        """Model-specific fitted values to save beside the pair table (subclasses add theirs)."""
        return {}

    def set_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` saved."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted model as one JSON file (kind, settings, per-pair relevance)."""
        self._require_fitted()
        obj = {"format_version": FORMAT_VERSION, "kind": self.kind, **self.extra_state(),
               "pairs": {"query_id": self.query_ids_.astype(str).tolist(),
                         "candidate_id": self.candidate_ids_.astype(str).tolist(),
                         "relevance": [round(float(v), 6) for v in self.relevance_],
                         "impressions": self.impressions_.astype(int).tolist()}}
        return atomic_write_text(path, json.dumps(obj) + "\n")


def load_click_model(path: str | Path, classes: dict[str, type]) -> ClickModel:
    """Read a model written by :meth:`ClickModel.save`; ``classes`` maps kinds to classes."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        kind = obj["kind"]
        pairs = obj["pairs"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"not a saved click model ({type(e).__name__}: {e})", path=path,
                        hint="write it with `mmrank clicks fit`") from None
    if kind not in classes:
        raise DataError(f"unknown click model kind {kind!r}", path=path, hint=f"known: {sorted(classes)}")
    model = classes[kind]()
    model.query_ids_ = np.asarray(pairs["query_id"], dtype=object)
    model.candidate_ids_ = np.asarray(pairs["candidate_id"], dtype=object)
    model.relevance_ = np.asarray(pairs["relevance"], dtype=np.float64)
    model.impressions_ = np.asarray(pairs["impressions"], dtype=np.int64)
    model.set_extra_state(obj)
    return model
