"""``audit_recommender(model_run, baseline_run)``: the integrity audit of a sequential recommender.

Reads like the reranking audit: ``audit_recommender("runs/moe", "runs/sasrec").verdict``. The
model is a run directory written by ``mmrank train`` with a ``task: sequential`` config; the
baseline is another such run or a baseline kind (``popularity``, ``most_recent``), fitted here
on the same split. Both are scored again on the data (the run's own data path unless ``data``
names another RecBole folder) by full ranking over all items, seen items masked.

Checks, in order: ``temporal_leakage`` (the run's recorded held-out events against the data's
timestamps), ``modality_ablation`` (each item modality treated as missing), ``expert_usage`` (MoE
router collapse), ``significance`` (model vs baseline, paired over users), ``sampled_metric``
(sampled vs full ranking) and ``sample_size``. The verdict rules are the reranking audit's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from mmrank.audit import expert_usage, item_modality_ablation, sample_size, sampled_metric, significance, temporal_leakage
from mmrank.audit.policy import load_policy
from mmrank.audit.recommender_context import RecommenderAuditContext
from mmrank.audit.run_artifacts import read_run_artifacts
from mmrank.audit.runner import AuditReport, check_names, run_checks
from mmrank.audit.verdict import decide
from mmrank.data.model import Interactions
from mmrank.errors import ConfigError, DataError

CHECKS = {m.NAME: m.check for m in (temporal_leakage, item_modality_ablation, expert_usage, significance,
                                     sampled_metric, sample_size)}
BASELINE_KINDS = ("popularity", "most_recent")


def is_sequential_run(path: str | Path) -> bool:
    """True for a run directory whose config says ``task: sequential``."""
    config = Path(path) / "config.yaml"
    if not config.is_file():
        return False
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and data.get("task") == "sequential"


def _split_fingerprint(run_dir: Path) -> str | None:
    path = run_dir / "fingerprint.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("split", {}).get("combined")


def held_out_events(run_dir: str | Path, events: Interactions) -> tuple[Interactions, Interactions]:
    """(training events, test events) of the split the run recorded in ``predictions.parquet``.

    A held-out (user, item) pair is matched to that user's latest event with the item; every other
    event of the data is a training event. So a run that held out anything but each user's last
    events shows it here, whatever its config claims."""
    import pandas as pd

    path = Path(run_dir) / "predictions.parquet"
    if not path.is_file():
        raise DataError("no predictions.parquet: cannot tell which events the run held out", path=run_dir,
                        hint="audit a run directory written by `mmrank train` (task: sequential)")
    rows = pd.read_parquet(path, columns=["user_id", "stage", "target_item"])
    key = np.char.add(np.char.add(events.user_ids.astype(str), "\t"), events.item_ids.astype(str))
    order = np.lexsort((events.timestamps, key))  # per (user, item): latest event last
    last_of = {k: int(i) for k, i in zip(key[order], order)}
    held = {}
    for stage in ("valid", "test"):
        part = rows[rows.stage == stage]
        pairs = (part.user_id.astype(str) + "\t" + part.target_item.astype(str)).tolist()
        missing = [p for p in pairs if p not in last_of]
        if missing:
            user, item = missing[0].split("\t")
            raise DataError(f"the run held out user {user!r} item {item!r}, which is not in this data", path=path,
                            hint="audit the run on the data it was trained on (--data)")
        held[stage] = np.array([last_of[p] for p in pairs], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(events)), np.concatenate(list(held.values())))
    return events.take(train), events.take(held["test"])


def _load(spec: str | Path, seq, label: str):
    """(ranker, the split in its dense ids) for a run directory or a baseline kind."""
    from mmrank.sequential.run import RANKERS, load_run, split_for

    if Path(spec).is_dir():
        if not is_sequential_run(spec):
            raise ConfigError(f"{label} {spec}: not a sequential run (its config.yaml has no `task: sequential`) — "
                              "audit rerankers with --train/--test files")
        ranker, _ = load_run(spec)
        return ranker, split_for(ranker, seq)
    if str(spec) not in BASELINE_KINDS:
        raise ConfigError(f"{label} {str(spec)!r}: neither a sequential run directory nor a baseline kind — "
                          f"use a directory written by `mmrank train` or one of {BASELINE_KINDS}")
    return RANKERS[str(spec)]().fit(seq.split), seq.split


def audit_recommender(
    model: str | Path,
    baseline: str | Path | None = None,
    *,
    data: str | Path | None = None,
    policy: dict | str | Path | None = None,
    checks: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    """Run the recommendation checks (all by default, or the named ones) and decide the verdict."""
    from mmrank.config import load_config
    from mmrank.sequential.run import load_sequence_data

    pol = load_policy(policy) if not isinstance(policy, dict) or "verdict" not in policy else policy
    names = check_names(CHECKS, checks)
    model_dir = Path(model)
    if not model_dir.is_dir() or not is_sequential_run(model_dir):
        raise ConfigError(f"--model {model}: not a sequential run directory — train one with "
                          "`mmrank train configs/ml100k_sasrec_moe.yaml --out RUN`")
    config = load_config(model_dir / "config.yaml")
    seq = load_sequence_data(data or config.data.path)
    if baseline is not None and Path(baseline).is_dir():
        ours, theirs = _split_fingerprint(model_dir), _split_fingerprint(Path(baseline))
        if ours != theirs:
            raise ConfigError(f"--model and --baseline were trained on different splits (split fingerprints "
                              f"{ours} vs {theirs}): a paired comparison needs the same data and split")
    ranker, split = _load(model_dir, seq, "--model")
    base, base_split = (None, None) if baseline is None else _load(baseline, seq, "--baseline")
    train_events, test_events = held_out_events(model_dir, seq.interactions)
    pol = {**pol, "sampled_metric": {**pol["sampled_metric"], "n_negatives": config.evaluate.sampled_negatives or None}}
    ctx = RecommenderAuditContext(
        model=ranker, baseline=base, split=split, baseline_split=base_split, policy=pol,
        train_interactions=train_events, test_interactions=test_events,
        sampled_negatives=config.evaluate.sampled_negatives,
    )
    results, timings = run_checks(CHECKS, names, ctx, progress)
    verdict = decide(results, pol)
    ctx.extras.update(read_run_artifacts(model_dir))
    meta: dict[str, Any] = {
        "task": "sequential", "model": type(ranker).__name__, "model_run": str(model_dir),
        "baseline": None if base is None else type(base).__name__,
        "baseline_spec": None if baseline is None else str(baseline),
        "data": seq.inter_path, "users": int(len(ctx.model_metrics["users"])), "items": int(split.n_items),
        "train_events": int(len(train_events)), "seconds": timings,
        "unit": "user (one held-out item each, full ranking over all items, seen items masked)",
    }
    return AuditReport(verdict.decision, verdict.reasons, results, pol, ctx.extras, meta)
