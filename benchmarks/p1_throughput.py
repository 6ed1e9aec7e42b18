"""P1: CoTRR default scoring throughput on 100-candidate queries (CPU), against a torch GEMM peak
measured in the same run, and the distilled linear student's latency per 100 candidates.

    python benchmarks/p1_throughput.py --threads 2 --out benchmarks/results/p1.json

The model is CoTRR's library default (d_model 256, 2 token layers, 8 heads, FFN ×2) over a
seed-like layout: image 512-d (CLIP), text 384-d (MiniLM), meta 16-d, with random weights (speed
does not depend on the weights). FLOPs are counted by ``torch.utils.flop_counter`` on the real
forward pass, so GFLOP/s is achieved arithmetic, not an estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gemm_peak  # noqa: E402
from mmrank.data.model import RankingSet
from mmrank.models.cotrr import CoTRR
from mmrank.models.distill import LinearStudent, latency_per_100

DIMS = {"image": 512, "text": 384, "meta": 16}


def make_set(n_queries: int, per_query: int = 100, seed: int = 0) -> RankingSet:
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    return RankingSet(query_ids=[f"q{i}" for i in range(n_queries)], offsets=np.arange(0, n + 1, per_query),
                      candidate_ids=[f"c{i}" for i in range(n)], labels=rng.integers(0, 3, n),
                      features={k: rng.normal(size=(n, d)).astype(np.float32) for k, d in DIMS.items()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--list-context", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = make_set(args.queries)
    model = CoTRR(list_context=args.list_context).prepare(data)
    model.network_.eval()
    one = data.subset([0])

    # FLOPs of one 100-candidate query, counted on the real forward pass.
    batch = model.padded_queries(one).batch(np.array([0]))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.network_(batch["x"], batch["mask"])
    flops_per_query = fc.get_total_flops()

    peak_before = gemm_peak()
    model.score(data)  # warm-up
    batch_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.score(data)
        batch_times.append(time.perf_counter() - t0)
    per_query_ms = []
    for i in range(min(args.queries, 50)):
        q = data.subset([i])
        t0 = time.perf_counter()
        model.score(q)
        per_query_ms.append((time.perf_counter() - t0) * 1e3)
    peak_after = gemm_peak()
    best = min(batch_times)
    cands_per_s = data.n_candidates / best
    achieved = flops_per_query * args.queries / best / 1e9
    student = LinearStudent().fit(data, teacher_scores=model.score(data))
    result = {
        "threads": args.threads,
        "list_context": args.list_context,
        "parameters": model.n_parameters(),
        "batch": {"queries": args.queries, "candidates": data.n_candidates, "best_s": best, "median_s": float(np.median(batch_times))},
        "candidates_per_s": cands_per_s,
        "candidates_per_s_median": data.n_candidates / float(np.median(batch_times)),
        "per_query_100_ms": {"median": float(np.median(per_query_ms)), "p95": float(np.percentile(per_query_ms, 95))},
        "flops_per_candidate": flops_per_query / 100,
        "achieved_gflops": achieved,
        "gemm_peak_gflops": {"before": peak_before, "after": peak_after},
        "fraction_of_gemm_peak": achieved / max(peak_before, peak_after),
        "linear_student_per_100": latency_per_100(student, data, repeats=200),
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
