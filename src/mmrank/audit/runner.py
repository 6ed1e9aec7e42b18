"""``audit(model, baseline, train=..., test=...)``: run every check, decide, return an AuditReport.

Reads like ranx's one-liners: ``audit(model, baseline, train=tr, test=te).verdict``. The model
and baseline are *fitted* rankers (``score(rset) -> (N,)``). Retraining checks need a fresh,
unfitted model of the same configuration: ``make_model()``; by default it is
``type(model)(**model.get_params())`` when the model exposes ``get_params`` (sklearn-style).
``fit_options`` are passed to every retraining ``fit`` (e.g. ``{"settings": {...}}``: the train
settings a neural ranker was trained with).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.audit import (
    attention_share,
    baseline_agreement,
    feature_label_leakage,
    label_permutation_control,
    modality_ablation,
    near_duplicates,
    provenance_check,
    sample_size,
    sampled_metric,
    significance,
    split_overlap,
    split_sensitivity,
    temporal_leakage,
)
from mmrank.audit.context import AuditContext
from mmrank.audit.jobs import ENGINES
from mmrank.audit.policy import default_policy, load_policy
from mmrank.audit.rankers import resolve_ranker
from mmrank.audit.result import CheckResult, to_jsonable
from mmrank.audit.run_artifacts import read_run_artifacts
from mmrank.audit.verdict import EXIT_CODES, Verdict, decide
from mmrank.data.model import Interactions, RankingSet
from mmrank.errors import ConfigError, DataError

# Integrity first (a leak makes every later number meaningless), then what the model uses,
# then the gain and whether it can be measured.
CHECKS = {
    m.NAME: m.check
    for m in (provenance_check, split_overlap, near_duplicates, temporal_leakage, feature_label_leakage,
              label_permutation_control, modality_ablation, attention_share, baseline_agreement,
              significance, sampled_metric, split_sensitivity, sample_size)
}


@dataclass
class AuditReport:
    """A finished audit: the verdict and its reasons, every check's result, the policy it ran
    under, plot data (``extras``) and run facts (``meta``); saved as, and loaded from, ``audit.json``."""

    verdict: str
    reasons: list[str]
    checks: list[CheckResult]
    policy: dict
    extras: dict = field(default_factory=dict)   # data for the report's plots
    meta: dict = field(default_factory=dict)     # models, data sizes, engine, timings

    @property
    def exit_code(self) -> int:
        """The CLI exit status of the verdict: GO 0, PAUSE_AND_FIX 3, NO_GO 4."""
        return EXIT_CODES[self.verdict]

    def __getitem__(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict:
        """The whole report as JSON-ready data (numpy values converted, non-finite floats made safe)."""
        return to_jsonable({"verdict": self.verdict, "reasons": self.reasons,
                            "checks": [c.to_dict() for c in self.checks], "policy": self.policy,
                            "extras": self.extras, "meta": self.meta})

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented UTF-8 JSON to ``path`` atomically.

        Returns:
            The path written."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> "AuditReport":
        """Rebuild a report from :meth:`to_dict` output (``policy``, ``extras``, ``meta`` optional).

        Raises:
            KeyError: ``verdict``, ``reasons`` or ``checks`` is missing.
            ValueError: a check's status is not PASS/WARN/FAIL/SKIP."""
        return cls(d["verdict"], list(d["reasons"]), [CheckResult.from_dict(c) for c in d["checks"]],
                   d.get("policy", {}), d.get("extras", {}), d.get("meta", {}))

    @classmethod
    def load(cls, path: str | Path) -> "AuditReport":
        """Read an ``audit.json`` written by :meth:`save` (or ``mmrank audit``).

        Raises:
            DataError: the file cannot be read, is not JSON, or lacks the report's keys."""
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"cannot read the audit: {e}", path=path, hint="point at an audit.json written by `mmrank audit`") from e


