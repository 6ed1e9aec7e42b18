"""Configuration: YAML files + ``--set key=value`` overrides, validated by pydantic before any work.

``load_config(path, sets)`` reads a YAML file, applies overrides, expands ``${ENV}`` variables in
strings and validates the result against the config class its top-level ``task:`` names
(``rerank`` → :class:`RerankConfig` here; ``sequential`` → ``mmrank.sequential.config:
SequentialConfig``, imported lazily). Any unknown key or wrong type raises :class:`ConfigError`
naming the key path and what is allowed — before data is read or a model is built.

The generic helpers ``load_yaml_with_overrides`` and ``validate_config`` are shared with every
other config class.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mmrank.errors import ConfigError
from mmrank.models.registry import kinds

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# -- generic helpers ------------------------------------------------------------------------------
def parse_set(item: str) -> tuple[list[str], Any]:
    """``"train.lr=0.001"`` → (["train", "lr"], 0.001). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value — e.g. --set train.max_epochs=5")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key — e.g. --set model.params.d_model=128")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_sets(data: dict, sets: list[str] | None) -> dict:
    """Apply ``key.path=value`` overrides in place (intermediate mappings are created)."""
    for item in sets or []:
        path, value = parse_set(item)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(path[: i + 1])} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def expand_env(value: Any, where: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string; an unset variable is an error."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable ${{{name}}} is not set — export {name}=... (e.g. the shared data folder)")

    return _ENV.sub(sub, value)


def load_yaml_with_overrides(path: str | Path, sets: list[str] | None = None) -> dict:
    """Read a YAML mapping, apply ``--set`` overrides, expand ``${ENV}`` variables."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror} — check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)}) — fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of sections (data:, model:, train:, ...)")
    return expand_env(apply_sets(data, sets))


def _allowed(model_cls: type[BaseModel], loc: tuple) -> str:
    """Describe what is allowed at ``loc``: the field names of the enclosing model, or the
    annotation of the field itself."""
    cls: Any = model_cls
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is None:
            return ""
        cls = _model_in(field.annotation)
        if cls is None:
            return ""
    last = loc[-1] if loc else None
    fields = getattr(cls, "model_fields", {})
    if isinstance(last, str) and last in fields:
        return f"expected {_describe(fields[last].annotation)}"
    return f"allowed keys: {sorted(fields)}" if fields else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")


def validate_config(model_cls: type[BaseModel], data: dict, source: str = "config") -> BaseModel:
    """``model_cls.model_validate(data)``; every problem becomes one ConfigError line
    ``source: key.path: what is wrong — allowed ...``."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc) or "(top level)"
            if err["type"] == "extra_forbidden":
                what = "unknown key"
            else:
                what = err["msg"].removeprefix("Value error, ")
            # A validator's own message already says what is allowed.
            allowed = "" if err["type"] == "value_error" else _allowed(model_cls, loc)
            lines.append(f"{source}: {key}: {what}" + (f" — {allowed}" if allowed else ""))
        raise ConfigError("\n".join(lines)) from None


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_assignment=True)


# -- the rerank task --------------------------------------------------------------------------------
PathList = str | list[str]


class DataConfig(Strict):
    """Where the data is. Each of train/valid/test is a file or a list of files that are read and
    concatenated (so MQ2008 fold k is ``train: [S_k, S_k+1, S_k+2]``, ``valid: S_k+3``,
    ``test: S_k+4`` straight from the published parts). ``format`` is detected when omitted."""

    train: PathList
    valid: PathList | None = None
    test: PathList | None = None
    format: str | None = None


class ModelConfig(Strict):
    """``kind`` names a registered ranker; ``params`` are checked against that ranker's own
    parameters when the model is built (still before training)."""

    kind: Literal[kinds("rerank")]  # type: ignore[valid-type]  (the registry's rerank kinds)
    params: dict[str, Any] = Field(default_factory=dict)


