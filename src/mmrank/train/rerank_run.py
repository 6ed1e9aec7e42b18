"""The rerank task end to end: config → data → fit → calibrate → (distil) → run directory, and
evaluating a finished run on new data next to a baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mmrank.calibrate import calibration_report, make_calibrator
from mmrank.config import RerankConfig, dump_config
from mmrank.data.formats import load_ranking
from mmrank.data.model import RankingSet, concat_ranking_sets
from mmrank.errors import ConfigError, DataError
from mmrank.metrics import evaluate, evaluate_per_query
from mmrank.models.registry import build_ranker
from mmrank.provenance import refuse_if_trained_on, write_provenance
from mmrank.runs import (
    LOGS,
    load_calibrator,
    load_model,
    load_run_config,
    make_fingerprint,
    write_json,
    write_predictions,
    write_run,
)

BASELINES = ("lambdamart", "heuristic")


def as_list(value: str | list[str] | None) -> list[str]:
    """A config's data entry as a list of paths: ``[]`` for None, ``[value]`` for one path."""
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def load_files(paths: list[str], format: str | None) -> RankingSet:
    """Read every file of one split (``format`` None: guessed per file) and join them into one set.

    Raises:
        DataError: a file is missing, unreadable or invalid, or the files do not join."""
    for p in paths:
        if not Path(p).is_file():
            raise DataError("data file not found", path=p, hint="check data: paths in the config (and $MMRANK_DATA_DIR)")
    return concat_ranking_sets([load_ranking(p, format) for p in paths])


def load_parts(cfg: RerankConfig) -> tuple[dict[str, RankingSet], dict[str, list[str]]]:
    """Read the train/valid/test files the config names; splits it leaves empty are absent.

    Returns:
        ``(sets, files)``: the loaded RankingSet and the list of its paths, by split name.

    Raises:
        DataError: as :func:`load_files`."""
    files = {name: as_list(getattr(cfg.data, name)) for name in ("train", "valid", "test")}
    files = {k: v for k, v in files.items() if v}
    return {k: load_files(v, cfg.data.format) for k, v in files.items()}, files


def is_neural(model) -> bool:
    """True for the neural rerankers (they expose ``network_kwargs`` and train with the
    config's ``train`` settings, logs and resume); False for GBDTs and heuristics."""
    return hasattr(model, "network_kwargs")


def _fit(model, cfg: RerankConfig, train: RankingSet, valid: RankingSet | None, log_dir: Path, resume: bool) -> dict:
    t0 = time.perf_counter()
    if is_neural(model):
        model.fit(train, valid, cfg.train, log_dir=log_dir, resume=resume)
    else:
        if resume:
            raise ConfigError(f"--resume: {cfg.model.kind!r} trains in one call; there is nothing to resume — drop --resume")
        model.fit(train, valid)
    return {"fit_seconds": time.perf_counter() - t0}


def train_rerank(cfg: RerankConfig, out: str | Path, resume: bool = False, console=None) -> dict | None:
    """Train per ``cfg`` into run directory ``out``; returns metrics (None on non-zero DDP ranks,
    which only help training)."""
    out = Path(out)
    model = build_ranker(cfg.model.kind, cfg.model.params)  # parameter errors before any data is read
    parts, files = load_parts(cfg)
    train, valid, test = parts["train"], parts.get("valid"), parts.get("test")
    metrics: dict[str, Any] = {"model": cfg.model.kind}
    metrics.update(_fit(model, cfg, train, valid, out / LOGS, resume))

    from mmrank.train.fit import is_main_process

    if not is_main_process():
        return None
    if is_neural(model):
        metrics["n_parameters"] = model.n_parameters()
        metrics["history"] = model.history_
        metrics["best_epoch"] = getattr(model, "best_epoch_", None)
    names = cfg.evaluate.metrics
    metrics["metric_convention"] = cfg.evaluate.convention
    scored = {name: (rset, model.score(rset)) for name, rset in parts.items()}
    for name, (rset, scores) in scored.items():
        metrics[name] = evaluate(rset, scores, names, convention=cfg.evaluate.convention)

    calibrator_json, probs = None, {name: None for name in parts}
    if cfg.calibration.method != "none":
        if valid is None:
            raise ConfigError("calibration.method: calibration is fitted on validation data — add data.valid or set method: none")
        cal = make_calibrator(cfg.calibration.method, cfg.calibration.relevance_threshold).fit(scored["valid"][1], valid.labels)
        raw = make_calibrator("none", cfg.calibration.relevance_threshold)
        held = "test" if test is not None else "valid"
        metrics["calibration"] = {
            "method": cal.method, "evaluated_on": held,
            "before": calibration_report(raw.transform(scored[held][1]), parts[held].labels, cal.relevance_threshold),
            "after": calibration_report(cal.transform(scored[held][1]), parts[held].labels, cal.relevance_threshold),
        }
        calibrator_json = cal.to_json()
        probs = {name: cal.transform(s) for name, (_, s) in scored.items()}

    if cfg.distill.enabled:
        metrics["distill"] = distil_report(model, train, test if test is not None else valid, cfg.distill.alpha)

    fingerprint = make_fingerprint(parts, files, cfg.train.seed)
    write_run(out, config_yaml=dump_config(cfg), model=model, metrics=metrics, fingerprint=fingerprint, calibrator_json=calibrator_json)
    write_predictions(out, {name: (rset, s, probs[name]) for name, (rset, s) in scored.items()})
    # Hashes of every split the run saw: `mmrank evaluate` and `mmrank audit` refuse test data it trained on.
    write_provenance(out, parts)
    return metrics


