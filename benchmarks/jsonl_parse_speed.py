"""Per-record JSONL parse: the columnar fast path vs the per-candidate path, same run.

One Step5-shaped query record (``--candidates`` candidates with image + text feature lists, a
raw score and a compliance score, no labels: what ``mmrank serve`` receives) is turned into a
one-query RankingSet by ``parse_query_record(obj, require_labels=False)`` — the call serving
makes — with ``columnar=True`` (the fast path) and ``columnar=False`` (the per-candidate path,
which is what every record took before the fast path existed). For scale, the same run also
times the JSON parse of the request body (pydantic-core, as serving does) and one bare
``np.array`` over one modality's lists.

Variants are interleaved round by round so that load from other work on the machine hits them
alike; each reported number is the median over rounds of the mean per-call time in a round.
Writes benchmarks/results/jsonl_parse.md.

    python benchmarks/jsonl_parse_speed.py --rounds 15 --calls 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pydantic_core  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, stamp  # noqa: E402

from mmrank.data.io_jsonl import parse_query_record  # noqa: E402

KEEP_MARK = "<!-- measured by hand, kept by this script -->"


def step5_record(n: int, dim: int, seed: int = 0) -> dict:
    """A serving request: features rounded to 4 decimals like the P2 load generator's."""
    rng = np.random.default_rng(seed)
    return {"query_id": "q", "query_text": "a query", "candidates": [
        {"candidate_id": f"c{j}", "raw_score": float(rng.normal()), "compliance_score": float(rng.random()),
         "image_features": [round(float(x), 4) for x in rng.normal(size=dim)],
         "text_features": [round(float(x), 4) for x in rng.normal(size=dim)]}
        for j in range(n)]}


def time_variants(variants: dict, rounds: int, calls: int) -> dict[str, float]:
    """Median over rounds of the mean seconds per call, variants interleaved within each round."""
    for fn in variants.values():  # warm-up
        fn()
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            per_round[name].append((time.perf_counter() - t0) / calls)
    return {name: statistics.median(v) for name, v in per_round.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--dims", default="64,8", help="feature length per modality (image = text), comma-separated")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()

    rows = []
    for dim in (int(d) for d in args.dims.split(",")):
        obj = step5_record(args.candidates, dim)
        body = json.dumps(obj).encode()
        image_lists = [c["image_features"] for c in obj["candidates"]]
        fast = parse_query_record(obj, require_labels=False)
        slow = parse_query_record(obj, require_labels=False, columnar=False)
        assert all(fast.features[k].tobytes() == slow.features[k].tobytes() for k in slow.features)
        t = time_variants({
            "per_candidate": lambda: parse_query_record(obj, require_labels=False, columnar=False),
            "columnar": lambda: parse_query_record(obj, require_labels=False),
            "json_body": lambda: pydantic_core.from_json(body, allow_inf_nan=False),
            "one_np_array": lambda: np.array(image_lists, dtype=np.float64),
        }, args.rounds, args.calls)
        rows.append((dim, len(body) / 1024, t))
        print(f"{dim}+{dim}: per-candidate {t['per_candidate'] * 1e3:.2f} ms, columnar {t['columnar'] * 1e3:.2f} ms "
              f"({t['per_candidate'] / t['columnar']:.1f}x), JSON body {t['json_body'] * 1e3:.2f} ms, "
              f"one np.array {t['one_np_array'] * 1e3:.2f} ms")

    table = "\n".join(
        f"| {d} + {d} | {kib:.0f} | {t['per_candidate'] * 1e3:.2f} | {t['columnar'] * 1e3:.2f} | "
        f"{t['per_candidate'] / t['columnar']:.1f}x | {t['json_body'] * 1e3:.2f} | {t['one_np_array'] * 1e3:.3f} |"
        for d, kib, t in rows)
    text = f"""## JSONL per-record parse: columnar fast path vs per-candidate path

Command: `{command_line()}` — {stamp()}; 2-core CPU dev box, shared with parallel work (timings
under that contention; `OMP_NUM_THREADS=1`).

What is timed: `parse_query_record(obj, require_labels=False)` — the call `mmrank serve` and
`mmrank rerank` make per request/line — on one Step5 record of {args.candidates} candidates (image +
text feature lists of the length shown, raw score, compliance score, no labels), from the parsed
JSON object to the checked one-query RankingSet. "Per-candidate" forces `columnar=False`, the path
every record took before the fast path (it still reads irregular records and reports problems);
both give bit-identical arrays (asserted here and property-tested in
tests/unit/test_jsonl_record_api.py). For scale: the JSON parse of the same body (pydantic-core,
as serving does) and one bare `np.array(..., float64)` over one modality's {args.candidates} lists.
Median over {args.rounds} interleaved rounds of the mean of {args.calls} calls.

| dims (image + text) | body KiB | per-candidate ms | columnar ms | speed-up | JSON body ms | one np.array ms |
|---|---|---|---|---|---|---|
{table}
"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "jsonl_parse.md"
    # the serving (P2) before/after written by hand below the marker survives a re-run
    kept = out.read_text() if out.exists() else ""
    kept = kept[kept.index(KEEP_MARK):] if KEEP_MARK in kept else ""
    out.write_text(text + ("\n" + kept if kept else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
