"""The one registry of model kinds, for both tasks: kind → (class as an import string, task).

Import strings, so naming a kind never imports every model (LightGBM, torch and friends load only
for the kind in use), and so ``mmrank.config`` can derive its allowed ``model.kind`` values from
this table without importing any model. Each class follows its task's contract in
``mmrank.models.contracts`` (checked for every entry by ``tests/contract``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from mmrank.errors import ConfigError

Task = Literal["rerank", "sequential"]


@dataclass(frozen=True)
class ModelEntry:
    """Where a kind's class lives and which task it serves."""

    path: str
    task: Task


MODELS: dict[str, ModelEntry] = {
    "cotrr": ModelEntry("mmrank.models.cotrr:CoTRR", "rerank"),
    "fusion": ModelEntry("mmrank.models.fusion:FusionV2", "rerank"),
    "linear_student": ModelEntry("mmrank.models.distill:LinearStudent", "rerank"),
    "lambdamart": ModelEntry("mmrank.models.baselines:LambdaMART", "rerank"),
    "heuristic": ModelEntry("mmrank.models.baselines:HeuristicBaseline", "rerank"),
    "sasrec": ModelEntry("mmrank.sequential.sasrec:SASRecRanker", "sequential"),
    "sasrec_moe": ModelEntry("mmrank.sequential.moe:SASRecMoERanker", "sequential"),
    "sasrec_content": ModelEntry("mmrank.sequential.content:SASRecContentRanker", "sequential"),
    "popularity": ModelEntry("mmrank.sequential.baselines:PopularityRanker", "sequential"),
    "most_recent": ModelEntry("mmrank.sequential.baselines:MostRecentRanker", "sequential"),
}


def kinds(task: Task | None = None) -> tuple[str, ...]:
    """The registered kinds (of one task when given), in registry order.

    Example:
        >>> kinds("sequential")
        ('sasrec', 'sasrec_moe', 'sasrec_content', 'popularity', 'most_recent')
    """
    return tuple(k for k, e in MODELS.items() if task is None or e.task == task)


def task_of(kind: str) -> Task:
    """The task a kind serves; ConfigError for an unknown kind."""
    return _entry(kind).task


def _entry(kind: str) -> ModelEntry:
    if kind not in MODELS:
        raise ConfigError(f"model.kind: unknown model kind {kind!r} — allowed: {sorted(MODELS)}")
    return MODELS[kind]


def model_class(kind: str) -> type:
    """The class of a registered kind (imported on first use)."""
    module, name = _entry(kind).path.split(":")
    return getattr(importlib.import_module(module), name)


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Fail before training on a parameter the model does not take, or of the wrong type: every
    model declares its parameters as a pydantic ``Params`` class."""
    from mmrank.config import validate_config

    validate_config(model_class(kind).Params, params, f"model.params ({kind})")


def build_ranker(kind: str, params: dict[str, Any] | None = None):
    """An unfitted model of ``kind`` with ``params`` (checked first; ConfigError names the key).

    Example:
        >>> build_ranker("lambdamart", {"n_estimators": 50}).params.n_estimators
        50
    """
    params = dict(params or {})
    check_params(kind, params)
    return model_class(kind)(**params)
