"""One parameter style for every model: a pydantic ``Params`` class per model, validated in the
constructor, stored as ``self.params`` (attribute access), returned by ``get_params`` (a dict, so
``type(model)(**model.get_params())`` builds an unfitted copy, scikit-learn style).

The constructor stores parameters only; everything learned in ``fit`` ends in ``_``."""

from __future__ import annotations

from typing import Any, ClassVar

from mmrank.config import Strict, validate_config


class WithParams:
    """Base of every registered model: ``kind`` names it, ``Params`` declares its parameters."""

    kind: ClassVar[str] = ""
    Params: ClassVar[type[Strict]] = Strict

    def __init__(self, **params: Any) -> None:
        # ConfigError (one line per bad key, naming what is allowed) for an unknown or mistyped key.
        self.params = validate_config(type(self).Params, params, f"model.params ({self.kind})")

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters as a JSON-ready dict."""
        return self.params.model_dump(mode="json")
