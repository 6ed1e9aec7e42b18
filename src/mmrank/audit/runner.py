"""``audit(model, baseline, train=..., test=...)``: run every check, decide, return an AuditReport.

Reads like ranx's one-liners: ``audit(model, baseline, train=tr, test=te).verdict``. The model
and baseline are *fitted* rankers (``score(rset) -> (N,)``). Retraining checks need a fresh,
unfitted model of the same configuration: ``make_model()``; by default it is
``type(model)(**model.get_params())`` when the model exposes ``get_params`` (sklearn-style).
``fit_options`` are passed to every retraining ``fit`` (e.g. ``{"settings": {...}}``: the train
settings a neural ranker was trained with).

Every job of the audit — the fit of a model or baseline given as a kind (``Unfitted``), the
permuted-label retrains, the probes — runs in ONE job pool before the checks (``prefetch``), the
longest first, so that two workers stay busy until the last job instead of waiting on one check's
odd retrain.
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
from mmrank.audit.jobs import ENGINES, engine_session, run_pool
from mmrank.audit.policy import default_policy, load_policy
from mmrank.audit.rankers import Unfitted, fit_ranker, plan_ranker
from mmrank.audit.result import CheckResult, to_jsonable
from mmrank.audit.timed_queries import QueryTimes, query_events
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


# Checks whose jobs (retrains, probes) do not need the fitted model: they run in the audit's pool.
PLANNERS = {m.NAME: m.plan for m in (label_permutation_control, feature_label_leakage, modality_ablation, split_sensitivity)}


def prefetch(ctx: AuditContext, names: list[str], fits: dict[str, Unfitted]) -> dict[str, Any]:
    """Run the ``fits`` (role -> Unfitted) and every named check's planned jobs in one pool on
    the context's engine; store each check's results in ``ctx.prefetched`` and its jobs' own
    seconds in ``ctx.job_seconds``.

    Returns:
        role -> fitted model, and ``"<role>_seconds"`` -> that fit's own seconds."""
    tasks: list[tuple] = [(fit_ranker, (u.factory, ctx.train, ctx.valid, u.fit_options)) for u in fits.values()]
    owners: list[str] = list(fits)
    for name in names:
        planned = PLANNERS[name](ctx) if name in PLANNERS else []
        tasks += planned
        owners += [name] * len(planned)
    # the model's own fit and its retrains are the long jobs: they go out first
    first = {role: 0 for role in fits} | {"label_permutation_control": 1}
    order = sorted(range(len(tasks)), key=lambda i: (first.get(owners[i], 2), i))
    done = run_pool([tasks[i] for i in order], engine=ctx.engine, n_jobs=ctx.n_jobs, address=ctx.address) if tasks else []
    fitted: dict[str, Any] = {}
    for i, (result, seconds) in zip(order, done):
        owner = owners[i]
        if owner in fits:
            fitted[owner], fitted[f"{owner}_seconds"] = result, round(seconds, 3)
            continue
        ctx.prefetched.setdefault(owner, []).append((i, result))
        ctx.job_seconds[owner] = round(ctx.job_seconds.get(owner, 0.0) + seconds, 3)
    ctx.prefetched = {k: [r for _, r in sorted(v, key=lambda e: e[0])] for k, v in ctx.prefetched.items()}
    for name in names:  # a check that planned nothing finds an empty list, not a second run
        if name in PLANNERS and name not in ctx.prefetched:
            ctx.prefetched[name] = []
    return fitted


