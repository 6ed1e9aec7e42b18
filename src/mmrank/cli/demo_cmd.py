"""`mmrank demo`: the whole pipeline on the embedded default data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import app


@app.command("demo")
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Folder for the run directories, the audit and the report."),
    seed: int = typer.Option(0, help="Seed for the split and the models."),
    audit: bool = typer.Option(True, "--audit/--no-audit", help="Audit CoTRR against LambdaMART and write the HTML report."),
) -> None:
    """Run the pipeline on the embedded data (LightGBM's lambdarank example, MIT).

    load → validate → split → train LambdaMART and CoTRR → evaluate → audit → HTML report.

    Example: mmrank demo --out runs/demo
    """
    from mmrank.demo import DEMO_METRICS, run_demo

    console = Console()
    with console.status("starting") as status:
        result = run_demo(out, seed=seed, progress=lambda msg: status.update(msg), with_audit=audit)
    d = result.data
    for rep in d.reports:
        console.print(
            f"read {rep.path}: {rep.records_in} records in, {rep.records_read} read, {rep.records_quarantined} quarantined",
            highlight=False,
        )
    console.print(
        f"split (query-grouped, seed {seed}): train {d.train.n_queries} queries / {d.train.n_candidates} candidates, "
        f"valid {d.valid.n_queries} / {d.valid.n_candidates}, test {d.test.n_queries} / {d.test.n_candidates}"
    )
    table = Table(title=f"Test metrics ({d.test.n_queries} queries)")
    table.add_column("model")
    for m in DEMO_METRICS:
        table.add_column(m, justify="right")
    table.add_column("fit s", justify="right")
    for name, metrics in result.metrics.items():
        table.add_row(name, *(f"{metrics[m]:.4f}" for m in DEMO_METRICS), f"{result.seconds[name]:.1f}")
    console.print(table)
    for name, run_dir in result.run_dirs.items():
        console.print(f"{name} run directory: {run_dir}", highlight=False)
    if result.audit is not None:
        from mmrank.cli.audit_cmds import print_audit

        print_audit(result.audit.to_dict())
        console.print(f"audit report: {result.report_path}", highlight=False)
