"""What ``--model``/``--baseline`` (or ``audit("lambdamart", run_dir, ...)``) may name: a registry
kind to build and fit, or a run directory written by ``mmrank train`` to load.

Either way the audit also gets a factory of fresh, unfitted models of the same configuration
(for its retraining checks) and the keywords each retraining ``fit`` needs (a neural ranker's
train settings from the config). A kind may stay :class:`Unfitted`: the audit then fits it in the
same job pool as its retraining checks (``plan_ranker``), so the fit and the retrains share the
workers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import yaml

from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError


def read_config(config: str | Path | None) -> dict:
    """Load a YAML training config; ``{}`` when ``config`` is None or the YAML is not a mapping.

    Raises:
        ConfigError: the file cannot be read or is not valid YAML."""
    if config is None:
        return {}
    try:
        data = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{config}: cannot read the config: {e} — pass a YAML like configs/mq2008_lambdamart.yaml") from e
    return data if isinstance(data, dict) else {}


def fit_options_for(model: Any, train_section: dict | None) -> dict:
    """Neural rankers take the config's ``train`` settings in ``fit``; GBDTs/heuristics do not."""
    takes = "settings" in inspect.signature(type(model).fit).parameters
    return {"settings": {**train_section, "progress": False}} if takes and train_section else {}


@dataclass
class Unfitted:
    """A model the audit fits itself on its ``train``/``valid``, as a job of its one job pool:
    ``factory()`` builds it, ``fit_options`` go to its ``fit``."""

    factory: Callable[[], Any]
    fit_options: dict = field(default_factory=dict)


def fit_ranker(factory: Callable[[], Any], train: RankingSet, valid: RankingSet | None, fit_options: dict) -> Any:
    """One job: ``factory()`` fitted on ``train`` (early stopping on ``valid``) with ``fit_options``."""
    return factory().fit(train, valid, **fit_options)


def resolve_ranker(spec: str | Path, config: str | Path | None, train: RankingSet,
                   valid: RankingSet | None) -> tuple[Any, Callable[[], Any], dict]:
    """(fitted model, factory of fresh unfitted ones, retraining ``fit`` keywords) for a kind
    (built from ``config``'s ``model.params`` when its ``model.kind`` matches, then fitted with
    the config's train settings) or a run directory (loaded, never retrained)."""
    model, factory, options = plan_ranker(spec, config)
    if isinstance(model, Unfitted):
        model = fit_ranker(factory, train, valid, options)
    return model, factory, options


def plan_ranker(spec: str | Path, config: str | Path | None) -> tuple[Any, Callable[[], Any], dict]:
    """As :func:`resolve_ranker`, but a kind comes back :class:`Unfitted` (for the audit to fit
    in its job pool); a run directory is loaded."""
    from mmrank.models.registry import MODELS, build_ranker

    if Path(spec).is_dir():
        from mmrank import runs

        model = runs.load_model(spec)
        run_config = runs.load_run_config(spec)
        section = run_config.get("model", {})
        kind, params = section.get("kind", runs.model_kind(spec)), section.get("params") or {}
        return model, partial(build_ranker, kind, params), fit_options_for(model, run_config.get("train"))
    if str(spec) not in MODELS:
        raise ConfigError(f"model {str(spec)!r}: neither a run directory nor a model kind — use one of "
                          f"{sorted(MODELS)} or a directory written by `mmrank train`")
    data = read_config(config)
    section = data.get("model") or {}
    matches = section.get("kind") == str(spec)
    params = (section.get("params") or {}) if matches else {}
    factory = partial(build_ranker, str(spec), params)
    options = fit_options_for(factory(), data.get("train") if matches else None)
    return Unfitted(factory, options), factory, options
