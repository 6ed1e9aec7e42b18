"""P7: full-ranking evaluation throughput (users/s) of a trained sequential run, next to
RecBole's full-sort evaluation time read from its own log (the "epoch N evaluating [time: S]"
lines: valid users ranked against all items, seen items masked, inside RecBole's process).

    python benchmarks/p7_eval_throughput.py RUN --recbole-log SASRec.log [--repeats 5]

Ours is timed the same way: the test stage's full ranking of every user (scores for all items,
seen items masked, metrics), median of ``--repeats`` runs, with torch threads as given.

Beside it, the roofline of the model's own forward: its FLOPs over all test users (counted by
``torch.utils.flop_counter``: matmuls and attention), the median time of that forward alone, the
GFLOP/s it reaches and an fp32 GEMM peak measured in the same run at the same thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gemm_peak, median_seconds  # noqa: E402
from seqrec_common import recbole_epochs  # noqa: E402


def forward_roofline(ranker, split, chunk_size: int, repeats: int) -> dict:
    """FLOPs, seconds and GFLOP/s of the next-item scoring forward over every test user, batched
    as the evaluation batches them (users in order of history length, ``chunk_size`` at a time)."""
    from torch.utils.flop_counter import FlopCounterMode

    hist = split.history_for("test")
    users = sorted((u for u in range(hist.n_users) if split.test_target[u] > 0), key=lambda u: len(hist.of(u)))
    batches = [[hist.of(u) for u in users[i:i + chunk_size]] for i in range(0, len(users), chunk_size)]

    def forward():
        with torch.inference_mode(), ranker.scoring_session():
            for seqs in batches:
                ranker.score_histories(seqs)

    with FlopCounterMode(display=False) as counter:
        forward()
    flops = counter.get_total_flops()
    seconds = median_seconds(forward, repeats, warmup=True)
    cap = ranker.params.max_len
    computed = sum(len(b) * min(cap, max(len(s) for s in b)) for b in batches)
    real = sum(min(len(hist.of(u)), cap) for u in users)
    return {"gflop": round(flops / 1e9, 3), "seconds": round(seconds, 4),
            "gflop_per_s": round(flops / seconds / 1e9, 1), "gemm_peak_gflop_per_s": round(gemm_peak(), 1),
            "positions_computed": int(computed), "positions_if_padded_to_max_len": len(users) * cap,
            "real_positions": int(real)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--recbole-log")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk-size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from mmrank.sequential.evaluation import evaluate_stage
    from mmrank.sequential.run import load_run, load_sequence_data

    ranker, config = load_run(args.run)
    split = load_sequence_data(config.data.path).split
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        per_user = evaluate_stage(ranker, split, "test", chunk_size=args.chunk_size)
        times.append(time.perf_counter() - t0)
    users = len(per_user["users"])
    ours = users / statistics.median(times)
    out = {"ours": {"users": users, "seconds": [round(t, 4) for t in times], "users_per_s": round(ours, 1),
                    "threads": args.threads, "items": split.n_items},
           "forward": forward_roofline(ranker, split, args.chunk_size, args.repeats)}
    if args.recbole_log:
        rb = recbole_epochs(args.recbole_log)
        secs = [r["eval_seconds"] for r in rb]
        rb_rate = users / statistics.median(secs)
        out["recbole"] = {"evals": len(secs), "seconds": secs, "users_per_s": round(rb_rate, 1), "threads": 1}
        out["speedup"] = round(ours / rb_rate, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
