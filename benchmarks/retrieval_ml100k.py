"""First-stage retrieval on ML-100K, and retrieve → rerank, in one run:

1. per item embedding (text MiniLM, EfficientNet poster, both) and index kind (exact flat, HNSW,
   IVF): build time, query latency, recall@K of the first stage on the test queries, end-to-end
   nDCG@10 of the first-stage order (all targets count), and the ANN's overlap with exact search
   at the same K;
2. retrieve → rerank: LambdaMART trained on retrieved train candidates (exact and HNSW first
   stage), and the task's own LambdaMART (trained on sampled negatives) applied to the retrieved
   lists, with paired bootstrap CIs over the test users against the first-stage order;
3. scale: exact vs HNSW vs IVF on a 200,000-item gallery made from the real text vectors (each
   item a real vector plus Gaussian noise), queried by the real users' history vectors.

    python benchmarks/retrieval_ml100k.py --features out/ml100k --data-dir ../shared/data   # on an idle box: it times with both cores

``--features`` is the OUT folder of ``mmrank data features --dataset ml100k``. Writes
benchmarks/results/retrieval.md and re-assembles BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import REPO, command_line, median_seconds, stamp, write_section
from mmrank.data.formats import load_ranking
from mmrank.data.io_recbole import read_recbole
from mmrank.data.ml100k_items import load_item_features
from mmrank.models.baselines import LambdaMART
from mmrank.retrieval.evaluate import end_to_end_ndcg, list_order_scores, overlap_at_k, recall_at_k
from mmrank.retrieval.index import IndexSettings, build_index
from mmrank.retrieval.ml100k import ml100k_candidates, read_task_info, task_queries
from mmrank.retrieval.vectors import history_vectors, item_vectors
from mmrank.stats import paired_bootstrap_ci

EMBEDDINGS = {"text": ["text"], "image_effnet": ["image_effnet"], "text+image_effnet": ["text", "image_effnet"]}
KINDS = ("flat", "hnsw", "ivf")
K = 100
# Reranker inputs: small item modalities + popularity + the first-stage score, small query features.
CAND = ["meta", "image", "pop", "first_stage"]
QF = ["meta", "image", "history"]


def slim(rset, modalities=CAND):
    return replace(rset.with_features({m: rset.features[m] for m in modalities}),
                   query_features={m: rset.query_features[m] for m in QF})


def first_stage_table(items, inter, task_dir):
    rows, runs = [], {}
    info = read_task_info(task_dir)
    for name, mods in EMBEDDINGS.items():
        vectors = item_vectors(items, mods)
        exact = None
        for kind in KINDS:
            t0 = time.perf_counter()
            index = build_index(vectors, items.item_ids, IndexSettings(kind=kind))
            build_s = time.perf_counter() - t0
            queries = task_queries(index, inter, info, "test")
            qv = history_vectors(index.vectors, queries.histories)
            one = median_seconds(lambda: index.search(qv[:1], K), 50, warmup=True)
            _, top = index.search(qv, K)
            exact = top if kind == "flat" else exact
            rset, targets = ml100k_candidates(index, task_dir, inter, items, "test", K)
            runs[(name, kind)] = (index, rset, targets)
            recall = {k: np.nanmean(recall_at_k(rset, targets, k)) for k in (10, 50, 100)}
            ndcg = end_to_end_ndcg(rset, list_order_scores(rset), targets)
            rows.append((name, kind, index.dim, build_s, one, recall, ndcg.mean(), overlap_at_k(top, exact, K).mean(),
                         index.settings))
            print(f"{name} {kind}: recall@100 {recall[100]:.4f} nDCG@10 {ndcg.mean():.4f}", flush=True)
    return rows, runs


def rerank_table(items, inter, task_dir, runs):
    """LambdaMART on retrieved train candidates vs the first-stage order, exact and HNSW."""
    out = []
    task_model = LambdaMART(seed=0, num_threads=int(os.environ.get("OMP_NUM_THREADS", 1)), modalities=CAND[:-1])
    task_model.fit(slim(load_ranking(task_dir / "train.parquet"), CAND[:-1]), slim(load_ranking(task_dir / "valid.parquet"), CAND[:-1]))
    for kind in ("flat", "hnsw"):
        index, test, targets = runs[("text+image_effnet", kind)]
        train, _ = ml100k_candidates(index, task_dir, inter, items, "train", K)
        valid, _ = ml100k_candidates(index, task_dir, inter, items, "valid", K)
        t0 = time.perf_counter()
        model = LambdaMART(seed=0, num_threads=int(os.environ.get("OMP_NUM_THREADS", 1))).fit(slim(train), slim(valid))
        fit_s = time.perf_counter() - t0
        first = end_to_end_ndcg(test, list_order_scores(test), targets)
        systems = {
            "first stage order": first,
            "popularity (log1p count before the cut)": end_to_end_ndcg(test, test.features["pop"][:, 0], targets),
            "LambdaMART trained on retrieved candidates": end_to_end_ndcg(test, model.score(slim(test)), targets),
            "LambdaMART of the task (sampled negatives)": end_to_end_ndcg(test, task_model.score(slim(test)), targets),
        }
        for name, values in systems.items():
            ci = None if name == "first stage order" else paired_bootstrap_ci(values, first, seed=0)
            out.append((kind, name, values.mean(), ci, fit_s if "retrieved" in name else None))
    return out


def scale_table(items, inter, task_dir, n_items=200_000, n_queries=1_000, noise=0.05):
    """Exact vs ANN on a large gallery made of the real text vectors plus noise."""
    rng = np.random.default_rng(0)
    base = item_vectors(items, ["text"])
    gallery = base[rng.integers(0, len(base), n_items)] + rng.normal(0, noise, (n_items, base.shape[1])).astype(np.float32)
    ids = np.arange(n_items).astype(str)
    info = read_task_info(task_dir)
    small = build_index(base, items.item_ids, IndexSettings(kind="flat"))
    queries = np.concatenate([history_vectors(small.vectors, task_queries(small, inter, info, s).histories)
                              for s in ("train", "valid", "test")])[:n_queries]
    rows, exact = [], None
    for kind, settings in (("flat", IndexSettings(kind="flat")), ("hnsw", IndexSettings(kind="hnsw")),
                           ("hnsw ef 256", IndexSettings(kind="hnsw", ef_search=256)), ("ivf", IndexSettings(kind="ivf")),
                           ("ivf nprobe 8", IndexSettings(kind="ivf", nprobe=8))):
        t0 = time.perf_counter()
        index = build_index(gallery, ids, settings)
        build_s = time.perf_counter() - t0
        one = median_seconds(lambda: index.search(queries[:1], K), 30, warmup=True)
        t0 = time.perf_counter()
        _, top = index.search(queries, K)
        batch_s = time.perf_counter() - t0
        exact = top if kind == "flat" else exact
        rows.append((kind, build_s, one, n_queries / batch_s, overlap_at_k(top, exact, K).mean(), index.settings))
        print(f"scale {kind}: build {build_s:.1f}s, 1 query {one * 1e3:.2f} ms", flush=True)
    return rows


def test_users(args) -> int:
    return read_task_info(Path(args.features) / "rerank")["counts"]["test"]["queries"]


def task_words(args) -> str:
    """The task's test queries and cut protocol in words, from its task.json (so the text cannot go stale)."""
    info = read_task_info(Path(args.features) / "rerank")
    n = info["counts"]["test"]["queries"]
    if info.get("protocol") == "per_user":
        c = info["cuts"]["test"]
        return (f"the {n:,} test users of the ML-100K reranking task (per-user cuts: each user's own test window, "
                f"cuts from {c['earliest']['utc'][:10]} to {c['latest']['utc'][:10]}, median {c['median']['utc'][:10]})")
    cut = (info.get("cuts") or {}).get("test", {}).get("utc", "?")[:10]
    return f"the {n:,} test users of the ML-100K reranking task (global cut {cut})"