def timed_inputs(policy: dict, times: QueryTimes, sets: dict, events: Interactions | None,
                 train_events: Interactions | None, test_events: Interactions | None) -> tuple:
    """(policy, interactions, train events, test events, hint, counts) for reranking queries
    with cut times: with ``events`` (the task's ratings) the queries' training and test events
    (and their counts) and, when every test query shares one cut and the policy sets none, that
    cut as ``global_cut``; without them a hint saying what to provide."""
    if events is None:
        return policy, None, train_events, test_events, (
            f"the queries have cut times ({times.source}): pass the ratings the task was built from "
            "(--interactions) so the time checks can read when each training event happened"), None
    train_events, test_events, unmatched = query_events(times, sets, events)
    cut = times.global_test_cut()
    if cut is not None and policy["temporal_leakage"].get("global_cut") is None:
        policy = {**policy, "temporal_leakage": {**policy["temporal_leakage"], "global_cut": cut}}
    counts = {"training_events": len(train_events), "test_events": len(test_events),
              "training_positives_without_a_rating_at_or_after_the_cut": unmatched, "global_test_cut": cut}
    return policy, None, train_events, test_events, None, counts


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
    ``type(model)(**model.get_params())`` for sklearn-style models (an ``Unfitted`` model's own
    factory), None when the model has no ``get_params`` (those checks then SKIP unless
    ``make_model`` is given)."""
    if isinstance(model, Unfitted):
        return model.factory
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
    query_times: QueryTimes | None = None,
    run_dir: str | Path | None = None,
    checks: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Run the checks (all by default, or the named ones) and decide the verdict.

    ``model``/``baseline``: fitted rankers, run directories (loaded), registry kinds (built with
    default parameters) or ``Unfitted``; kinds and ``Unfitted`` are fitted on ``train``/``valid``
    inside the audit's one job pool, beside the retraining checks' jobs.

    ``query_times`` (a time-split reranking task: each query's user and cut time) makes the time
    checks apply and required: with ``interactions`` (the ratings the task was built from) the
    queries become training and test events for ``temporal_leakage`` (the task's single test cut
    as its global cut), and ``split_sensitivity`` compares the split with a temporal re-split."""
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} — use one of {ENGINES}")
    # A complete policy (what load_policy returns) is used as it is; anything else is merged onto
    # the packaged defaults, so a partial dict never drops the sections it does not name.
    complete = isinstance(policy, dict) and set(default_policy()) <= set(policy)
    pol = policy if complete else load_policy(policy)
    names = check_names(CHECKS, checks)
    if isinstance(model, (str, Path)):
        run_dir = run_dir if run_dir is not None or not Path(model).is_dir() else model
        model, factory, options = plan_ranker(model, None)
        make_model, fit_options = make_model or factory, options if fit_options is None else fit_options
    if isinstance(baseline, (str, Path)):
        baseline = plan_ranker(baseline, None)[0]
    if isinstance(model, Unfitted) and fit_options is None:
        fit_options = model.fit_options
    hint, time_events = None, None
    if query_times is not None:
        pol, interactions, train_interactions, test_interactions, hint, time_events = timed_inputs(
            pol, query_times, {"train": train, "valid": valid, "test": test}, interactions,
            train_interactions, test_interactions)
    ctx = AuditContext(
        train=train, test=test, valid=valid, model=model, baseline=baseline, policy=pol,
        make_model=make_model or default_factory(model), fit_options=dict(fit_options or {}), engine=engine,
        n_jobs=int(n_jobs or pol["engine"]["n_jobs"]), address=address,
        train_interactions=train_interactions, test_interactions=test_interactions,
        interactions=interactions, fit_evaluate=fit_evaluate, sampled_vs_full=sampled_vs_full, run_dir=run_dir,
        query_times=query_times, interactions_hint=hint,
    )
    fits = {role: m for role, m in (("model", model), ("baseline", baseline)) if isinstance(m, Unfitted)}
    with engine_session(engine, ctx.n_jobs, address):
        t0 = time.perf_counter()
        fitted = prefetch(ctx, names, fits)
        pool_seconds = round(time.perf_counter() - t0, 3)
        ctx.model = model = fitted.get("model", model)
        ctx.baseline = baseline = fitted.get("baseline", baseline)
        results, timings = run_checks(CHECKS, names, ctx, progress)
    verdict: Verdict = decide(results, pol, task=("rerank", "rerank_timed") if query_times is not None else "rerank")
    if run_dir is not None:
        ctx.extras.update(read_run_artifacts(run_dir))
    meta = {
        "model": type(model).__name__, "baseline": None if baseline is None else type(baseline).__name__,
        "train": train.summary(), "test": test.summary(), "engine": engine, "n_jobs": ctx.n_jobs,
        "seconds": timings, "job_pool_seconds": pool_seconds, "job_seconds": dict(ctx.job_seconds),
        "fit_seconds": {k.removesuffix("_seconds"): v for k, v in fitted.items() if k.endswith("_seconds")},
        "evaluable_test_queries": int(np.sum(ctx.evaluable)),
        "metric": pol.get("metric"), "metric_convention": pol.get("convention") or "default",
    }
    if query_times is not None:
        meta["query_times"] = {"source": query_times.source, "temporal_split": query_times.is_temporal(),
                               "events": time_events}
    return AuditReport(verdict.decision, verdict.reasons, results, pol, ctx.extras, meta)
