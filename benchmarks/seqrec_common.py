"""Shared by the sequential-recommendation benchmarks (p3, p5, p7): reading RecBole's log and a
run's per-epoch history; per-user metrics of runs and paired lifts with bootstrap CIs."""

from __future__ import annotations

import json
import re
from pathlib import Path

_EPOCH_TRAIN = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
_EPOCH_EVAL = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s, valid_score: ([\d.]+)\]")


def recbole_epochs(log_path: str | Path) -> list[dict]:
    """Per epoch of a RecBole log: train seconds, eval seconds, valid NDCG@10 (its valid_score),
    and the cumulative wall seconds (train + eval) at the end of the epoch."""
    text = Path(log_path).read_text(errors="replace")
    train = {int(e): float(t) for e, t in _EPOCH_TRAIN.findall(text)}
    rows, total = [], 0.0
    for e, t, score in _EPOCH_EVAL.findall(text):
        e = int(e)
        total += train.get(e, 0.0) + float(t)
        rows.append({"epoch": e + 1, "train_seconds": train.get(e), "eval_seconds": float(t),
                     "valid_ndcg@10": float(score), "cumulative_seconds": round(total, 2)})
    return rows


def run_history(run_dir: str | Path) -> list[dict]:
    """Per-epoch rows a sequential run stored in model.json (seconds since training started)."""
    return json.loads((Path(run_dir) / "model.json").read_text())["history"]


def first_reaching(rows: list[dict], key: str, target: float, time_key: str) -> dict | None:
    for r in rows:
        if r[key] >= target:
            return r
    return None


def per_user(run: str, stage: str = "test", subset: str = "all", file: str = "predictions.parquet",
             fallback: str | None = None, metric: str = "ndcg@10"):
    """Per-user ``metric`` of a run's ``stage`` (a pandas Series indexed by user id); ``subset``
    ``warm`` / ``cold`` keeps the users whose target is warm / cold (``cold_target`` column);
    ``fallback`` reads an ID-only run's ``predictions_fallbacks.parquet`` rows of that fallback."""
    import pandas as pd

    df = pd.read_parquet(Path(run) / ("predictions_fallbacks.parquet" if fallback else file))
    df = df[df.stage == stage]
    if fallback:
        df = df[df.fallback == fallback]
    if subset != "all":
        df = df[df.cold_target == (subset == "cold")]
    return df.set_index("user_id")[metric]


def paired_lift(a, b, label_a: str = "a", label_b: str = "b") -> dict:
    """Mean of ``a - b`` over the users both have, with the paired bootstrap CI95
    (``mmrank.stats.paired_bootstrap_ci``: scipy.stats.bootstrap, BCa, 10,000 resamples)."""
    from mmrank.stats import paired_bootstrap_ci

    users = a.index.intersection(b.index)
    ci = paired_bootstrap_ci(a[users].to_numpy(), b[users].to_numpy(), n_resamples=10_000, seed=0)
    return {"users": int(len(users)), label_a: round(float(a[users].mean()), 5), label_b: round(float(b[users].mean()), 5),
            "delta": round(ci.mean, 5), "ci95": [round(ci.low, 5), round(ci.high, 5)]}


def seed_averaged(series: list):
    """Per user, the mean over the seeds' Series (users every seed has)."""
    import pandas as pd

    return pd.concat(series, axis=1, join="inner").mean(axis=1)


def audit_summary(model_run: str, baseline_run: str) -> dict:
    """The recommendation audit of a content-aware run against a baseline run: verdict, checks,
    modality ablation drops (CI95) and, for MoE content towers, expert usage."""
    from mmrank.audit.recommender_runner import audit_recommender

    report = audit_recommender(model_run, baseline_run, checks=["modality_ablation", "expert_usage", "significance", "sample_size"])
    checks = {c.name: {"status": c.status, "value": c.value, "threshold": c.threshold} for c in report.checks}
    abl = report["modality_ablation"].evidence
    out = {"verdict": report.verdict, "checks": checks}
    if abl.get("per_modality"):
        drops = {m: {k: round(v, 5) for k, v in d["drop"].items() if k in ("mean", "low", "high")}
                 for m, d in abl["per_modality"].items()}
        if abl.get("all_content_drop"):
            drops["all content"] = {k: round(v, 5) for k, v in abl["all_content_drop"].items() if k in ("mean", "low", "high")}
        out.update({"full_ndcg@10": round(abl["full"], 5), "ablation_drop": drops})
    usage = report["expert_usage"].evidence
    if usage.get("mean_router_probability"):
        out.update({"expert_usage": usage["mean_router_probability"], "top1_share": usage["top1_share"]})
    return out