def report(first_rows, rerank_rows, scale_rows, args, load_before, load_after, seconds) -> str:
    lines = [
        "## First-stage retrieval on ML-100K: recall@K, retrieve → rerank, ANN vs exact (issue 17)", "",
        f"Command: `{command_line()}` with both cores to itself — {stamp()}; {seconds:.0f} s in all. "
        f"Load average before / after: {load_before} / {load_after} (1/5/15 min; 2 cores, both slots held).", "",
        f"Queries: {task_words(args)}; each user's history = every "
        "rating before the query's cut, query vector = mean of its item vectors; items rated before the cut are excluded; "
        f"K = {K} of 1,682 items. Targets = every rating in the test window. *nDCG@10 (all targets)* ranks the "
        "targets the first stage missed below every candidate, so a first stage is charged for what it loses "
        "(`mmrank.retrieval.evaluate`). Item vectors: each modality centred, L2-normalised, equal weights. "
        "Timings: median of 50 single-query searches (2 faiss threads).", "",
        "| embedding | index | dim | build | 1 query | recall@10 | recall@50 | recall@100 | nDCG@10 (all targets) | overlap with exact @100 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, kind, dim, build_s, one, recall, ndcg, overlap, _ in first_rows:
        lines.append(f"| {name} | {kind} | {dim} | {build_s * 1e3:.1f} ms | {one * 1e3:.3f} ms | {recall[10]:.4f} | "
                     f"{recall[50]:.4f} | {recall[100]:.4f} | {ndcg:.4f} | {overlap:.3f} |")
    lines += ["", "On 1,682 items exact search is as fast as any ANN and exact: `--kind auto` builds the flat index up to "
              "50,000 items (and IVF above, from the scale table below). Content embeddings alone retrieve few of the movies users rate next (MovieLens is "
              "dominated by popularity, which these embeddings do not carry); the reranker below brings popularity back.", "",
              "### Retrieve → rerank (text+image_effnet first stage, K = 100)", "",
              f"Rerankers: LightGBM LambdaMART (seed 0, early stopping on validation nDCG@10) on `{', '.join(CAND)}` + "
              f"query features `{', '.join(QF)}`; *trained on retrieved candidates* = `mmrank retrieve` of the train and "
              "valid users (labels = ratings in their windows); *of the task* = trained on the task's own train split "
              "(targets + 20 popularity-sampled negatives), without `first_stage`. CI: paired bootstrap (BCa) over the "
              f"{test_users(args)} test users, against the first-stage order.", "",
              "| first stage | ranking | nDCG@10 (all targets) | difference vs first stage, 95% CI | fit |", "|---|---|---|---|---|"]
    for kind, name, mean, ci, fit_s in rerank_rows:
        diff = "" if ci is None else f"{ci.mean:+.4f} [{ci.low:+.4f}, {ci.high:+.4f}]"
        lines.append(f"| {kind} | {name} | {mean:.4f} | {diff} | {'' if fit_s is None else f'{fit_s:.1f} s'} |")
    lines += ["", "### Exact vs ANN at scale (200,000 items × 384 dims, 1,000 real user queries, K = 100)", "",
              "Gallery: the 1,682 real text vectors (centred, normalised) each repeated with Gaussian noise "
              "(σ 0.05 per dimension) — synthetic items around real ones, to time the indexes at a size where "
              "exact search costs something. Queries: real users' history vectors (train/valid/test users).", "",
              "| index | settings | build | 1 query | batched queries/s | overlap with exact @100 |", "|---|---|---|---|---|---|"]
    for kind, build_s, one, qps, overlap, s in scale_rows:
        settings = "" if s.kind == "flat" else (f"M {s.hnsw_m}, efSearch {s.ef_search}" if s.kind == "hnsw"
                                                else f"nlist {s.nlist}, nprobe {s.nprobe}")
        lines.append(f"| {kind} | {settings} | {build_s:.1f} s | {one * 1e3:.2f} ms | {qps:,.0f} | {overlap:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True, help="OUT of `mmrank data features --dataset ml100k`")
    ap.add_argument("--data-dir", default=os.environ.get("MMRANK_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--scale-items", type=int, default=200_000)
    args = ap.parse_args()
    load_before = "%.2f %.2f %.2f" % os.getloadavg()
    t0 = time.perf_counter()
    items, _ = load_item_features(args.features)
    inter, _, _ = read_recbole(Path(args.data_dir) / "ml-100k")
    task_dir = Path(args.features) / "rerank"
    first_rows, runs = first_stage_table(items, inter, task_dir)
    rerank_rows = rerank_table(items, inter, task_dir, runs)
    scale_rows = scale_table(items, inter, task_dir, args.scale_items)
    load_after = "%.2f %.2f %.2f" % os.getloadavg()
    write_section("retrieval", report(first_rows, rerank_rows, scale_rows, args, load_before, load_after,
                                      time.perf_counter() - t0))


if __name__ == "__main__":
    main()