class TrainSettings(Strict):
    """How a neural ranker is trained (ignored by rankers that fit in closed form / LightGBM)."""

    loss: str = Field("combined", description="a list loss of mmrank.losses.LIST_LOSSES")
    loss_params: dict[str, Any] = Field(default_factory=dict)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    batch_queries: int = Field(16, ge=1, description="queries per optimisation step (per process)")
    max_list_len: int | None = Field(None, ge=2, description="longer training lists are subsampled")
    max_epochs: int = Field(30, ge=1)
    min_epochs: int = Field(1, ge=0)
    patience: int = Field(5, ge=1, description="early stopping on validation nDCG@10")
    lr_patience: int = Field(2, ge=0, description="ReduceLROnPlateau patience (epochs)")
    lr_factor: float = Field(0.5, gt=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)
    accumulate: int = Field(1, ge=1)
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = "auto"
    seed: int = 0
    deterministic: bool = False
    monitor: str = "ndcg@10"
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process")
    progress: bool = Field(True, description="one line per epoch on stderr")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str) -> str:
        # The loss table is the one source of names; importing it here (not at module top)
        # keeps `import mmrank.config` free of torch.
        from mmrank.losses import LIST_LOSSES

        if value not in LIST_LOSSES:
            raise ValueError(f"unknown loss {value!r} — allowed: {sorted(LIST_LOSSES)}")
        return value


class CalibrationConfig(Strict):
    method: Literal["temperature", "isotonic", "none"] = "temperature"
    relevance_threshold: float = 1.0


class DistillConfig(Strict):
    enabled: bool = False
    alpha: float = Field(1.0, ge=0, description="ridge penalty of the linear student")


class EvaluateConfig(Strict):
    """Metrics reported after training (names as ``mmrank.metrics.parse_metric`` reads them)."""

    metrics: list[str] = Field(default_factory=lambda: ["ndcg@1", "ndcg@5", "ndcg@10", "map", "mrr"])
    convention: Literal["default", "letor"] = Field(
        "default", description="metric convention: default (LightGBM/allRank) or letor (the LETOR evaluation tool)")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        # Checked with the config, not after training: a typo must not cost a whole run.
        from mmrank.metrics import parse_metric

        for name in names:
            try:
                parse_metric(name)
            except ConfigError as e:
                raise ValueError(str(e)) from None
        return names


class RerankConfig(Strict):
    task: Literal["rerank"] = "rerank"
    name: str | None = None
    data: DataConfig
    model: ModelConfig
    train: TrainSettings = Field(default_factory=TrainSettings)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


TASKS = {
    "rerank": "mmrank.config:RerankConfig",
    "sequential": "mmrank.sequential.config:SequentialConfig",
}


def config_class(task: str) -> type[BaseModel]:
    """The config class of a task name (``rerank``, ``sequential``); ConfigError otherwise."""
    import importlib

    if task not in TASKS:
        raise ConfigError(f"task: unknown task {task!r} — allowed: {sorted(TASKS)}")
    module, name = TASKS[task].split(":")
    return getattr(importlib.import_module(module), name)


def load_config(path: str | Path, sets: list[str] | None = None, notices: list[str] | None = None) -> BaseModel:
    """Read, override, expand and validate a config; dispatches on its ``task:`` key.

    ``--set model.kind=K`` on a file whose ``model.params`` belong to another kind drops the
    parameters ``K`` does not take (e.g. SASRec's ``hidden`` for ``popularity``) and appends a
    sentence saying so to ``notices``; parameters set with ``--set model.params.X=...`` are kept
    (and checked)."""
    data = load_yaml_with_overrides(path, sets)
    note = drop_params_of_other_kind(data, sets)
    if note and notices is not None:
        notices.append(note)
    task = data.get("task", "rerank")
    return validate_config(config_class(task), data, str(path))


def drop_params_of_other_kind(data: dict, sets: list[str] | None) -> str | None:
    """When ``sets`` change ``model.kind``, remove the file's ``model.params`` the new kind does not
    take (in place); returns the notice, or None when nothing was dropped."""
    paths = [parse_set(item)[0] for item in sets or []]
    model = data.get("model")
    if ["model", "kind"] not in paths or not isinstance(model, dict) or not isinstance(model.get("params"), dict):
        return None
    kind = model.get("kind")
    if kind not in kinds():
        return None  # validation names the allowed kinds
    from mmrank.models.registry import model_class

    allowed = set(model_class(kind).Params.model_fields)
    explicit = {p[2] for p in paths if len(p) > 2 and p[:2] == ["model", "params"]}
    dropped = sorted(k for k in model["params"] if k not in allowed and k not in explicit)
    if not dropped:
        return None
    model["params"] = {k: v for k, v in model["params"].items() if k not in dropped}
    return f"model.kind set to {kind}: dropped model.params {', '.join(dropped)} (not parameters of {kind})"


def config_from_dict(data: dict, source: str = "config") -> BaseModel:
    """Validate an already-parsed config mapping (``${ENV}`` expanded) against its task's class."""
    return validate_config(config_class(data.get("task", "rerank")), expand_env(data), source)


def dump_config(cfg: BaseModel) -> str:
    """The resolved config as YAML (what a run directory's ``config.yaml`` holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
