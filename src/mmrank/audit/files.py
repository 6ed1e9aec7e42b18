"""``audit_files(model, baseline, train=..., test=...)``: the reranking audit from files, as
``mmrank audit`` runs it (the CLI only parses options and prints).

Reads the ranking files, builds and fits ``model``/``baseline`` (a registry kind, built from
``config``'s ``model.params`` when its kind matches; or a run directory, loaded), runs every
check and records which files and systems were audited in the report's meta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from mmrank.audit.rankers import resolve_ranker
from mmrank.audit.runner import AuditReport, audit


def audit_files(
    model: str, baseline: str, *, train: str | Path, test: str | Path, valid: str | Path | None = None,
    format: str | None = None, config: str | Path | None = None, policy: dict | str | Path | None = None,
    engine: str = "joblib", n_jobs: int | None = None, address: str | None = None,
    checks: list[str] | None = None, step: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Audit ``model`` against ``baseline`` on ranking files.

    Args:
        model, baseline: a model kind or a run directory written by ``mmrank train``.
        train, test, valid: ranking files (LETOR/LibSVM, JSONL, Parquet).
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
    say(f"training {model}")
    fitted, factory, fit_options = resolve_ranker(model, config, train_set, valid_set)
    say(f"training baseline {baseline}")
    base, _, _ = resolve_ranker(baseline, None, train_set, valid_set)
    say("auditing")
    model_run = str(model) if Path(model).is_dir() else None
    report = audit(fitted, base, train=train_set, test=test_set, valid=valid_set, make_model=factory,
                   fit_options=fit_options, policy=policy, engine=engine, n_jobs=n_jobs, address=address,
                   run_dir=model_run, checks=checks, progress=progress)
    report.meta.update({
        "model_spec": str(model), "baseline_spec": str(baseline), "model_run": model_run,
        "baseline_run": str(baseline) if Path(baseline).is_dir() else None,
        "files": {"train": str(train), "test": str(test), "valid": str(valid) if valid else None},
    })
    return report
