"""Ranker kinds → classes, as import strings so that naming a kind never imports every model
(LightGBM, torch and friends load only for the kind in use)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from mmrank.config import validate_config
from mmrank.errors import ConfigError

MODELS: dict[str, str] = {
    "cotrr": "mmrank.models.cotrr:CoTRR",
    "fusion": "mmrank.models.fusion:FusionV2",
    "linear_student": "mmrank.models.distill:LinearStudent",
    "lambdamart": "mmrank.models.baselines:LambdaMART",
    "heuristic": "mmrank.models.baselines:HeuristicBaseline",
    "sasrec": "mmrank.sequential.sasrec:SASRecRanker",
    "sasrec_moe": "mmrank.sequential.moe:SASRecMoERanker",
}


def model_class(kind: str) -> type:
    if kind not in MODELS:
        raise ConfigError(f"model.kind: unknown model kind {kind!r} — allowed: {sorted(MODELS)}")
    module, name = MODELS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Fail before training on a parameter the model does not take (or of the wrong type, for
    models that declare a pydantic ``Params``)."""
    cls = model_class(kind)
    if hasattr(cls, "Params"):
        validate_config(cls.Params, params, f"model.params ({kind})")
        return
    sig = inspect.signature(cls.__init__)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    allowed = [n for n in sig.parameters if n != "self"]
    for key in params:
        if key not in allowed:
            raise ConfigError(f"model.params.{key}: unknown parameter of {kind!r} — allowed: {allowed}")


def build_ranker(kind: str, params: dict[str, Any] | None = None):
    params = dict(params or {})
    check_params(kind, params)
    try:
        return model_class(kind)(**params)
    except TypeError as e:
        raise ConfigError(f"model.params ({kind}): {e}") from None
