"""``audit_files(model, baseline, train=..., test=...)``: the reranking audit from files, as
``mmrank audit`` runs it (the CLI only parses options and prints).

Reads the ranking files, builds ``model``/``baseline`` (a registry kind, built from ``config``'s
``model.params`` when its kind matches, fitted by the audit in its one job pool beside the
retraining checks; or a run directory, loaded), runs every check and records which files and
systems were audited in the report's meta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mmrank.audit.rankers import plan_ranker
from mmrank.audit.runner import AuditReport, audit


def audit_files(
    model: str, baseline: str, *, train: str | Path, test: str | Path, valid: str | Path | None = None,
    format: str | None = None, config: str | Path | None = None, policy: dict | str | Path | None = None,
    engine: str = "joblib", n_jobs: int | None = None, address: str | None = None,
    interactions: str | Path | None = None, task: str | Path | None = None,
    checks: list[str] | None = None, step: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit ``model`` against ``baseline`` on ranking files.

    Args:
        model, baseline: a model kind or a run directory written by ``mmrank train``.
        train, test, valid: ranking files (LETOR/LibSVM, JSONL, Parquet).
        interactions: the ratings a time-split task was built from (RecBole folder or ``.inter``,
            MovieLens): the time checks read when each training event happened.
        task: the task's ``task.json`` (each query's cut time); default: a ``task.json`` beside
            ``test`` that lists cut times.
        checks: the checks to run (default: all).
        step: called with a description before each stage (reading, fitting, auditing).
        progress: called with each check's name before it runs.
    Returns:
        the AuditReport; its meta names the files and both systems (kinds or run dirs)."""
    from mmrank.data.formats import load_ranking

    say = step or (lambda _: None)
    say("reading data")
    train_set, test_set = load_ranking(train, format), load_ranking(test, format)
    valid_set = load_ranking(valid, format) if valid else None
    times, events = timed_data(test, interactions, task)
    planned, factory, fit_options = plan_ranker(model, config)
    base, _, _ = plan_ranker(baseline, None)
    say(f"training {model} and baseline {baseline}, retraining checks (one job pool), then auditing")
    model_run = str(model) if Path(model).is_dir() else None
    report = audit(planned, base, train=train_set, test=test_set, valid=valid_set, make_model=factory,
                   fit_options=fit_options, policy=policy, engine=engine, n_jobs=n_jobs, address=address,
                   run_dir=model_run, checks=checks, progress=progress, query_times=times, interactions=events)
    report.meta.update({
        "model_spec": str(model), "baseline_spec": str(baseline), "model_run": model_run,
        "baseline_run": str(baseline) if Path(baseline).is_dir() else None,
        "files": {"train": str(train), "test": str(test), "valid": str(valid) if valid else None,
                  "interactions": str(interactions) if interactions else None, "task": times and times.source},
    })
    return report


def timed_data(test: str | Path, interactions: str | Path | None, task: str | Path | None):
    """(query times or None, interaction events or None) for a reranking audit: the task's
    ``task.json`` (given, or found beside ``test``) and the ratings it was built from.

    Raises:
        ConfigError: ``interactions`` without any task giving the queries' cut times."""
    from mmrank.audit.timed_queries import read_query_times, task_beside
    from mmrank.errors import ConfigError

    found = Path(task) if task else task_beside(test)
    times = read_query_times(found) if found else None
    if interactions is None:
        return times, None
    if times is None:
        raise ConfigError(f"--interactions {interactions}: the ranking files say nothing about time — pass --task "
                          "with the task.json that lists each query's cut time (written by `mmrank data features`)")
    from mmrank.data.formats import read_interactions

    return times, read_interactions(interactions)[0]
