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
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seqrec_common import audit_summary, paired_lift, per_user, seed_averaged  # noqa: E402


def lift(a_run: str, b_run: str) -> dict:
    """MoE-style pair: NDCG@10 of run a minus run b on the test users, paired CI95."""
    out = paired_lift(per_user(a_run), per_user(b_run), "ndcg@10_a", "ndcg@10_b")
    return {"a": a_run, "b": b_run, **out}


def seed_averaged_lift(moe_runs: list[str], id_runs: list[str]) -> dict:
    """Per user, the mean NDCG@10 over the seeds of each system, then the paired CI over users."""
    out = paired_lift(seed_averaged([per_user(r) for r in moe_runs]), seed_averaged([per_user(r) for r in id_runs]),
                      "ndcg@10_moe", "ndcg@10_id")
    return {"seeds": len(moe_runs), **out}


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
