"""P5: NDCG@10 lift of the multimodal MoE run over the ID-only SASRec run, paired over users,
with a bootstrap CI95 (mmrank.stats.paired_bootstrap_ci = scipy.stats.bootstrap, BCa), one pair
of runs per seed, plus the seed-averaged lift; then the recommendation audit of the first pair
(``mmrank.audit.recommender_runner.audit_recommender``: modality ablation, expert usage,
significance, sample size) — reported whatever the sign of the lift.

    python benchmarks/p5_moe_lift.py --moe RUN_MOE [RUN_MOE_SEED1 ...] --id RUN_SASREC [RUN_SASREC_SEED1 ...]
        [--staged RUN_MOE_STAGED]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def per_user(run: str, stage: str = "test") -> pd.Series:
    df = pd.read_parquet(Path(run) / "predictions.parquet")
    df = df[df.stage == stage]
    return df.set_index("user_id")["ndcg@10"]


def lift(a_run: str, b_run: str) -> dict:
    from mmrank.stats import paired_bootstrap_ci

    a, b = per_user(a_run), per_user(b_run)
    users = a.index.intersection(b.index)
    ci = paired_bootstrap_ci(a[users].to_numpy(), b[users].to_numpy(), n_resamples=10_000, seed=0)
    return {"a": a_run, "b": b_run, "users": int(len(users)), "ndcg@10_a": round(float(a[users].mean()), 5),
            "ndcg@10_b": round(float(b[users].mean()), 5), "delta": round(ci.mean, 5),
            "ci95": [round(ci.low, 5), round(ci.high, 5)], "method": ci.method, "n_resamples": ci.n_resamples}


def seed_averaged_lift(moe_runs: list[str], id_runs: list[str]) -> dict:
    """Per user, the mean NDCG@10 over the seeds of each system, then the paired CI over users."""
    from mmrank.stats import paired_bootstrap_ci

    a = pd.concat([per_user(r) for r in moe_runs], axis=1).mean(axis=1)
    b = pd.concat([per_user(r) for r in id_runs], axis=1).mean(axis=1)
    users = a.index.intersection(b.index)
    ci = paired_bootstrap_ci(a[users].to_numpy(), b[users].to_numpy(), n_resamples=10_000, seed=0)
    return {"seeds": len(moe_runs), "ndcg@10_moe": round(float(a[users].mean()), 5),
            "ndcg@10_id": round(float(b[users].mean()), 5), "delta": round(ci.mean, 5),
            "ci95": [round(ci.low, 5), round(ci.high, 5)]}


def audit_summary(moe_run: str, id_run: str) -> dict:
    from mmrank.audit.recommender_runner import audit_recommender

    report = audit_recommender(moe_run, id_run, checks=["modality_ablation", "expert_usage", "significance", "sample_size"])
    checks = {c.name: {"status": c.status, "value": c.value, "threshold": c.threshold} for c in report.checks}
    abl = report["modality_ablation"].evidence
    drops = {m: {k: round(v, 5) for k, v in d["drop"].items() if k in ("mean", "low", "high")}
             for m, d in abl["per_modality"].items()}
    if abl.get("all_content_drop"):
        drops["all content"] = {k: round(v, 5) for k, v in abl["all_content_drop"].items() if k in ("mean", "low", "high")}
    return {"verdict": report.verdict, "checks": checks, "full_ndcg@10": round(abl["full"], 5),
            "ablation_drop": drops, "expert_usage": report["expert_usage"].evidence["mean_router_probability"],
            "top1_share": report["expert_usage"].evidence["top1_share"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", nargs="+", required=True, help="MoE runs, one per seed")
    ap.add_argument("--id", nargs="+", required=True, help="ID-only SASRec runs, same seeds in the same order")
    ap.add_argument("--staged")
    args = ap.parse_args()
    if len(args.moe) != len(args.id):
        ap.error("give one --id run per --moe run (same seeds, same order)")
    pairs = [lift(m, i) for m, i in zip(args.moe, args.id)]
    out = {"moe_minus_id_per_seed": pairs,
           "mean_of_seed_deltas": round(float(np.mean([p["delta"] for p in pairs])), 5),
           "moe_minus_id_seed_averaged": seed_averaged_lift(args.moe, args.id),
           "audit_first_pair": audit_summary(args.moe[0], args.id[0])}
    if args.staged:
        out["staged_minus_joint"] = lift(args.staged, args.moe[0])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
