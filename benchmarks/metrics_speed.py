"""Speed of mmrank's metric code, with ranx measured in the same run as the peer.

1. ``per_query_metrics`` on all of MQ2008 (784 queries, 15,211 candidates; needs the shared data)
   and on a synthetic 1M-candidate set (100k queries of 1..19 candidates), against
   ``ranx.evaluate`` on the same runs (numba JIT warmed up first; ranx's Qrels/Run construction
   from dicts timed separately, since a caller with arrays has to pay it too).
2. ``full_ranking_metrics`` / ``sampled_ranking_metrics`` throughput (users/s) for 943 users x
   1,682 items (MovieLens-100K's shape) with a random score matrix and ~106 random seen items per
   user: the throughput of the evaluation code only, no model.

Usage: python benchmarks/metrics_speed.py [--repeats 5] [--no-ranx] [--threads 1]
Writes benchmarks/results/metrics.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, median_seconds, stamp  # noqa: E402

METRICS = ["ndcg@1", "ndcg@5", "ndcg@10", "map", "mrr", "precision@10", "recall@10"]
RANX_METRICS = ["ndcg_burges@1", "ndcg_burges@5", "ndcg_burges@10", "map", "mrr", "precision@10", "recall@10"]


def timed(fn, repeats: int) -> float:
    return median_seconds(fn, repeats, warmup=True)


def mq2008_set():
    from mmrank.data.formats import load_ranking
    from mmrank.data.model import concat_ranking_sets

    data = Path(os.environ.get("MMRANK_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    folder = data / "ltr" / "MQ2008"
    if not (folder / "S1.txt").is_file():
        return None
    rset = concat_ranking_sets([load_ranking(folder / f"S{i}.txt", "libsvm") for i in range(1, 6)])
    return rset.labels, rset.features["letor"][:, 4].astype(np.float64), rset.offsets


def synthetic_set(n_queries: int = 100_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 20, n_queries)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    return rng.integers(0, 3, offsets[-1]).astype(float), rng.normal(size=offsets[-1]), offsets


def ranx_objects(labels, scores, offsets):
    from ranx import Qrels, Run

    qrels, run = {}, {}
    for q in range(len(offsets) - 1):
        a, b = offsets[q], offsets[q + 1]
        docs = [f"d{i}" for i in range(b - a)]
        qrels[f"q{q}"] = dict(zip(docs, labels[a:b].astype(int).tolist()))
        run[f"q{q}"] = dict(zip(docs, scores[a:b].tolist()))
    return Qrels(qrels), Run(run)


def bench_lists(name, data, repeats, with_ranx) -> list[str]:
    from mmrank.metrics import per_query_metrics

    labels, scores, offsets = data
    ours = timed(lambda: per_query_metrics(labels, scores, offsets, METRICS), repeats)
    row = f"| {name} | {len(offsets) - 1:,} | {len(scores):,} | {ours * 1e3:.1f} ms |"
    if not with_ranx:
        return [row + " not run | | |"]
    import ranx

    ranx_objects(labels, scores, offsets[:3])  # compile ranx's numba constructors outside the timing
    start = time.perf_counter()
    qrels, run = ranx_objects(labels, scores, offsets)
    build = time.perf_counter() - start
    theirs = timed(lambda: ranx.evaluate(qrels, run, RANX_METRICS, return_mean=False,
                                         make_comparable=False), repeats)
    return [row + f" {theirs * 1e3:.1f} ms | {build:.2f} s | {theirs / ours:.2f}x |"]


def bench_full(repeats: int) -> list[str]:
    import torch

    from mmrank.sequential.full_ranking import full_ranking_metrics, sampled_ranking_metrics

    n_users, n_items = 943, 1682
    rng = np.random.default_rng(0)
    matrix = torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(0))
    targets = rng.integers(0, n_items, n_users)
    counts = rng.integers(20, 193, n_users)  # mean ~106, ML-100K's mean ratings per user
    seen = [rng.choice(n_items, c, replace=False) for c in counts]
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate(seen)
    scorer = lambda users: matrix[users]  # noqa: E731
    rows = []
    for label, fn, kw in (
        ("full ranking", full_ranking_metrics, {}),
        ("sampled, 100 negatives", sampled_ranking_metrics, {"n_negatives": 100}),
    ):
        for chunk in (256, n_users):
            t = timed(lambda: fn(scorer, n_users, targets, indptr, indices, (5, 10, 20),
                                 chunk_size=chunk, **kw), repeats)
            rows.append(f"| {label} | {chunk} | {t * 1e3:.1f} ms | {n_users / t:,.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-ranx", action="store_true", help="skip the ranx peer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (numba: NUMBA_NUM_THREADS)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    lines = [
        "## Metrics speed (`mmrank.metrics`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Run: {stamp()}; 2-core CPU dev box, shared with parallel work (timings are under that "
        f"contention). torch threads {args.threads}, NUMBA_NUM_THREADS="
        f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}. Median of {args.repeats} calls after a warm-up. "
        f"Load average at start: {os.getloadavg()[0]:.1f} (on 2 cores: absolute times are inflated; "
        "the ranx ratio is measured in the same run).",
        "",
        f"### per_query_metrics ({', '.join(METRICS)} in one call) vs ranx.evaluate (same metrics, JIT warm)",
        "",
        "| data | queries | candidates | mmrank | ranx evaluate | ranx Qrels+Run build (from dicts, JIT warm) | ranx / mmrank (evaluate only) |",
        "|---|---|---|---|---|---|---|",
    ]
    mq = mq2008_set()
    if mq is not None:
        lines += bench_lists("MQ2008 S1-S5 (feature 5 as score)", mq, args.repeats, not args.no_ranx)
    else:
        lines.append("| MQ2008 | shared data not found: not measured | | | | | |")
    lines += bench_lists("synthetic, 1..19 per query", synthetic_set(), args.repeats, not args.no_ranx)
    lines += [
        "",
        "### full_ranking_metrics throughput: 943 users x 1,682 items, random scores, ~106 seen items/user",
        "",
        "Throughput of the evaluation code only (masking, ranking, metrics at k=5,10,20); scores come "
        "from a precomputed random matrix, no model runs.",
        "",
        "| evaluation | chunk_size | time (all users) | users/s |",
        "|---|---|---|---|",
    ]
    lines += bench_full(args.repeats)
    out = RESULTS / "metrics.md"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
