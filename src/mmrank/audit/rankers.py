"""What ``--model``/``--baseline`` (or ``audit("lambdamart", run_dir, ...)``) may name: a registry
kind to build and fit, or a run directory written by ``mmrank train`` to load.

Either way the audit also gets a factory of fresh, unfitted models of the same configuration
(for its retraining checks) and the keywords each retraining ``fit`` needs (a neural ranker's
train settings from the config).
"""

from __future__ import annotations

import inspect
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


def resolve_ranker(spec: str | Path, config: str | Path | None, train: RankingSet,
                   valid: RankingSet | None) -> tuple[Any, Callable[[], Any], dict]:
    """(fitted model, factory of fresh unfitted ones, retraining ``fit`` keywords) for a kind
    (built from ``config``'s ``model.params`` when its ``model.kind`` matches, then fitted with
    the config's train settings) or a run directory (loaded, never retrained)."""
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
    model = factory()
    options = fit_options_for(model, data.get("train") if matches else None)
    return model.fit(train, valid, **options), factory, options
