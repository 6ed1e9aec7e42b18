"""P5 for the content-aware recommender (``sasrec_content``) and contrastive training, 3 seeds,
paired over users (``mmrank.stats.paired_bootstrap_ci``: scipy.stats.bootstrap, BCa, 10,000
resamples), each section reported whatever its sign:

* **warm** — leave-one-out runs: content-aware − ID-only NDCG@10 per seed and averaged over seeds
  per user; over all test users and over the users whose target is warm.
* **cold** — cold-start split runs (``data.cold_start``): on cold targets, content-aware − the best
  ID-only fallback (chosen per seed on *validation* cold NDCG@10, from the ID run's
  ``cold_start_fallbacks``), plus every fallback for reference; the warm targets of that split too.
* **contrastive** — contrastive-trained − plain ID-only runs, same seeds.
* **audit** — the recommendation audit of the first content run against the first ID-only run
  (modality ablation with CIs, expert usage when the adapter is the MoE), with its gate and
  modality shares.

    python benchmarks/p5_content.py --content C0 C1 C2 --id I0 I1 I2 \\
        [--content-cold CC0 CC1 CC2 --id-cold IC0 IC1 IC2] [--cl CL0 CL1 CL2] [--audit]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seqrec_common import audit_summary, paired_lift, per_user, seed_averaged  # noqa: E402


def metrics_of(run: str) -> dict:
    return json.loads((Path(run) / "metrics.json").read_text())


def pairs(a_runs: list[str], b_runs: list[str], subset: str = "all", b_fallbacks: list[str] | None = None,
          metric: str = "ndcg@10") -> dict:
    """Per-seed lifts of a over b in ``metric`` on ``subset`` and the lift of the per-user seed means."""
    fb = b_fallbacks or [None] * len(b_runs)
    a = [per_user(r, subset=subset, metric=metric) for r in a_runs]
    b = [per_user(r, subset=subset, fallback=f, metric=metric) for r, f in zip(b_runs, fb)]
    return {"subset": subset, "metric": metric, "per_seed": [paired_lift(x, y, "a", "b") for x, y in zip(a, b)],
            "seed_averaged": paired_lift(seed_averaged(a), seed_averaged(b), "a", "b")}


def run_facts(run: str) -> dict:
    m = metrics_of(run)
    return {"run": run, "epochs": m.get("epochs"), "train_seconds": m.get("train_seconds"),
            "valid_ndcg@10": m["valid"]["ndcg@10"], "test_ndcg@10": m["test"]["ndcg@10"],
            "modality_share": m.get("modality_share"), "expert_usage": m.get("expert_usage")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", nargs="+", required=True, help="content-aware runs (leave-one-out), one per seed")
    ap.add_argument("--id", nargs="+", required=True, help="ID-only runs (leave-one-out), same seeds, same order")
    ap.add_argument("--content-cold", nargs="*", default=[], help="content-aware runs on the cold-start split")
    ap.add_argument("--id-cold", nargs="*", default=[], help="ID-only runs on the cold-start split")
    ap.add_argument("--cl", nargs="*", default=[], help="contrastive-trained ID-only runs (leave-one-out)")
    ap.add_argument("--audit", action="store_true", help="run the recommendation audit of the first pair")
    args = ap.parse_args()
    if len(args.content) != len(args.id) or len(args.content_cold) != len(args.id_cold):
        ap.error("give the runs of both systems for the same seeds, in the same order")
    out: dict = {"runs": {"content": [run_facts(r) for r in args.content], "id": [run_facts(r) for r in args.id]},
                 "warm": {"all_users": pairs(args.content, args.id), "warm_targets": pairs(args.content, args.id, "warm")}}
    if args.content_cold:
        reports = [metrics_of(r)["cold_start_fallbacks"] for r in args.id_cold]
        best = [r["best_fallback"] for r in reports]
        out["cold"] = {"best_fallback_per_seed": best, "chosen_on": reports[0]["chosen_on"],
                       "cold_targets_vs_best_fallback": pairs(args.content_cold, args.id_cold, "cold", best),
                       "cold_targets_vs_best_fallback_hr@20": pairs(args.content_cold, args.id_cold, "cold", best, "hr@20"),
                       # mean rank of the cold targets (lower is better: a negative delta favours content)
                       "cold_targets_vs_best_fallback_rank": pairs(args.content_cold, args.id_cold, "cold", best, "rank"),
                       "warm_targets_vs_best_fallback": pairs(args.content_cold, args.id_cold, "warm", best),
                       "cold_targets_vs_each_fallback": {
                           f: pairs(args.content_cold, args.id_cold, "cold", [f] * len(best))["seed_averaged"]
                           for f in reports[0]["fallbacks"]},
                       "runs": {"content": [run_facts(r) for r in args.content_cold],
                                "id": [run_facts(r) for r in args.id_cold]}}
    if args.cl:
        out["contrastive"] = {"all_users": pairs(args.cl, args.id), "runs": [run_facts(r) for r in args.cl]}
    if args.audit:
        out["audit_first_pair"] = audit_summary(args.content[0], args.id[0])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
