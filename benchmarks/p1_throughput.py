"""P1: CoTRR scoring throughput on 100-candidate queries (CPU) on each scoring path, against GEMM
peaks measured in the same run, and the ranking-equality gate of every path on real data.

    python benchmarks/p1_throughput.py --threads 2 --out benchmarks/results/p1_throughput.json

Paths: ``module`` (the network's own forward in eval mode: the scoring path before the fused one),
``fused-fp32`` (the fused arithmetic in eager torch, ``score_engine: torch``), ``ort-fp32`` (the same
arithmetic as an ONNX Runtime graph), ``score`` (``CoTRR.score`` with default params: ``ort-fp32``,
then the queries with a near-tie among their first 10 positions scored again by the module forward)
and ``fused-bf16`` (``score_precision: bf16``, opt-in).
The speed model is CoTRR's library default (d_model 256, 2 token layers, 8 heads, FFN x2, list
context) over a seed-like layout: image 512-d (CLIP), text 384-d (MiniLM), meta 16-d, with random
weights (speed does not depend on the weights). FLOPs are counted by ``torch.utils.flop_counter`` on
the module's training-path operators (the eval forward's fused multi-head-attention kernel is
invisible to the counter, which made earlier counts half the real work), so GFLOP/s is achieved
arithmetic, and the share of the fp32 (and bf16) 1024^3 GEMM peak measured before and after — torch's
(``torch.mm``) and ONNX Runtime's (a one-MatMul graph), since the two libraries' GEMM kernels differ.

Ranking equality (``--equality``, on by default): CoTRR and V2 with the shipped configs'
architecture (configs/mq2008_cotrr.yaml, mq2008_fusion.yaml) are trained for ``--equality-epochs``
on MQ2008 Fold1 and on the ML-100K reranking task, and every query of train+valid+test is scored on
each path. A path passes when its top-10 order equals the module's on >= 99.9% of queries and
nDCG@10 agrees to 1e-6; the default path must pass (exit 1 otherwise), a faster path that fails
stays opt-in. ``--equality-runs DIR ...`` checks already-trained runs instead (their data named by
``--equality-data``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the ML-100K task helper
from common import REPO, command_line, gemm_peak, stamp  # noqa: E402
from mmrank.data.model import RankingSet, concat_ranking_sets  # noqa: E402
from mmrank.models.cotrr import CoTRR  # noqa: E402
from mmrank.models.distill import LinearStudent, latency_per_100  # noqa: E402
from mmrank.models.fused_scoring import near_tie_queries, ranking_agreement  # noqa: E402

DIMS = {"image": 512, "text": 384, "meta": 16}
PATHS = ("module", "fused-fp32", "ort-fp32", "score", "fused-bf16")
DEFAULT_PATH = "score"  # what CoTRR.score runs with the default params
GATE = {"share_identical": 0.999, "max_abs_ndcg_diff": 1e-6}


def make_set(n_queries: int, per_query: int = 100, seed: int = 0) -> RankingSet:
    """``n_queries`` queries of ``per_query`` candidates with the seed-like layout and random features."""
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    return RankingSet(query_ids=[f"q{i}" for i in range(n_queries)], offsets=np.arange(0, n + 1, per_query),
                      candidate_ids=[f"c{i}" for i in range(n)], labels=rng.integers(0, 3, n),
                      features={k: rng.normal(size=(n, d)).astype(np.float32) for k, d in DIMS.items()})


def scorer(model: CoTRR, path: str):
    """``rset -> scores`` of one scoring path."""
    if path == "module":
        return model.score_module
    if path == "score":
        return model.score
    engine, precision = ("onnxruntime", "fp32") if path == "ort-fp32" else ("torch", path.split("-")[1])
    return lambda rset: model.fused_scorer(precision, engine).score(model.input_matrix(rset), rset.offsets)


def _peak_kind(path: str) -> str:
    """Which GEMM peak a path's arithmetic runs against."""
    return "bf16" if path.endswith("bf16") else "ort_fp32" if path in ("ort-fp32", "score") else "fp32"


def ort_gemm_peak(n: int = 1024, repeats: int = 20) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n``-cube fp32 MatMul in ONNX Runtime (MLAS kernels) at
    torch's current thread count."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                opts, providers=["CPUExecutionProvider"])
    feeds = {k: np.random.default_rng(0).normal(size=(n, n)).astype(np.float32) for k in "ab"}
    sess.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def counted_flops(model: CoTRR, rset: RankingSet) -> int:
    """FLOPs of the module's forward on ``rset``, counted on the training-path operators (dropout
    set to 0, no gradient), which the flop counter sees entirely."""
    net = model.network_
    saved = {m: m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)}
    batch = model.padded_queries(rset).batch(np.arange(rset.n_queries))
    net.train()
    try:
        for m in saved:
            m.p = 0.0
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(batch["x"], batch["mask"])
    finally:
        for m, p in saved.items():
            m.p = p
        net.eval()
    return counter.get_total_flops()


