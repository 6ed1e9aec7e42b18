"""``audit_recommender(model_run, baseline_run)``: the integrity audit of a sequential recommender.

Reads like the reranking audit: ``audit_recommender("runs/moe", "runs/sasrec").verdict``. The
model is a run directory written by ``mmrank train`` with a ``task: sequential`` config; the
baseline is another such run or a baseline kind (``popularity``, ``most_recent``), fitted here
on the same split. Both are scored again on the data (the run's own data path unless ``data``
names another RecBole folder) by full ranking over all items, seen items masked.

Checks, in order: ``held_out_leakage`` (a held-out (user, item) among that user's training
events), ``temporal_leakage`` (training events after the user's test event) — both on the events
the run *recorded* in its provenance, never "everything but the held-out rows" (a run without
provenance: both SKIP, and the required-checks rule makes that PAUSE_AND_FIX); on data without
timestamps ``temporal_leakage`` SKIPs, saying so and which split the run used (row numbers or
sequence positions are not times) — ``modality_ablation`` (each item modality treated as missing), ``expert_usage`` (MoE
router collapse), ``significance`` (model vs baseline, paired over users), ``sampled_metric``
(sampled vs full ranking) and ``sample_size``. The verdict rules are the reranking audit's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from mmrank.audit import (
    expert_usage,
    held_out_leakage,
    item_modality_ablation,
    sample_size,
    sampled_metric,
    significance,
    temporal_leakage,
)
from mmrank.audit.policy import load_policy
from mmrank.audit.recommender_context import RecommenderAuditContext
from mmrank.audit.result import CheckResult
from mmrank.audit.run_artifacts import read_run_artifacts
from mmrank.audit.runner import AuditReport, check_names, run_checks
from mmrank.audit.verdict import decide
from mmrank.data.model import Interactions
from mmrank.errors import ConfigError
from mmrank.provenance import INTERACTIONS, Provenance, read_provenance

NO_TIMESTAMPS = ("give the events a timestamp column to check the split in time; when the split is not meant "
                 "to be temporal (a data set's own split, a random holdout), drop temporal_leakage from "
                 "verdict.required.sequential in your policy")
NO_PROVENANCE = ("retrain the run with this mmrank version: it records the events it trained on "
                 "(provenance.*), which the leakage checks need")

CHECKS = {m.NAME: m.check for m in (held_out_leakage, temporal_leakage, item_modality_ablation, expert_usage, significance,
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


def recorded_events(prov: Provenance, events: Interactions, splits: tuple[str, ...]) -> tuple[Interactions | None, int]:
    """(the rows of ``events`` the run recorded in ``splits``, how many recorded events are not in
    ``events``); (None, 0) when the run recorded none of these splits as interactions."""
    from mmrank.provenance import interaction_hashes

    recorded = [prov.splits[n].hashes["event"] for n in splits
                if n in prov.splits and prov.splits[n].kind == INTERACTIONS]
    if not recorded:
        return None, 0
    wanted = np.unique(np.concatenate(recorded))
    have = interaction_hashes(events)["event"]
    rows = np.flatnonzero(np.isin(have, wanted))
    return events.take(rows), int(len(wanted) - len(np.unique(have[rows])))


def run_events(run_dir: str | Path, events: Interactions) -> tuple[Interactions | None, Interactions | None, int]:
    """(training events incl. validation, test events, recorded events missing from ``events``)
    as the run recorded them; (None, None, 0) for a run without provenance."""
    prov = read_provenance(run_dir)
    if prov is None:
        return None, None, 0
    train, missing_train = recorded_events(prov, events, ("train", "valid"))
    test, missing_test = recorded_events(prov, events, ("test",))
    return train, test, missing_train + missing_test


def _load(spec: str | Path, seq, label: str):
    """(ranker, the split in its dense ids) for a run directory or a baseline kind."""
    from mmrank.models.registry import build_ranker
    from mmrank.sequential.run import load_run, split_for

    if Path(spec).is_dir():
        if not is_sequential_run(spec):
            raise ConfigError(f"{label} {spec}: not a sequential run (its config.yaml has no `task: sequential`) — "
                              "audit rerankers with --train/--test files")
        ranker, _ = load_run(spec)
        return ranker, split_for(ranker, seq)
    if str(spec) not in BASELINE_KINDS:
        raise ConfigError(f"{label} {str(spec)!r}: neither a sequential run directory nor a baseline kind — "
                          f"use a directory written by `mmrank train` or one of {BASELINE_KINDS}")
    return build_ranker(str(spec)).fit(seq.split), seq.split


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
    from mmrank.sequential.folds import evaluation_split
    from mmrank.sequential.run import load_sequence_data

    pol = load_policy(policy) if not isinstance(policy, dict) or "verdict" not in policy else policy
    names = check_names(CHECKS, checks)
    model_dir = Path(model)
    if not model_dir.is_dir() or not is_sequential_run(model_dir):
        raise ConfigError(f"--model {model}: not a sequential run directory — train one with "
                          "`mmrank train configs/ml100k_sasrec_moe.yaml --out RUN`")
    config = load_config(model_dir / "config.yaml")
    # the run's own evaluation split (cold-start or user fold when its config asks for one)
    seq = evaluation_split(load_sequence_data(config.data, data), config.data)
    if baseline is not None and Path(baseline).is_dir():
        ours, theirs = _split_fingerprint(model_dir), _split_fingerprint(Path(baseline))
        if ours != theirs:
            raise ConfigError(f"--model and --baseline were trained on different splits (split fingerprints "
                              f"{ours} vs {theirs}): a paired comparison needs the same data and split")
    ranker, split = _load(model_dir, seq, "--model")
    base, base_split = (None, None) if baseline is None else _load(baseline, seq, "--baseline")
    train_events, test_events, missing = run_events(model_dir, seq.interactions)
    pol = {**pol, "sampled_metric": {**pol["sampled_metric"], "n_negatives": config.evaluate.sampled_negatives or None}}
    ctx = RecommenderAuditContext(
        model=ranker, baseline=base, split=split, baseline_split=base_split, policy=pol,
        train_interactions=train_events, test_interactions=test_events,
        sampled_negatives=config.evaluate.sampled_negatives, recorded_events_missing=missing,
        provenance_hint=NO_PROVENANCE if train_events is None else None,
        no_time_reason=seq.protocol.time_checks_reason,
    )
    recorded = recorded_test_metrics(model_dir, seq, split, ctx, config.train.seed)
    if recorded is not None:
        ctx.__dict__["model_metrics"] = recorded  # fills the cached property: no second scoring pass
    meta: dict[str, Any] = {
        "model_run": str(model_dir), "baseline_spec": None if baseline is None else str(baseline),
        "data": seq.inter_path, "provenance": train_events is not None,
        "split": seq.protocol.to_dict(),
        "model_metrics": ("read from the run's predictions.parquet (same data and split fingerprints)"
                          if recorded is not None else "recomputed (full ranking)"),
    }
    return audit_recommender_context(ctx, names, progress, meta, model_dir)


def recorded_test_metrics(run_dir: Path, seq, split, ctx: RecommenderAuditContext, run_seed: int
                          ) -> dict[str, np.ndarray] | None:
    """The model's per-user test metrics as the run wrote them (``predictions.parquet``), in the
    shape ``ctx.evaluate`` returns, when the run was trained on exactly this data and split (both
    fingerprints equal), recorded every metric the checks read, and drew its sampled negatives
    with the audit's seed; else None (recompute)."""
    import pandas as pd

    if ctx.sampled_negatives and run_seed != ctx.seed:
        return None
    fp_path, pred_path = run_dir / "fingerprint.json", run_dir / "predictions.parquet"
    if not fp_path.is_file() or not pred_path.is_file():
        return None
    fp = json.loads(fp_path.read_text(encoding="utf-8"))
    if (fp.get("data", {}).get("interactions") != seq.data_fingerprint
            or fp.get("split", {}).get("combined") != seq.split_fingerprint.get("combined")):
        return None
    pred = pd.read_parquet(pred_path)
    pred = pred[pred["stage"] == "test"]
    wanted = [ctx.metric] + ([f"sampled_{ctx.metric}"] if ctx.sampled_negatives else [])
    if any(c not in pred.columns for c in wanted):
        return None
    users = split.users.encode(pred["user_id"].astype(str), str(pred_path))
    order = np.argsort(users, kind="stable")
    metric_cols = [c for c in pred.columns if c not in ("user_id", "stage", "target_item", "n_targets")]
    out = {c: pred[c].to_numpy(dtype=np.float64)[order] for c in metric_cols}
    out["users"] = users[order]
    return out


