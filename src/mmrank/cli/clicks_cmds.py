"""`mmrank clicks simulate|fit|labels`: weak relevance labels from click logs (docs/clicks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console

from mmrank.cli.app import app, user_errors
from mmrank.errors import ConfigError, DataError

clicks_app = typer.Typer(help="Weak relevance labels from click logs: simulate, fit click models, write labels.",
                         no_args_is_help=True)
app.add_typer(clicks_app, name="clicks")
# Partial success (some sessions quarantined), as `mmrank rerank` uses it.
EXIT_PARTIAL = 3


def _first_stage(rset, spec: str) -> np.ndarray:
    """Scores named by ``baseline`` or ``MODALITY:J`` (column J, 1-based, of a modality)."""
    if spec == "baseline":
        if rset.baseline_scores is None:
            raise ConfigError("--first-stage baseline: the data has no baseline scores — name a feature, e.g. letor:25")
        return rset.baseline_scores
    name, _, col = spec.partition(":")
    if name not in rset.features or not col.isdigit() or not 1 <= int(col) <= rset.features[name].shape[1]:
        raise ConfigError(f"--first-stage {spec!r}: use 'baseline' or MODALITY:J with J in 1..width "
                          f"(modalities: {rset.modality_dims})")
    return rset.features[name][:, int(col) - 1].astype(np.float64)


@clicks_app.command("simulate")
def simulate(
    data: Path = typer.Option(..., "--data", help="Ranking file with true graded labels (JSONL, Parquet, LibSVM/LETOR)."),
    out: Path = typer.Option(..., "--out", help="Click log to write (.jsonl or .parquet)."),
    first_stage: str = typer.Option("baseline", "--first-stage", help="Logging ranker: 'baseline' or MODALITY:J (column J, 1-based), e.g. letor:25 (BM25)."),
    sessions: int = typer.Option(100_000, "--sessions", help="Number of sessions."),
    positions: int = typer.Option(10, "--positions", help="Shown list length K."),
    eta: float = typer.Option(1.0, "--eta", help="Position bias: examination (1/k)^eta."),
    epsilon: float = typer.Option(0.1, "--epsilon", help="Click probability of an examined irrelevant candidate."),
    noise: float = typer.Option(1.0, "--noise", help="Gumbel noise on the standardised first-stage scores (0: fixed order)."),
    behaviour: str = typer.Option("pbm", "--behaviour", help="pbm (examination by position) or cascade (stop at the first click)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Simulate a click log from real relevance labels with a known position bias (a known answer).

    Example: mmrank clicks simulate --data MQ2008/S1.txt --first-stage letor:25 --sessions 100000 --out clicks.jsonl
    """
    from mmrank.clicks.log import write_click_log
    from mmrank.clicks.simulate import power_law_examination, simulate_sessions
    from mmrank.data.formats import load_ranking

    with user_errors():
        if positions < 1:
            raise ConfigError(f"--positions {positions} must be at least 1")
        rset = load_ranking(data)
        theta = power_law_examination(positions, eta)
        log = simulate_sessions(rset, _first_stage(rset, first_stage), sessions, theta, epsilon=epsilon, noise=noise,
                                seed=seed, behaviour=behaviour)
        write_click_log(log, out)
    summary = log.summary()
    Console(stderr=True).print(f"wrote {summary['sessions']} sessions ({summary['impressions']} impressions, "
                               f"{summary['clicks']} clicks) to {out}; true examination "
                               + ", ".join(f"{v:.3f}" for v in theta), highlight=False)


def _read_log(path: Path, quarantine: Optional[Path]):
    from mmrank.clicks.log import read_click_log

    log, report = read_click_log(path)
    console = Console(stderr=True, soft_wrap=True)
    for problem in report.problems[:20]:
        console.print(problem.format(), highlight=False, markup=False)
    if report.problems:
        target = quarantine or Path(str(path) + ".quarantine.jsonl")
        report.write_quarantine(target)
        console.print(f"{report.records_quarantined} bad sessions quarantined in {target}", style="yellow")
    console.print(f"{report.records_in} sessions in: {report.records_read} read, {report.records_quarantined} quarantined",
                  highlight=False)
    if report.records_read == 0:
        raise DataError("no usable session in the log", path=path, hint="see the problems above")
    return log, report