def throughput(model: CoTRR, data: RankingSet, args, flops_per_candidate: float, peaks: dict) -> dict:
    """Batch candidates/s (best and median of ``--repeats``) and single-query latency per path,
    the paths interleaved round by round so that a busy neighbour hurts them alike."""
    # every query of the batch, one at a time: the near-tie check of `score` sends about 1 random query
    # in 60 to the module forward, so a sample of few distinct queries would over- or under-weight it
    singles = [data.subset([i]) for i in range(data.n_queries)]
    batch_s = {p: [] for p in PATHS}
    query_ms = {p: [] for p in PATHS}
    for p in PATHS:  # warm-up (and the bf16 weight copy)
        scorer(model, p)(data)
    for _ in range(args.repeats):
        for p in PATHS:
            score = scorer(model, p)
            t0 = time.perf_counter()
            score(data)
            batch_s[p].append(time.perf_counter() - t0)
            for q in singles:
                t0 = time.perf_counter()
                score(q)
                query_ms[p].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for p in PATHS:
        best = min(batch_s[p])
        gflops = flops_per_candidate * data.n_candidates / best / 1e9
        peak = peaks[_peak_kind(p)]
        out[p] = {
            "candidates_per_s": data.n_candidates / best,
            "candidates_per_s_median": data.n_candidates / float(np.median(batch_s[p])),
            "per_query_100_ms": {"median": float(np.median(query_ms[p])), "p95": float(np.percentile(query_ms[p], 95)),
                                 "calls": len(query_ms[p])},
            "achieved_gflops": gflops,
            "share_of_fp32_gemm_peak": gflops / peaks["fp32"],
            "share_of_own_gemm_peak": gflops / peak,
        }
    return out


# -- ranking equality -------------------------------------------------------------------------
def equality_data(data_dir: Path, ml100k_task: str | None) -> dict[str, list[RankingSet]]:
    """``{name: [train, valid, test]}``: MQ2008 Fold1 and the ML-100K reranking task (the real one
    built by `mmrank data features` when ``ml100k_task`` names its rerank folder, else rebuilt from
    the reference text embeddings with the poster modality masked)."""
    from mmrank.data.formats import load_ranking
    from rerank_support import ml100k_task_from_reference_embeddings

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["sh", str(data_dir / "ltr" / "make_folds.sh"), tmp], check=True, capture_output=True)
        fold = Path(tmp) / "MQ2008" / "Fold1"
        out["MQ2008 Fold1"] = [load_ranking(fold / f"{p}.txt", "libsvm", n_features=46) for p in ("train", "vali", "test")]
    if ml100k_task:
        out["ML-100K task"] = [load_ranking(Path(ml100k_task) / f"{p}.parquet") for p in ("train", "valid", "test")]
    else:
        sets = ml100k_task_from_reference_embeddings(data_dir)
        out["ML-100K task (reference text, posters masked)"] = [sets[p] for p in ("train", "valid", "test")]
    return out


def config_model(config: str, epochs: int):
    """An unfitted model and train settings of ``configs/<config>.yaml`` with ``epochs`` epochs."""
    import yaml

    from mmrank.models.registry import build_ranker

    c = yaml.safe_load((REPO / "configs" / f"{config}.yaml").read_text())
    settings = {**c["train"], "max_epochs": epochs, "patience": epochs, "progress": False}
    return build_ranker(c["model"]["kind"], c["model"]["params"]), settings


def agreement_rows(model, rset: RankingSet, name: str) -> list[dict]:
    """The gate on every fast path of ``model`` against its module forward on ``rset``."""
    reference = model.score_module(rset)
    rows = []
    for p in PATHS[1:]:
        r = ranking_agreement(reference, scorer(model, p)(rset), rset.offsets, rset.labels, k=10)
        r.update(data=name, model=f"{model.kind} d_model {model.params.d_model}", path=p,
                 passes=r["share_identical"] >= GATE["share_identical"] and r["max_abs_ndcg_diff"] <= GATE["max_abs_ndcg_diff"])
        if p == "score":  # how many queries the near-tie check sent to the module forward
            r["rescored_queries"] = int(len(near_tie_queries(scorer(model, "ort-fp32")(rset), rset.offsets,
                                                             model.params.score_tie_depth, model.params.score_tie_tolerance)))
        rows.append(r)
    return rows


def ranking_equality(args) -> list[dict]:
    """Train (or load) the check models and apply the gate to every fast path."""
    from mmrank.runs import load_model

    data = equality_data(Path(args.data_dir), args.ml100k_task)
    rows = []
    if args.equality_runs:
        for run, name in zip(args.equality_runs, args.equality_data):
            key = next(k for k in data if k.startswith(name))
            rows += agreement_rows(load_model(run), concat_ranking_sets(data[key]), key)
        return rows
    for name, (train, valid, test) in data.items():
        for config in ("mq2008_cotrr", "mq2008_fusion"):
            torch.manual_seed(0)
            model, settings = config_model(config, args.equality_epochs)
            model.fit(train, valid, settings)
            rows += agreement_rows(model, concat_ranking_sets([train, valid, test]), name)
            print(json.dumps(rows[-(len(PATHS) - 1):]), flush=True)
    return rows


