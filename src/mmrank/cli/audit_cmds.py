"""`mmrank audit` and `mmrank report`: thin wrappers over ``mmrank.audit`` and ``mmrank.report``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmrank.cli.app import app

console = Console()
_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "SKIP": "dim",
          "GO": "bold white on green", "PAUSE_AND_FIX": "bold black on yellow", "NO_GO": "bold white on red"}


def print_audit(report: dict) -> None:
    """Print an audit to the terminal: a table of every check (status, value, threshold, rule)
    under the systems line, then the verdict and each reason.

    Args:
        report: an ``AuditReport.to_dict()`` / ``audit.json`` mapping (``checks``, ``verdict``,
            ``reasons``; ``meta`` optional)."""
    from mmrank.audit.result import display_value, systems_line

    table = Table(title="mmrank audit: " + systems_line(report.get("meta", {})), show_lines=False)
    for col in ("check", "status", "value", "threshold", "rule"):
        table.add_column(col, no_wrap=col != "rule", overflow="fold")
    for c in report["checks"]:
        fmt = lambda x: "—" if x is None else (f"{x:.4g}" if isinstance(x, float) else str(x))  # noqa: E731
        table.add_row(c["name"], f"[{_STYLE[c['status']]}]{c['status']}[/]", display_value(c),
                      fmt(c.get("threshold")), c.get("rule") or "")
    console.print(table)
    console.print(f"verdict: [{_STYLE[report['verdict']]}] {report['verdict']} [/]")
    for r in report["reasons"]:
        console.print(f"  • {r}", markup=False, highlight=False)


@app.command("audit")
def audit_cmd(
    model: str = typer.Option(..., "--model", help="model kind to train (cotrr|fusion|lambdamart|...) or a run directory (a sequential run: a recommendation audit)"),
    baseline: str = typer.Option(..., "--baseline", help="baseline kind (lambdamart|heuristic; popularity|most_recent for recommenders) or a run directory"),
    out: Path = typer.Option(..., "--out", help="folder to write audit.json and report.html into"),
    train: Optional[Path] = typer.Option(None, "--train", help="training ranking file (LETOR/LibSVM, JSONL, Parquet); rerankers"),
    test: Optional[Path] = typer.Option(None, "--test", help="test ranking file the model is judged on; rerankers"),
    data: Optional[Path] = typer.Option(None, "--data", help="RecBole folder a sequential run is judged on (default: the run's own data path)"),
    valid: Optional[Path] = typer.Option(None, "--valid", help="validation file (early stopping)"),
    format: Optional[str] = typer.Option(None, "--format", help="input format when the extension does not say"),
    config: Optional[Path] = typer.Option(None, "--config", help="training YAML: its model.params (and train settings) build --model"),
    policy: Optional[Path] = typer.Option(None, "--policy", help="YAML overriding audit thresholds (see docs/audit.md)"),
    convention: Optional[str] = typer.Option(None, "--convention", help="metric convention: default | letor (overrides the policy's)"),
    engine: str = typer.Option("joblib", "--engine", help="where retraining jobs run: joblib or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: a local Ray)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="parallel retraining jobs (default: policy engine.n_jobs)"),
    interactions: Optional[Path] = typer.Option(None, "--interactions", help="rerankers on a time-split task: the ratings it was built from (RecBole folder/.inter, MovieLens) — enables temporal_leakage"),
    task: Optional[Path] = typer.Option(None, "--task", help="the task's task.json (each query's cut time; default: task.json beside --test)"),
) -> None:
    """Audit a model against a baseline: leakage, controls, ablations, significance → verdict.

    Writes OUT/audit.json and OUT/report.html, prints every check's value beside its threshold.
    Exit code: 0 GO, 3 PAUSE_AND_FIX, 4 NO_GO, 2 bad input.

    Rerankers: --train/--test ranking files. Sequential recommenders: --model is a run directory
    (`task: sequential`) and --baseline another run or popularity|most_recent; both are scored again
    by full ranking on the run's data (temporal leakage, modality ablation, expert usage,
    significance over users, sampled vs full metrics, sample size).

    Time-split reranking tasks (a task.json with each query's cut time beside --test, as `mmrank data
    features` writes): with --interactions the queries become training and test events and
    temporal_leakage runs; split_sensitivity compares the split with a temporal re-split. Both are
    then required for GO.

    Example: mmrank audit --train S1.txt --valid S4.txt --test S5.txt --model lambdamart --baseline lambdamart --out audit/

    Example: mmrank audit --train out/rerank/train.parquet --valid out/rerank/valid.parquet --test out/rerank/test.parquet --interactions ../shared/data/ml-100k --model lambdamart --baseline heuristic --out audit_ml/

    Example: mmrank audit --model runs/ml100k_moe --baseline runs/ml100k_sasrec --out audit_moe/
    """
    from mmrank.audit.files import audit_files
    from mmrank.audit.policy import load_policy
    from mmrank.audit.recommender_runner import is_sequential_run
    from mmrank.errors import ConfigError

    pol = load_policy(policy)
    if convention is not None:
        from mmrank.metrics import CONVENTIONS

        if convention not in CONVENTIONS:
            raise ConfigError(f"--convention {convention!r} — use one of {', '.join(CONVENTIONS)}")
        pol["convention"] = convention
    if is_sequential_run(model):
        _finish(out, _audit_recommender(model, baseline, data, pol))
    if train is None or test is None:
        raise ConfigError("--train and --test are required to audit a reranker — or pass a sequential run "
                          "directory as --model for a recommendation audit")
    from mmrank.audit import CHECKS

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("reading data", total=len(CHECKS))
        report = audit_files(model, baseline, train=train, test=test, valid=valid, format=format, config=config,
                             policy=pol, engine=engine, n_jobs=jobs, address=address,
                             interactions=interactions, task=task,
                             step=lambda text: progress.update(task, description=text),
                             progress=lambda name: progress.update(task, advance=1, description=f"check {name}"))
    _finish(out, report)


def _audit_recommender(model: str, baseline: str, data: Optional[Path], policy: dict):
    from mmrank.audit.recommender_runner import CHECKS, audit_recommender

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        step = progress.add_task("reading data and runs", total=len(CHECKS))
        return audit_recommender(model, baseline, data=data, policy=policy,
                                 progress=lambda name: progress.update(step, advance=1, description=f"check {name}"))


def _finish(out: Path, report) -> None:
    """Write audit.json and report.html, print the table, exit with the verdict's code."""
    from mmrank.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    report.save(out / "audit.json")
    html = write_report(out, report.to_dict())
    print_audit(report.to_dict())
    console.print(f"wrote {out / 'audit.json'} and {html}")
    raise typer.Exit(report.exit_code)


@app.command("report")
def report_cmd(
    directory: Path = typer.Argument(..., help="folder holding audit.json (from `mmrank audit --out`)"),
) -> None:
    """Rebuild the self-contained HTML report from an audit's audit.json.

    Example: mmrank report audit/
    """
    import json

    from mmrank.report import write_report

    path = write_report(directory)
    print_audit(json.loads((directory / "audit.json").read_text(encoding="utf-8")))
    console.print(f"wrote {path}")
