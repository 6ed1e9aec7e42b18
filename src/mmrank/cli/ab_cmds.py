"""`mmrank ab analyze|simulate`: is a rollout winning? (docs/ab_testing.md)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import app, user_errors
from mmrank.errors import DataError

ab_app = typer.Typer(help="A/B analysis of rollout and shadow logs written by `mmrank serve --ab-log`.", no_args_is_help=True)
app.add_typer(ab_app, name="ab")
# 0: analysed, verdict printed; 3: analysed but some log lines were quarantined; 2: bad input.
EXIT_PARTIAL = 3


@ab_app.command("analyze")
def analyze(
    log_path: Path = typer.Option(..., "--log", help="A/B log (JSONL of assignment and outcome events)."),
    share: Optional[float] = typer.Option(None, "--expected-share", help="Treatment share the rollout was set to, 0..1 (default: the log's rollout_percent / 100)."),
    primary: str = typer.Option("clicked", "--metric", help="Primary metric: clicked, clicks, reciprocal_rank or value."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the CIs and tests."),
    srm_alpha: float = typer.Option(0.001, "--srm-alpha", help="p-value below which the arm counts are a sample-ratio mismatch."),
    mde: Optional[float] = typer.Option(0.05, "--mde", help="Smallest relative lift worth detecting; sets the planned size per arm (0: no plan)."),
    max_latency_increase_ms: float = typer.Option(10.0, "--max-latency-increase-ms", help="Guardrail: p95 latency increase of treatment over control."),
    max_fallback_rate: float = typer.Option(0.01, "--max-fallback-rate", help="Guardrail: share of treatment queries falling back on a model fault."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the full report as JSON."),
) -> None:
    """Sample-ratio check, per-arm metrics with CIs, guardrails and the verdict:
    invalid | rollback | ship | stop_no_effect | continue | shadow.

    Example: mmrank ab analyze --log ab.jsonl --expected-share 0.1 --json ab_report.json
    """
    from mmrank.ab.analysis import Rules, analyse
    from mmrank.ab.events import read_ab_log
    from mmrank.atomic_io import atomic_write_text

    with user_errors():
        log, report = read_ab_log(log_path)
        console = Console(stderr=True, soft_wrap=True)
        for problem in report.problems[:20]:
            console.print(problem.format(), highlight=False, markup=False)
        if report.problems:
            target = report.write_quarantine(Path(str(log_path) + ".quarantine.jsonl"))
            console.print(f"{report.records_quarantined} bad lines quarantined in {target}", style="yellow")
        if share is None:
            rollouts = log.assignments.get("rollout_percent")
            if rollouts is None or rollouts.nunique() != 1:
                raise DataError("the log does not state one rollout share", path=log_path, hint="pass --expected-share")
            share = float(rollouts.iloc[0]) / 100.0
        result = analyse(log, Rules(share, primary, alpha, srm_alpha, mde or None, 0.8, max_latency_increase_ms, max_fallback_rate))
        if json_out is not None:
            atomic_write_text(json_out, json.dumps(result.to_dict(), indent=1, default=float) + "\n")
    _print(result)
    if report.problems:
        raise typer.Exit(EXIT_PARTIAL)


def _print(result) -> None:
    console = Console(soft_wrap=True)
    s = result.srm
    console.print(f"{result.assignments} assignments (control {s['control']}, treatment {s['treatment']}), "
                  f"{result.outcomes} outcomes ({result.orphan_outcomes} without an assignment)", highlight=False)
    console.print(f"sample ratio: treatment share {s['observed_treatment_share']:.4f} vs expected "
                  f"{s['expected_treatment_share']:.4f}, chi-square p = {s['pvalue']:.3g}"
                  + (" — MISMATCH" if s["flagged"] else " — ok"), highlight=False)
    if result.metrics:
        table = Table(title="per-arm metrics (treatment − control, Welch CI)")
        for col in ("metric", "control", "treatment", "difference", "CI", "lift", "p"):
            table.add_column(col)
        for m in result.metrics:
            table.add_row(m.metric, f"{m.control['mean']:.4f}", f"{m.treatment['mean']:.4f}", f"{m.difference:+.4f}",
                          f"[{m.ci[0]:+.4f}, {m.ci[1]:+.4f}]", "" if m.relative_lift is None else f"{m.relative_lift:+.1%}",
                          f"{m.pvalue:.3g}")
        console.print(table)
    for name, g in result.guardrails.items():
        if name == "latency":
            q = g["percentiles_ms"]
            console.print(f"guardrail latency: p95 control {q['control']['p95']:.2f} ms, treatment {q['treatment']['p95']:.2f} ms, "
                          f"increase {g['p95_increase_ms']:+.2f} [{g['ci'][0]:+.2f}, {g['ci'][1]:+.2f}] vs limit {g['limit_ms']:g} ms"
                          + (" — BREACHED" if g["breached"] else " — at risk" if g["at_risk"] else " — ok"), highlight=False)
        else:
            console.print(f"guardrail fallback: {g['faults']} of {g['treatment']} treatment queries ({g['rate']:.2%}, CI "
                          f"[{g['ci'][0]:.2%}, {g['ci'][1]:.2%}]) vs limit {g['limit']:.2%}"
                          + (" — BREACHED" if g["breached"] else " — at risk" if g["at_risk"] else " — ok"), highlight=False)
    if result.planned_per_arm is not None:
        console.print(f"planned size: {result.planned_per_arm} per arm", highlight=False)
    if result.shadow is not None:
        console.print("shadow: " + json.dumps(result.shadow, default=float), highlight=False)
    console.print(f"verdict: {result.verdict.upper()} — {result.reason}", style="bold", highlight=False)


@ab_app.command("simulate")
def simulate(
    out: Path = typer.Option(..., "--out", help="A/B log to write (JSONL)."),
    n: int = typer.Option(20_000, "--n", help="Assignments."),
    share: float = typer.Option(0.5, "--expected-share", help="Rollout share the server was set to."),
    observed_share: Optional[float] = typer.Option(None, "--observed-share", help="Share actually assigned (plants a sample-ratio mismatch)."),
    ctr_control: float = typer.Option(0.10, "--ctr-control", help="Click-through rate of control."),
    ctr_treatment: float = typer.Option(0.10, "--ctr-treatment", help="Click-through rate of treatment (plants a lift)."),
    fault_rate: float = typer.Option(0.0, "--fault-rate", help="Treatment share falling back on a model fault."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Write a simulated A/B log with planted effects (to try the analysis, or test a pipeline).

    Example: mmrank ab simulate --out sim.jsonl --ctr-treatment 0.12 && mmrank ab analyze --log sim.jsonl
    """
    from mmrank.ab.simulate import simulate_ab_log
    from mmrank.atomic_io import atomic_write_text

    with user_errors():
        events = simulate_ab_log(n, expected_share=share, observed_share=observed_share, ctr=(ctr_control, ctr_treatment),
                                 fault_rate=fault_rate, seed=seed)
        atomic_write_text(out, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
    Console(stderr=True).print(f"wrote {len(events)} events to {out}", highlight=False)
