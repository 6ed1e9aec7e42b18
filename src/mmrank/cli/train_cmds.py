"""`mmrank train` and `mmrank evaluate`: thin wrappers over ``mmrank.train``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import app

console = Console()


def _default_out(config: Path, name: str | None) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or config.stem)
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config (see configs/ for presets)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a config key: --set train.max_epochs=5 (repeatable)"),
    out: Optional[Path] = typer.Option(None, "--out", help="run directory to write (default runs/<name>-<time>)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/logs/checkpoints/last.ckpt"),
    seed: Optional[int] = typer.Option(None, "--seed", help="shorthand for --set train.seed=N"),
    deterministic: bool = typer.Option(False, "--deterministic", help="deterministic torch kernels (bit-for-bit resume on CPU)"),
) -> None:
    """Train a model from a config and write a run directory.

    Example: mmrank train configs/mq2008_cotrr.yaml --set train.max_epochs=5 --out runs/cotrr

    Changing the model kind of a preset works directly: --set model.kind=popularity on a SASRec
    preset drops the SASRec-only model.params with a notice.

    Scale out with: torchrun --standalone --nproc_per_node=2 -m mmrank train CONFIG.yaml --out RUN
    """
    from mmrank.config import load_config

    sets = list(set_ or [])
    if seed is not None:
        sets.append(f"train.seed={seed}")
    if deterministic:
        sets.append("train.deterministic=true")
    notices: list[str] = []
    cfg = load_config(config, sets, notices)
    for note in notices:
        console.print(f"note: {note}", style="yellow", markup=False)
    if resume and out is None:
        from mmrank.errors import ConfigError

        raise ConfigError("--resume needs --out RUN: the run directory to continue")
    if getattr(cfg, "task", "rerank") == "sequential":
        from mmrank.sequential.run import train_sequential

        out = out or _default_out(config, getattr(cfg, "name", None))
        console.print(f"training {cfg.model.kind} → {out}", style="dim")
        metrics = train_sequential(cfg, out, resume)
        _print_sequential(f"{cfg.model.kind} → {out}", metrics)
        return
    if out is None:
        out = _default_out(config, cfg.name)
        _require_out_under_torchrun(out)
    from mmrank.train.rerank_run import train_rerank

    metrics = train_rerank(cfg, out, resume)
    if metrics is None:  # a helper rank under torchrun: rank 0 reports
        return
    splits = [s for s in ("valid", "test") if s in metrics]
    _print_table(f"{cfg.model.kind} → {out} ({cfg.evaluate.convention} metric convention)", cfg.evaluate.metrics,
                 {s: metrics[s] for s in splits})
    if "calibration" in metrics:
        c = metrics["calibration"]
        console.print(f"calibration ({c['method']}, {c['evaluated_on']}): ECE {c['before']['ece']:.4f} → {c['after']['ece']:.4f}")
    if "distill" in metrics:
        d = metrics["distill"]
        console.print(f"linear student: nDCG@10 {d['student_ndcg@10']:.4f} (teacher {d['teacher_ndcg@10']:.4f}), retention "
                      f"{d['retention'] if d['retention'] is None else round(d['retention'], 3)}, "
                      f"{d['student_latency_per_100']['median_ms']:.3f} ms / 100 candidates")


def _require_out_under_torchrun(out: Path) -> None:
    # Under torchrun every rank must write to the same directory; a time-stamped default could differ.
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from mmrank.errors import ConfigError

        raise ConfigError("under torchrun pass --out RUN so every process writes the same run directory")


def _print_table(title: str, names: list[str], columns: dict[str, dict]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    for col in columns:
        table.add_column(col, justify="right")
    for m in names:
        table.add_row(m, *[_fmt(columns[c].get(m)) for c in columns])
    console.print(table)


def _print_sequential(title: str, metrics: dict) -> None:
    """Valid/test columns of a sequential run: every numeric metric both splits report."""
    splits = {s: metrics[s] for s in ("valid", "test") if isinstance(metrics.get(s), dict)}
    names = sorted({k for d in splits.values() for k, v in d.items()
                    if isinstance(v, (int, float)) and k not in ("users", "eval_seconds")})
    _print_table(title, names, splits)
    if metrics.get("protocol"):
        console.print(f"protocol: {metrics['protocol']}", style="dim", markup=False)
    _print_warm_cold(metrics)


def _print_warm_cold(metrics: dict) -> None:
    """The cold-start section: NDCG@10 / HR@10 over warm, cold and all targets per split (when any
    target is cold), and the ID-only fallbacks with the one chosen on validation."""
    wc = metrics.get("warm_cold") or {}
    if not any(wc.get(s, {}).get("users", {}).get("cold") for s in ("valid", "test")):
        return
    cols = {f"{s} {g} (n={wc[s]['users'][g]})": wc[s][g] for s in ("valid", "test") if s in wc
            for g in ("warm", "cold", "overall")}
    _print_table("warm / cold targets (cold: item never seen in training)", ["ndcg@10", "hr@10"], cols)
    fb = metrics.get("cold_start_fallbacks")
    if fb:
        _print_table(f"ID-only fallbacks on cold targets (best on validation: {fb['best_fallback']})", ["ndcg@10", "hr@10"],
                     {f"{k} {s}": v[s]["cold"] for k, v in fb["fallbacks"].items() for s in ("valid", "test")})


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="run directory written by `mmrank train`"),
    data: Optional[Path] = typer.Option(None, "--data", help="ranking file to evaluate on (test split)"),
    format: Optional[str] = typer.Option(None, "--format", help="data format (default: detected)"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="lambdamart | heuristic | another RUN directory"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="metrics to report (repeatable; default nDCG@1/5/10, MAP, MRR)"),
    out: Optional[Path] = typer.Option(None, "--out", help="where metrics.json + per_query.parquet go (default RUN/eval/<data>)"),
    convention: Optional[str] = typer.Option(None, "--convention", help="metric convention: default | letor "
                                             "(the LETOR tool's nDCG; default: the run's own evaluate.convention)"),
    allow_trained_on: bool = typer.Option(False, "--allow-trained-on",
                                          help="evaluate even if the data overlaps what the run trained or validated on "
                                               "(the overlap is printed and recorded in metrics.json)"),
    folds: Optional[int] = typer.Option(None, "--folds", help="k-fold evaluation: retrain RUN's config (a run directory "
                                        "or a config file) on K folds, next to --baseline on the same folds"),
    fold_seed: int = typer.Option(0, "--fold-seed", help="seed of the fold assignment (with --folds)"),
) -> None:
    """Evaluate a trained run on data, next to a baseline, with a paired randomization test.

    Data the run was trained or validated on is refused (exit 2): its metrics would be leaked.

    With --folds K the run's config is cross-validated instead: K trainings on K folds (queries for
    rerankers, users for recommenders), mean ± sd over folds, and against --baseline (trained on the
    same folds) the per-fold differences, a paired t-test over folds and a pooled per-unit CI95;
    written to OUT/crossval.json (default RUN/crossval-K). Finished folds are reused on a rerun.

    Example: mmrank evaluate runs/cotrr --data $MMRANK_DATA_DIR/ltr/MQ2008/S5.txt --baseline lambdamart

    Example: mmrank evaluate configs/mq2008_lambdamart.yaml --folds 5 --baseline heuristic --out runs/cv5

    Example: mmrank evaluate runs/sasrec --folds 5 --baseline popularity
    """
    if folds is not None:
        _evaluate_folds(run, folds, baseline, out, fold_seed, metric)
        return
    from mmrank.models.registry import task_of
    from mmrank.runs import model_kind

    kind = model_kind(run)
    if task_of(kind) == "sequential":
        from mmrank.sequential.run import evaluate_sequential

        with console.status(f"evaluating {kind} (full ranking over all items)"):
            metrics = evaluate_sequential(run, data, allow_trained_on=allow_trained_on)
        _print_sequential(f"{run} ({kind})", metrics)
        return
    if data is None:
        from mmrank.errors import ConfigError

        raise ConfigError("--data: a ranking file to evaluate on is required for rerank runs")
    from mmrank.train.rerank_run import evaluate_rerank

    with console.status("scoring" + (f" and fitting baseline {baseline}" if baseline else "")):
        result = evaluate_rerank(run, data, format, baseline, list(metric) if metric else None, out,
                                 allow_trained_on=allow_trained_on, convention=convention)
    overlap = result.get("trained_on_overlap")
    if isinstance(overlap, dict) and "warning" in overlap:
        console.print(f"warning: {overlap['warning']}", style="bold yellow", markup=False)
    elif isinstance(overlap, str):
        console.print(f"note: training overlap {overlap}", style="yellow", markup=False)
    names = [k for k in result["model"] if k != "run"]
    columns = {kind: result["model"]}
    if "baseline" in result:
        columns[result["baseline"]["name"]] = result["baseline"]
        columns["difference"] = {m: result["comparison"][m]["difference"] for m in names}
        columns["p (randomization)"] = {m: result["comparison"][m]["p_value"] for m in names}
    _print_table(f"{run} on {data} ({result['queries']} queries, {result['metric_convention']} metric convention)", names, columns)
    if "calibration" in result:
        console.print(f"calibrated ECE {result['calibration']['ece']:.4f}, Brier {result['calibration']['brier']:.4f}")
    console.print(f"wrote {result['out']}/metrics.json and per_query.parquet")


def _evaluate_folds(source: Path, k: int, baseline: str | None, out: Path | None, seed: int, metric) -> None:
    """``mmrank evaluate --folds K``: cross-validate and print mean ± sd per system and the comparison."""
    from mmrank.crossval import cross_validate

    out = out or (source if source.is_dir() else Path("runs") / source.stem) / f"crossval-{k}"
    report = cross_validate(source, k, out, baseline=baseline, seed=seed, metrics=list(metric) if metric else None,
                            progress=lambda line: console.print(line, markup=False))
    table = Table(title=f"{source}: {k}-fold evaluation ({report['task']}, fold seed {seed})")
    table.add_column("metric")
    for name in report["systems"]:
        table.add_column(f"{name} mean ± sd")
    if "comparison" in report:
        table.add_column("difference ± sd (folds)")
        table.add_column("p (t over folds)")
        table.add_column("CI95 (pooled units)")
    for m in report["metrics"]:
        row = [m] + [f"{s[m]['mean']:.4f} ± {s[m]['sd']:.4f}" for s in report["systems"].values()]
        if "comparison" in report:
            c = report["comparison"][m]
            row += [f"{c['difference_mean']:+.4f} ± {c['difference_sd']:.4f}", f"{c['p_over_folds']:.3g}",
                    f"[{c['pooled_units_ci95'][0]:+.4f}, {c['pooled_units_ci95'][1]:+.4f}]"]
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {out}/crossval.json", markup=False)
