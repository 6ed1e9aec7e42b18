"""What every audit check returns: one ``CheckResult`` with its value beside its threshold."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
STATUSES = (PASS, WARN, FAIL, SKIP)  # SKIP: the check does not apply (no interactions, no attention, ...)


@dataclass
class CheckResult:
    """One check's outcome.

    ``value`` is the number the status was decided on and ``threshold`` the number it was compared
    with; ``rule`` says how, in words (e.g. ``"FAIL if > 0"``), so a report can print them side by
    side. ``evidence`` holds JSON-ready details (counts, CIs, per-modality numbers, examples);
    ``advice`` tells the user what to do about a WARN or FAIL."""

    name: str
    status: str
    value: float | None = None
    threshold: float | None = None
    rule: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    advice: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        self.evidence = to_jsonable(self.evidence)
        self.value = None if self.value is None else float(self.value)
        self.threshold = None if self.threshold is None else float(self.threshold)

    def line(self) -> str:
        """``name  STATUS  value=…  rule`` for terminals and logs."""
        value = "—" if self.value is None else f"{self.value:.4g}"
        return f"{self.name:<26} {self.status:<4}  value={value:<10} {self.rule}"

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field; a non-finite ``value``/``threshold`` becomes
        ``None`` (NaN) or ``"inf"``/``"-inf"``, since JSON has no infinities."""
        d = asdict(self)
        d["value"] = _finite_or_none(self.value)
        d["threshold"] = _finite_or_none(self.threshold)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CheckResult":
        """Rebuild a result from :meth:`to_dict` output; unknown keys are ignored and missing
        ones take the field defaults.

        Raises:
            ValueError: ``status`` is not one of PASS/WARN/FAIL/SKIP."""
        return cls(**{k: d.get(k) for k in ("name", "status", "value", "threshold", "rule", "evidence", "advice")
                      if k in d})

    @classmethod
    def skip(cls, name: str, why: str, provide: str | None = None) -> "CheckResult":
        """A check that could not run: ``why``, and ``provide`` — what the user must give for it
        to run (quoted by the verdict when the policy requires the check)."""
        evidence = {"reason": why} | ({"provide": provide} if provide else {})
        return cls(name, SKIP, rule="not applicable", evidence=evidence, advice=provide or "")


def display_value(check: dict) -> str:
    """What a report shows as a check's value: Δ with its CI95 when the check measured a
    difference (significance), else the value (``—`` when none)."""
    ci = (check.get("evidence") or {}).get("delta_ci")
    if isinstance(ci, dict) and ci.get("mean") is not None and ci.get("low") is not None and ci.get("high") is not None:
        return f"Δ {ci['mean']:+.4f} [CI95 {ci['low']:+.4f}, {ci['high']:+.4f}]"
    v = check.get("value")
    return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def systems_line(meta: dict) -> str:
    """``model NAME (RUN) vs baseline NAME (RUN)`` from an audit's meta, for report headers."""
    def one(name_key: str, spec_keys: tuple[str, ...]) -> str:
        name = meta.get(name_key) or "none"
        spec = next((meta[k] for k in spec_keys if meta.get(k)), None)
        return f"{name} ({spec})" if spec and str(spec) != str(name) else str(name)

    line = (f"model {one('model', ('model_run', 'model_spec'))} vs baseline "
            f"{one('baseline', ('baseline_run', 'baseline_spec'))}")
    if meta.get("metric_convention"):
        line += f" · {meta.get('metric') or 'metric'} ({meta['metric_convention']} convention)"
    return line


def _finite_or_none(x: float | None):
    if x is None:
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf") if not math.isnan(x) else None


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None or "inf" (JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return _finite_or_none(float(obj))
    return obj
