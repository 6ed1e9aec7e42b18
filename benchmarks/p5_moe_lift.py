"""P5: NDCG@10 lift of the multimodal MoE run over the ID-only SASRec run, paired over users,
with a bootstrap CI95 (mmrank.stats.paired_bootstrap_ci = scipy.stats.bootstrap, BCa), plus the
MoE's per-modality ablation (test NDCG@10 with each modality treated as missing for every item),
expert usage and modality gate shares — reported whatever the sign of the lift.

    python benchmarks/p5_moe_lift.py --moe RUN_MOE --id RUN_SASREC [--staged RUN_MOE_STAGED]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    return {"users": int(len(users)), "ndcg@10_a": round(float(a[users].mean()), 5),
            "ndcg@10_b": round(float(b[users].mean()), 5), "delta": round(ci.mean, 5),
            "ci95": [round(ci.low, 5), round(ci.high, 5)], "method": ci.method, "n_resamples": ci.n_resamples}


def ablation(run: str) -> dict:
    from mmrank.train.sequential_module import evaluate_stage, mean_metrics
    from mmrank.train.sequential_run import load_run, load_sequence_data

    ranker, config = load_run(run)
    split = load_sequence_data(config.data.path).split
    out = {"none": mean_metrics(evaluate_stage(ranker, split, "test"))["ndcg@10"]}
    for m in ranker.modalities:
        ranker.set_ablation({m})
        out[f"without_{m}"] = mean_metrics(evaluate_stage(ranker, split, "test"))["ndcg@10"]
    ranker.set_ablation(set(ranker.modalities))
    out["without_all_content"] = mean_metrics(evaluate_stage(ranker, split, "test"))["ndcg@10"]
    ranker.set_ablation(set())
    return {"test_ndcg@10": {k: round(v, 5) for k, v in out.items()},
            "expert_usage": ranker.expert_usage(), "modality_share": ranker.modality_share()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moe", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--staged")
    args = ap.parse_args()
    out = {"moe_minus_id": lift(args.moe, args.id), "moe_ablation": ablation(args.moe)}
    if args.staged:
        out["staged_minus_joint"] = lift(args.staged, args.moe)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