def check_names(checks: dict[str, Callable], names: list[str] | None) -> list[str]:
    """The checks to run, in order (all when ``names`` is None); ConfigError names unknown ones."""
    names = list(checks) if names is None else list(names)
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise ConfigError(f"unknown audit check(s) {unknown} — known: {', '.join(checks)}")
    return names


def run_checks(checks: dict[str, Callable], names: list[str], ctx: Any,
               progress: Callable[[str], None] | None) -> tuple[list[CheckResult], dict[str, float]]:
    """Each named check on ``ctx``, in order: the results and each check's seconds."""
    results, timings = [], {}
    for name in names:
        if progress is not None:
            progress(name)
        t0 = time.perf_counter()
        results.append(checks[name](ctx))
        timings[name] = round(time.perf_counter() - t0, 3)
    return results, timings


def default_factory(model: Any) -> Callable[[], Any] | None:
    """A maker of fresh, unfitted copies of ``model`` for the retraining checks:
    ``type(model)(**model.get_params())`` for sklearn-style models, None when the model has no
    ``get_params`` (those checks then SKIP unless ``make_model`` is given)."""
    params = getattr(model, "get_params", None)
    return partial(type(model), **params()) if callable(params) else None


def audit(
    model: Any | str | Path,
    baseline: Any | str | Path | None = None,
    *,
    train: RankingSet,
    test: RankingSet,
    valid: RankingSet | None = None,
    make_model: Callable[[], Any] | None = None,
    fit_options: dict | None = None,
    policy: dict | str | Path | None = None,
    engine: str = "joblib",
    n_jobs: int | None = None,
    address: str | None = None,
    train_interactions: Interactions | None = None,
    test_interactions: Interactions | None = None,
    interactions: Interactions | None = None,
    fit_evaluate: Callable | None = None,
    sampled_vs_full: dict | None = None,
    run_dir: str | Path | None = None,
    checks: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Run the checks (all by default, or the named ones) and decide the verdict.

    ``model``/``baseline``: fitted rankers, run directories (loaded) or registry kinds (built
    with default parameters and fitted on ``train``/``valid``)."""
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} — use one of {ENGINES}")
    # A complete policy (what load_policy returns) is used as it is; anything else is merged onto
    # the packaged defaults, so a partial dict never drops the sections it does not name.
    complete = isinstance(policy, dict) and set(default_policy()) <= set(policy)
    pol = policy if complete else load_policy(policy)
    names = check_names(CHECKS, checks)
    if isinstance(model, (str, Path)):
        run_dir = run_dir if run_dir is not None or not Path(model).is_dir() else model
        model, factory, options = resolve_ranker(model, None, train, valid)
        make_model, fit_options = make_model or factory, options if fit_options is None else fit_options
    if isinstance(baseline, (str, Path)):
        baseline = resolve_ranker(baseline, None, train, valid)[0]
    ctx = AuditContext(
        train=train, test=test, valid=valid, model=model, baseline=baseline, policy=pol,
        make_model=make_model or default_factory(model), fit_options=dict(fit_options or {}), engine=engine,
        n_jobs=int(n_jobs or pol["engine"]["n_jobs"]), address=address,
        train_interactions=train_interactions, test_interactions=test_interactions,
        interactions=interactions, fit_evaluate=fit_evaluate, sampled_vs_full=sampled_vs_full, run_dir=run_dir,
    )
    results, timings = run_checks(CHECKS, names, ctx, progress)
    verdict: Verdict = decide(results, pol, task="rerank")
    if run_dir is not None:
        ctx.extras.update(read_run_artifacts(run_dir))
    meta = {
        "model": type(model).__name__, "baseline": None if baseline is None else type(baseline).__name__,
        "train": train.summary(), "test": test.summary(), "engine": engine, "n_jobs": ctx.n_jobs,
        "seconds": timings, "evaluable_test_queries": int(np.sum(ctx.evaluable)),
        "metric": pol.get("metric"), "metric_convention": pol.get("convention") or "default",
    }
    return AuditReport(verdict.decision, verdict.reasons, results, pol, ctx.extras, meta)
