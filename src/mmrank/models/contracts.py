"""The two model contracts, written as ``typing.Protocol`` classes, one per task.

Every registered kind (``mmrank.models.registry.MODELS``) follows its task's contract; the
contract test (``tests/contract/test_model_contract.py``) checks each one: ``fit`` returns the
model, scoring is deterministic, ``save`` → ``load`` scores identically, bad input raises the
project's own error (``mmrank.errors.MmrankError``).

Style (scikit-learn's): the constructor stores validated parameters only (``Params``, see
``mmrank.models.params``); learning happens in ``fit``; scoring is pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from mmrank.data.model import RankingSet


@runtime_checkable
class Reranker(Protocol):
    """Scores the candidates of query groups: ``fit(train, valid) -> self``, ``score(rset) -> (N,)``."""

    kind: ClassVar[str]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (``type(m)(**m.get_params())`` is an unfitted copy)."""

    def fit(self, train: RankingSet, valid: RankingSet | None = None) -> "Reranker":
        """Learn from ``train`` (early stopping / calibration on ``valid``); returns self."""

    def score(self, rset: RankingSet) -> np.ndarray:
        """One float per candidate, in ``rset`` order; pure (same input, same scores)."""

    def save(self, directory: str | Path) -> None:
        """Write ``model.json`` (+ weights) into a run directory; no pickle."""

    @classmethod
    def load(cls, directory: str | Path) -> "Reranker":
        """The model ``save`` wrote, checksums verified."""


@runtime_checkable
class SequentialRecommender(Protocol):
    """Scores every catalogue item for users with histories: the reranker contract on a
    ``SequenceSplit`` plus full-ranking scores."""

    kind: ClassVar[str]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""

    def fit(self, split, valid=None, **options: Any) -> "SequentialRecommender":
        """Learn from ``split.train`` (early stopping on ``split``'s valid targets); returns self."""

    def score_users(self, users, histories):
        """``(len(users), n_items + 1)`` scores (column 0 is padding) for dense user ids."""

    def score(self, rset: RankingSet) -> np.ndarray:
        """Scores of candidate item ids for users given as query ids (reranking a list)."""

    def save(self, directory: str | Path) -> None:
        """Write ``model.json`` + ``model.safetensors``."""

    @classmethod
    def load(cls, directory: str | Path) -> "SequentialRecommender":
        """The model ``save`` wrote."""


CONTRACTS: dict[str, type] = {"rerank": Reranker, "sequential": SequentialRecommender}


def missing_members(cls: type, task: str) -> list[str]:
    """Names of the task contract's members that ``cls`` lacks (empty when it conforms)."""
    protocol = CONTRACTS[task]
    wanted = [n for n in vars(protocol) if not n.startswith("_")] + ["kind"]
    return sorted({n for n in wanted if not callable(getattr(cls, n, None)) and n != "kind"} |
                  ({"kind"} if not isinstance(getattr(cls, "kind", None), str) or not cls.kind else set()))