@clicks_app.command("fit")
def fit(
    log_path: Path = typer.Option(..., "--log", help="Click log (.jsonl: one session a line; .parquet: one row per shown candidate)."),
    out: Path = typer.Option(..., "--out", help="Fitted model to write (JSON)."),
    model: str = typer.Option("pbm", "--model", help="pbm (position-based, EM) or cascade."),
    min_dwell: Optional[float] = typer.Option(None, "--min-dwell", help="Count only clicks with at least this dwell (seconds)."),
    max_position: Optional[int] = typer.Option(None, "--max-position", help="pbm: use only the first K positions."),
    quarantine: Optional[Path] = typer.Option(None, "--quarantine", help="Where bad sessions go (default LOG.quarantine.jsonl)."),
) -> None:
    """Fit a click model to a click log: the position curve (pbm) and a relevance per (query, candidate).

    Exit codes: 0 every session used; 3 some sessions quarantined (the rest were fitted); 2 bad
    input or nothing usable.

    Example: mmrank clicks fit --log clicks.jsonl --model pbm --out pbm.json
    """
    from mmrank.clicks import MODELS

    with user_errors():
        if model not in MODELS:
            raise ConfigError(f"--model {model!r} — use one of {', '.join(MODELS)}")
        log, report = _read_log(log_path, quarantine)
        kwargs = {"min_dwell": min_dwell} | ({"max_position": max_position} if model == "pbm" else {})
        fitted = MODELS[model](**kwargs).fit(log)
        fitted.save(out)
    console = Console(soft_wrap=True)
    if model == "pbm":
        console.print(f"examination by position (relative to position 1): "
                      + ", ".join(f"{v:.3f}" for v in fitted.theta_), highlight=False)
        console.print(f"EM: {fitted.n_iter_} iterations, converged {fitted.converged_}, log-likelihood "
                      f"{fitted.log_likelihood_:.1f}; pairs seen at >= 2 positions: {fitted.position_variety_:.1%}",
                      highlight=False)
        if fitted.position_variety_ < 0.2:
            console.print("warning: most pairs were shown at one position only — position and relevance are hard to "
                          "tell apart (randomise the order a little)", style="yellow")
    console.print(f"{len(fitted.relevance_)} (query, candidate) pairs; wrote {out}", highlight=False)
    if report.problems:
        raise typer.Exit(EXIT_PARTIAL)


@clicks_app.command("labels")
def labels(
    model_path: Path = typer.Option(..., "--model", help="Fitted click model (from `mmrank clicks fit`)."),
    data: Path = typer.Option(..., "--data", help="Ranking file with the candidates' features (its labels are replaced)."),
    out: Path = typer.Option(..., "--out", help="Labelled ranking file to write (.parquet, .jsonl or LibSVM .txt)."),
    grades: int = typer.Option(3, "--grades", help="Number of integer grades 0..G-1 (equal-width bins of the click relevance)."),
    min_impressions: int = typer.Option(1, "--min-impressions", help="A pair needs this many impressions to be labelled."),
    compare: bool = typer.Option(False, "--compare", help="Also print the rank correlation with the data's own labels."),
) -> None:
    """Write graded weak labels from a fitted click model onto ranking data, for `mmrank train`.

    Candidates the log never showed get no label and are dropped (counted in the output).

    Example: mmrank clicks labels --model pbm.json --data MQ2008/S1.txt --out weak_s1.parquet
    """
    from mmrank.clicks import MODELS
    from mmrank.clicks.base import load_click_model
    from mmrank.clicks.labels import relevance_agreement, weak_labels
    from mmrank.data.formats import load_ranking, write_ranking

    with user_errors():
        fitted = load_click_model(model_path, MODELS)
        rset = load_ranking(data)
        weak = weak_labels(rset, fitted, grades=grades, min_impressions=min_impressions)
        agreement = relevance_agreement(rset, fitted, min_impressions) if compare else None
        write_ranking(weak.rset, out)
    s = weak.summary()
    console = Console(soft_wrap=True)
    console.print(f"{s['candidates_labelled']} of {s['candidates_in']} candidates labelled ({s['candidates_dropped']} never "
                  f"shown, dropped), {s['queries_kept']} of {s['queries_in']} queries; grades: "
                  + json.dumps({str(int(g)): int(n) for g, n in zip(*np.unique(weak.rset.labels, return_counts=True))}),
                  highlight=False)
    if agreement is not None:
        console.print(f"vs the data's labels: Kendall tau-b {agreement['kendall_tau_b']:.3f}, Spearman "
                      f"{agreement['spearman']:.3f} over {agreement['pairs']} candidates; mean relevance by label "
                      + json.dumps({k: round(v, 3) for k, v in agreement["mean_relevance_by_label"].items()}),
                      highlight=False)
    console.print(f"wrote {out}", highlight=False)