def markdown(result: dict) -> str:
    """The printed report: a throughput table and the ranking-equality table."""
    peaks = result["gemm_peak_gflops"]
    lines = [f"GEMM peak GFLOP/s (1024^3, {result['threads']} threads): torch fp32 {peaks['fp32_before']:.1f} / "
             f"{peaks['fp32_after']:.1f}, torch bf16 {peaks['bf16_before']:.1f} / {peaks['bf16_after']:.1f}, "
             f"ONNX Runtime fp32 {peaks['ort_fp32_before']:.1f} / {peaks['ort_fp32_after']:.1f} (before / after); "
             f"{result['flops_per_candidate'] / 1e6:.2f} MFLOP per candidate; 22,000 candidates/s needs "
             f"{result['goal_22k_gflops']:.1f} GFLOP/s", "",
             "| path | candidates/s (best / median) | per 100-candidate query median / p95 | GFLOP/s | share of torch fp32 GEMM peak | share of its own library's GEMM peak | x module |",
             "|---|---|---|---|---|---|---|"]
    base = result["paths"]["module"]["candidates_per_s"]
    for p, r in result["paths"].items():
        q = r["per_query_100_ms"]
        lines.append(f"| {p} | {r['candidates_per_s']:,.0f} / {r['candidates_per_s_median']:,.0f} | {q['median']:.2f} / {q['p95']:.2f} ms | "
                     f"{r['achieved_gflops']:.1f} | {r['share_of_fp32_gemm_peak']:.0%} | {r['share_of_own_gemm_peak']:.0%} | "
                     f"{r['candidates_per_s'] / base:.2f} |")
    if result.get("ranking_equality"):
        lines += ["", "| data | model | path | queries | top-10 identical | max abs ΔnDCG@10 | gate (>= 99.9%, <= 1e-6) |",
                  "|---|---|---|---|---|---|---|"]
        for r in result["ranking_equality"]:
            lines.append(f"| {r['data']} | {r['model']} | {r['path']} | {r['queries']} | {r['share_identical']:.2%} | "
                         f"{r['max_abs_ndcg_diff']:.2e} | {'pass' if r['passes'] else 'FAIL'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-list-context", action="store_true", help="the speed model without the list-context block")
    ap.add_argument("--equality", action=argparse.BooleanOptionalAction, default=True,
                    help="run the ranking-equality gate on real data (minutes of training; --no-equality skips it)")
    ap.add_argument("--equality-epochs", type=int, default=3)
    ap.add_argument("--equality-runs", nargs="*", help="trained run folders to check instead of training")
    ap.add_argument("--equality-data", nargs="*", default=[], help="per run: 'MQ2008' or 'ML-100K'")
    ap.add_argument("--data-dir", default=os.environ.get("MMRANK_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--ml100k-task", help="the rerank folder written by `mmrank data features --dataset ml100k`")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = make_set(args.queries)
    model = CoTRR(list_context=not args.no_list_context).prepare(data)
    model.network_.eval()
    flops = counted_flops(model, data.subset([0])) / 100

    peaks = {"fp32_before": gemm_peak(), "bf16_before": gemm_peak(dtype="bfloat16"), "ort_fp32_before": ort_gemm_peak()}
    paths = throughput(model, data, args, flops, {"fp32": peaks["fp32_before"], "bf16": peaks["bf16_before"],
                                                  "ort_fp32": peaks["ort_fp32_before"]})
    peaks.update(fp32_after=gemm_peak(), bf16_after=gemm_peak(dtype="bfloat16"), ort_fp32_after=ort_gemm_peak())
    best = {k: max(peaks[f"{k}_before"], peaks[f"{k}_after"]) for k in ("fp32", "bf16", "ort_fp32")}
    for p, r in paths.items():  # shares against the better of the two peak measurements
        r["share_of_fp32_gemm_peak"] = r["achieved_gflops"] / best["fp32"]
        r["share_of_own_gemm_peak"] = r["achieved_gflops"] / best[_peak_kind(p)]
    # what the goal needs in arithmetic: 22,000 candidates/s at this model's FLOPs, against each peak
    goal_gflops = 22_000 * flops / 1e9
    student = LinearStudent().fit(data, teacher_scores=model.score(data))
    result = {
        "command": command_line(), "stamp": stamp(), "threads": args.threads, "list_context": not args.no_list_context,
        "parameters": model.n_parameters(), "batch": {"queries": args.queries, "candidates": data.n_candidates},
        "flops_per_candidate": flops, "gemm_peak_gflops": peaks, "paths": paths,
        "goal_22k_gflops": goal_gflops, "goal_22k_share_of_peak": {k: goal_gflops / v for k, v in best.items()},
        "linear_student_per_100": latency_per_100(student, data, repeats=200),
    }
    if args.equality:
        result["ranking_equality"] = ranking_equality(args)
        result["default_path_passes"] = all(r["passes"] for r in result["ranking_equality"] if r["path"] == DEFAULT_PATH)
    print(json.dumps(result, indent=1))
    print(markdown(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.equality and not result["default_path_passes"]:
        sys.exit(f"the default scoring path ({DEFAULT_PATH}) failed the ranking-equality gate")


if __name__ == "__main__":
    main()