def distil_report(teacher, train: RankingSet, held: RankingSet, alpha: float) -> dict:
    """Linear student vs teacher vs the data's baseline column (or, lacking one, the expected
    nDCG@10 of a random order estimated with 20 shuffles) on held-out data."""
    from mmrank.models.distill import distill, latency_per_100, retention

    student = distill(teacher, train, alpha)
    ndcg = lambda s: evaluate(held, s, ["ndcg@10"])["ndcg@10"]  # noqa: E731
    if held.baseline_scores is not None:
        base, base_name = ndcg(held.baseline_scores), "baseline_scores"
    else:
        rng = np.random.default_rng(0)
        base, base_name = float(np.mean([ndcg(rng.random(held.n_candidates)) for _ in range(20)])), "random order"
    teacher_ndcg, student_ndcg = ndcg(teacher.score(held)), ndcg(student.score(held))
    return {
        "baseline": base_name, "baseline_ndcg@10": base, "teacher_ndcg@10": teacher_ndcg, "student_ndcg@10": student_ndcg,
        "retention": retention(student_ndcg, teacher_ndcg, base),
        "student_latency_per_100": latency_per_100(student, held),
        "teacher_latency_per_100": latency_per_100(teacher, held, repeats=10),
        "student_coef": student.coef_.tolist(),
    }


def baseline_scores(baseline: str, run_dir: Path, data: RankingSet) -> tuple[str, np.ndarray]:
    """Scores of the comparison system: a baseline trained on the run's own training data, or
    another run directory."""
    if baseline in BASELINES:
        cfg = load_run_config(run_dir)
        from mmrank.config import config_from_dict

        rcfg = config_from_dict(cfg, str(run_dir / "config.yaml"))
        params = {"seed": rcfg.train.seed} if baseline == "lambdamart" else {}
        model = build_ranker(baseline, params)
        if baseline == "lambdamart":
            parts, _ = load_parts(rcfg)
            model.fit(parts["train"], parts.get("valid"))
        return baseline, model.score(data)
    other = Path(baseline)
    if not other.is_dir():
        raise ConfigError(f"--baseline {baseline!r}: use one of {list(BASELINES)} or a run directory")
    return other.name, load_model(other).score(data)


def evaluate_rerank(run_dir: str | Path, data_path: str | Path, format: str | None = None, baseline: str | None = None,
                    metrics: list[str] | None = None, out: str | Path | None = None,
                    allow_trained_on: bool = False, convention: str | None = None) -> dict:
    """Score ``data_path`` with the run's model (and a baseline); write metrics.json and
    per_query.parquet under ``out`` (default ``RUN/eval/<data file stem>``).

    Data the run was trained or validated on (its recorded provenance) is refused with a
    ``DataError`` unless ``allow_trained_on``; then the overlap is recorded as
    ``trained_on_overlap`` in metrics.json. A run without provenance records
    ``"trained_on_overlap": "unknown"``."""
    from mmrank.stats import paired_bootstrap_ci, randomization_test

    run_dir = Path(run_dir)
    data = load_ranking(data_path, format)
    overlap = refuse_if_trained_on(run_dir, data, allow=allow_trained_on, path=str(data_path))
    model = load_model(run_dir)
    names = metrics or ["ndcg@1", "ndcg@5", "ndcg@10", "map", "mrr"]
    scores = model.score(data)
    if convention is None:  # the convention the run was trained and reported with
        convention = load_run_config(run_dir).get("evaluate", {}).get("convention", "default")
    per_query = evaluate_per_query(data, scores, names, convention=convention)
    result: dict[str, Any] = {"data": str(data_path), "queries": data.n_queries, "metric_convention": convention,
                              "model": {"run": str(run_dir), **evaluate(data, scores, names, convention=convention)}}
    if overlap is None:
        result["trained_on_overlap"] = "unknown: the run recorded no provenance (trained before mmrank recorded it)"
    else:
        result["trained_on_overlap"] = overlap.to_dict()
        if overlap.trained_on:
            result["trained_on_overlap"]["warning"] = "ALLOWED by --allow-trained-on: " + overlap.summary()
    cal = load_calibrator(run_dir)
    if cal is not None:
        result["calibration"] = calibration_report(cal.transform(scores), data.labels, cal.relevance_threshold)
    if baseline:
        bname, bscores = baseline_scores(baseline, run_dir, data)
        base_pq = evaluate_per_query(data, bscores, names, convention=convention)
        result["baseline"] = {"name": bname, **evaluate(data, bscores, names, convention=convention)}
        result["comparison"] = {}
        for m in names:
            a, b = per_query[m].to_numpy(), base_pq[m].to_numpy()
            keep = ~(np.isnan(a) | np.isnan(b))
            test = randomization_test(a[keep], b[keep])
            ci = paired_bootstrap_ci(a[keep], b[keep])
            result["comparison"][m] = {"difference": float(np.mean(a[keep] - b[keep])), "p_value": test.pvalue, "ci": [ci.low, ci.high]}
        for m in names:
            per_query[f"baseline_{m}"] = base_pq[m]
    out = Path(out) if out else run_dir / "eval" / Path(data_path).stem
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", result)
    per_query.to_parquet(out / "per_query.parquet", index=False)
    result["out"] = str(out)
    return result

