"""k-fold evaluation of a config — reranker or sequential recommender — with a paired comparison
against a baseline across the same folds (``mmrank evaluate RUN --folds K``).

Folds:

* **rerank**: every query of the config's train + valid + test files is pooled and the distinct
  query ids are dealt into ``k`` folds by a seeded permutation. Fold ``f`` tests on fold ``f``,
  validates (early stopping, calibration) on fold ``f+1 mod k`` and trains on the rest; its files
  are written once as Parquet under ``OUT/data/fold<f>/`` and the fold trains from a copy of the
  config that points at them.
* **sequential**: user folds (``mmrank.sequential.folds``, config key ``data.folds``): fold ``f``
  evaluates its users' leave-one-out targets and trains on everything else.

Every unit (query or user) is tested exactly once over the ``k`` folds, by a model that never saw
it. The report gives, per metric, the mean ± sd over folds of each system and, against the baseline
(trained on the very same folds), the per-fold differences with their mean ± sd and a paired t-test
over folds (``scipy.stats.ttest_rel``: folds are the replicates), plus the paired bootstrap CI95 of
the difference pooled over all units. Fold runs are ordinary run directories
(``OUT/<system>/fold<f>``); a fold whose run already finished is read, not retrained, so an
interrupted cross-validation continues where it stopped.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mmrank.atomic_io import atomic_write_text
from mmrank.errors import ConfigError, DataError

SEQUENTIAL_BASELINES = ("popularity", "most_recent")
RERANK_BASELINES = ("lambdamart", "heuristic")
SEQUENTIAL_METRICS = ("ndcg@10", "hr@10", "mrr@10")


def load_source_config(source: str | Path) -> dict:
    """The config dict of a run directory (its resolved ``config.yaml``) or of a YAML config file."""
    from mmrank.config import load_yaml_with_overrides

    path = Path(source)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{source}: neither a run directory with config.yaml nor a config file")
    return load_yaml_with_overrides(path, None)


def baseline_config(cfg: dict, baseline: str) -> dict:
    """The comparison system's config: a built-in baseline kind trained on the same data and folds
    (``popularity`` / ``most_recent`` for sequential configs, ``lambdamart`` / ``heuristic`` for
    rerank ones), or another run directory / config file of the same task."""
    task = cfg.get("task", "rerank")
    builtins = SEQUENTIAL_BASELINES if task == "sequential" else RERANK_BASELINES
    if baseline in builtins:
        out = copy.deepcopy(cfg)
        out["model"] = {"kind": baseline, "params": {}}
        if task == "sequential":
            out["data"].pop("item_features", None)
        return out
    other = load_source_config(baseline)
    if other.get("task", "rerank") != task:
        raise ConfigError(f"--baseline {baseline}: a {other.get('task', 'rerank')} config cannot be compared "
                          f"with a {task} one — use one of {list(builtins)} or a {task} run")
    return other


# -- folds ------------------------------------------------------------------------------------------
def rerank_fold_files(cfg: dict, k: int, seed: int, data_dir: Path) -> list[dict[str, str]]:
    """Write the ``k`` rerank folds as Parquet (once; reused when present) and return, per fold,
    the train/valid/test file paths."""
    from mmrank.config import config_from_dict
    from mmrank.data.io_parquet import write_parquet
    from mmrank.data.model import concat_ranking_sets
    from mmrank.data.splits import RankingSplit
    from mmrank.train.rerank_run import load_parts

    folds = [{p: str(data_dir / f"fold{f}" / f"{p}.parquet") for p in ("train", "valid", "test")} for f in range(k)]
    if all(Path(v).is_file() for fold in folds for v in fold.values()):
        return folds
    parts, _ = load_parts(config_from_dict(cfg))
    pooled = concat_ranking_sets(list(parts.values()))
    ids = np.array(list(dict.fromkeys(str(q) for q in pooled.query_ids)), dtype=object)
    if len(ids) < k:
        raise DataError(f"{len(ids)} queries cannot make {k} folds", hint="use fewer folds")
    fold_of = np.empty(len(ids), dtype=np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(ids))] = np.arange(len(ids)) % k
    for f, files in enumerate(folds):
        labels = np.where(fold_of == f, 2, np.where(fold_of == (f + 1) % k, 1, 0))
        split = RankingSplit.from_labels(ids, labels, "query_folds", {"k": k, "fold": f, "seed": seed})
        for name, rset in zip(("train", "valid", "test"), split.apply(pooled)):
            Path(files[name]).parent.mkdir(parents=True, exist_ok=True)
            write_parquet(rset, files[name])
    return folds


def fold_config(cfg: dict, k: int, fold: int, seed: int, files: list[dict[str, str]] | None) -> dict:
    """The config of one fold: ``data.folds`` for sequential configs, the fold's files for rerank."""
    out = copy.deepcopy(cfg)
    if out.get("task", "rerank") == "sequential":
        out["data"].pop("cold_start", None)
        out["data"]["folds"] = {"k": k, "fold": fold, "seed": seed}
    else:
        out["data"].update(files[fold])
        out["data"]["format"] = "parquet"
    return out


# -- training and per-unit metrics --------------------------------------------------------------------
def _train(cfg: dict, run_dir: Path) -> None:
    from mmrank.config import config_from_dict

    parsed = config_from_dict(cfg, str(run_dir / "config.yaml"))
    if cfg.get("task", "rerank") == "sequential":
        from mmrank.sequential.run import train_sequential

        train_sequential(parsed, run_dir)
    else:
        from mmrank.train.rerank_run import train_rerank

        train_rerank(parsed, run_dir)


