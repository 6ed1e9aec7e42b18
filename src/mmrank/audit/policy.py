"""The audit policy: the packaged ``policy.yaml`` deep-merged with the user's overrides."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mmrank.errors import ConfigError


def default_policy() -> dict:
    """Read the packaged ``mmrank/audit/policy.yaml`` (the thresholds every check uses).

    Returns:
        A fresh nested dict on every call, so callers may mutate it."""
    text = resources.files("mmrank.audit").joinpath("policy.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_policy(overrides: dict | str | Path | None = None) -> dict:
    """Packaged defaults, then ``overrides`` (a dict or a YAML path) merged key by key.

    Unknown keys are refused so that a typo cannot silently leave a default in force."""
    policy = default_policy()
    if overrides is None:
        return policy
    if isinstance(overrides, (str, Path)):
        path = Path(overrides)
        try:
            overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the audit policy: {e} — pass a YAML file of overrides") from e
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: the audit policy must be a YAML mapping — e.g. 'significance: {{alpha: 0.01}}'")
    return _merge(policy, overrides, "")


def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{where}{key}"
        if key not in base:
            raise ConfigError(f"unknown audit policy key {name!r} — known keys: {', '.join(sorted(base))}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"audit policy key {name!r} must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, name + ".")
        else:
            out[key] = value
    return out


def section(policy: dict, name: str) -> dict[str, Any]:
    """The policy's ``name`` block (e.g. ``"significance"``), or ``{}`` when absent or null."""
    return policy.get(name, {}) or {}