def _applicable(ctx: RecommenderAuditContext) -> dict:
    """The checks to run: ``temporal_leakage`` becomes a SKIP with the reason when the events
    carry no real timestamps (comparing row numbers as times would PASS on nothing)."""
    if ctx.no_time_reason is None:
        return CHECKS
    why = ctx.no_time_reason.split(":")[0]  # "the data has no timestamps (...)"
    skip = CheckResult.skip(temporal_leakage.NAME, ctx.no_time_reason, provide=f"{why}: {NO_TIMESTAMPS}")
    return {**CHECKS, temporal_leakage.NAME: lambda _ctx: skip}


def _unit(split) -> str:
    several = (split.test_targets.counts() > 1).any()
    held_out = "one or more held-out items each (metric: mean over them)" if several else "one held-out item each"
    return f"user ({held_out}, full ranking over all items, seen items masked)"


def audit_recommender_context(ctx: RecommenderAuditContext, names: list[str] | None = None,
                              progress: Callable[[str], None] | None = None, meta: dict | None = None,
                              run_dir: str | Path | None = None) -> AuditReport:
    """Run the recommendation checks on a prepared context (fitted rankers, split, the events
    they trained on) and decide the verdict with the policy's ``sequential`` required checks."""
    names = check_names(CHECKS, names)
    results, timings = run_checks(_applicable(ctx), names, ctx, progress)
    verdict = decide(results, ctx.policy, task="sequential")
    if run_dir is not None:
        ctx.extras.update(read_run_artifacts(run_dir))
    full = {
        "task": "sequential", "model": type(ctx.model).__name__,
        "baseline": None if ctx.baseline is None else type(ctx.baseline).__name__,
        "users": int(len(ctx.model_metrics["users"])), "items": int(ctx.split.n_items),
        "train_events": None if ctx.train_interactions is None else int(len(ctx.train_interactions)),
        "seconds": timings,
        "unit": _unit(ctx.split),
        **(meta or {}),
    }
    return AuditReport(verdict.decision, verdict.reasons, results, ctx.policy, ctx.extras, full)