def unit_metrics(cfg: dict, run_dir: Path, metrics: list[str]) -> pd.DataFrame:
    """Per tested unit (user or query id, the index) the fold's test metrics."""
    if cfg.get("task", "rerank") == "sequential":
        df = pd.read_parquet(run_dir / "predictions.parquet")
        return df[df.stage == "test"].set_index("user_id")[metrics]
    from mmrank.data.formats import load_ranking
    from mmrank.metrics import evaluate_per_query
    from mmrank.runs import load_model

    test = load_ranking(cfg["data"]["test"], "parquet")
    per_query = evaluate_per_query(test, load_model(run_dir).score(test), metrics,
                                   convention=cfg.get("evaluate", {}).get("convention", "default"))
    per_query.index = [str(q) for q in test.query_ids]
    return per_query[metrics]


# -- summary --------------------------------------------------------------------------------------------
def summarise(per_fold: dict[str, list[pd.DataFrame]], metrics: list[str]) -> dict:
    """Mean ± sd over folds per system and metric; against ``baseline`` (when present) the per-fold
    differences, their mean ± sd, the paired t-test over folds and the pooled per-unit bootstrap CI."""
    from mmrank.stats import paired_bootstrap_ci, paired_t_test, seed_variance

    out: dict = {"systems": {}}
    for name, folds in per_fold.items():
        out["systems"][name] = {m: {**seed_variance([np.nanmean(f[m]) for f in folds]),
                                    "units": int(sum(len(f) for f in folds))} for m in metrics}
    if "baseline" not in per_fold:
        return out
    out["comparison"] = {}
    for m in metrics:
        a_folds, b_folds = [], []
        a_units, b_units = [], []
        for a, b in zip(per_fold["model"], per_fold["baseline"]):
            both = a.index.intersection(b.index)
            if len(both) != len(a) or len(both) != len(b):
                raise DataError(f"a fold tested {len(a)} units with the model and {len(b)} with the baseline",
                                hint="both systems must be cross-validated on the same data")
            x, y = a.loc[both, m].to_numpy(float), b.loc[both, m].to_numpy(float)
            defined = ~(np.isnan(x) | np.isnan(y))  # e.g. a query without relevant documents
            a_folds.append(float(x[defined].mean()))
            b_folds.append(float(y[defined].mean()))
            a_units.append(x[defined])
            b_units.append(y[defined])
        diffs = np.array(a_folds) - np.array(b_folds)
        test = paired_t_test(a_folds, b_folds)
        ci = paired_bootstrap_ci(np.concatenate(a_units), np.concatenate(b_units), n_resamples=10_000, seed=0)
        out["comparison"][m] = {"per_fold_difference": diffs.tolist(), **{f"difference_{k}": v for k, v in
                                seed_variance(diffs).items() if k in ("mean", "sd")},
                                "t_over_folds": test.statistic, "p_over_folds": test.pvalue,
                                "pooled_units_ci95": [ci.low, ci.high], "pooled_units": ci.n}
    return out


def cross_validate(source: str | Path, k: int, out: str | Path, baseline: str | None = None, seed: int = 0,
                   metrics: list[str] | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Cross-validate the config of ``source`` (a run directory or config file) over ``k`` folds,
    next to ``baseline`` on the same folds; writes ``OUT/crossval.json`` and returns it.

    Args:
        source: a run directory (its ``config.yaml``) or a config file.
        k: number of folds (>= 2).
        out: output folder: fold data (rerank), one run directory per system and fold, the report.
        baseline: a built-in baseline kind or another run directory / config file (same task).
        seed: the fold assignment's seed (the models keep their own training seeds).
        metrics: metrics to report (default: NDCG@10, HR@10, MRR@10 for sequential configs; the
            config's ``evaluate.metrics`` for rerank ones).
        progress: called with one line per fold and system.
    """
    if k < 2:
        raise ConfigError(f"--folds {k}: k-fold evaluation needs at least 2 folds")
    out = Path(out)
    cfg = load_source_config(source)
    systems = {"model": cfg}
    if baseline:
        systems["baseline"] = baseline_config(cfg, baseline)
    task = cfg.get("task", "rerank")
    if metrics is None:
        metrics = list(SEQUENTIAL_METRICS) if task == "sequential" else list(
            cfg.get("evaluate", {}).get("metrics") or ["ndcg@10"])
    files = None if task == "sequential" else rerank_fold_files(cfg, k, seed, out / "data")
    per_fold: dict[str, list[pd.DataFrame]] = {name: [] for name in systems}
    for fold in range(k):
        for name, system in systems.items():
            fcfg = fold_config(system, k, fold, seed, files)
            run_dir = out / name / f"fold{fold}"
            if not (run_dir / "model.json").exists():
                if progress:
                    progress(f"fold {fold + 1}/{k}: training {name} ({system['model']['kind']})")
                _train(fcfg, run_dir)
            per_fold[name].append(unit_metrics(fcfg, run_dir, metrics))
    report = {"source": str(source), "task": task, "k": k, "seed": seed, "metrics": metrics,
              "baseline": baseline, "folds": {name: [str(out / name / f"fold{f}") for f in range(k)] for name in systems},
              **summarise(per_fold, metrics)}
    atomic_write_text(out / "crossval.json", json.dumps(report, indent=1))
    return report


__all__ = ["baseline_config", "cross_validate", "fold_config", "rerank_fold_files", "summarise", "unit_metrics"]
