"""`mmrank index build|evaluate` and `mmrank retrieve`: first-stage retrieval (docs/retrieval.md)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console

from mmrank.cli.app import app, user_errors
from mmrank.errors import ConfigError, DataError

index_app = typer.Typer(help="Build a nearest-neighbour index over item embeddings; evaluate retrieved lists.",
                        no_args_is_help=True)
app.add_typer(index_app, name="index")


def _names(values: Optional[List[str]]) -> list[str]:
    return [n for v in values or [] for n in v.split(",") if n]


@index_app.command("build")
def build(
    items: Path = typer.Option(..., "--items", help="Item features folder (OUT of `mmrank data features`: items.safetensors + items.json)."),
    out: Path = typer.Option(..., "--out", help="Index folder to write."),
    modality: List[str] = typer.Option(["text"], "--modality", help="Item modality to embed (repeatable or comma-separated): text, image_effnet, meta, ..."),
    weight: Optional[List[float]] = typer.Option(None, "--weight", help="Weight of each --modality in the similarity (default equal)."),
    kind: str = typer.Option("auto", "--kind", help="flat (exact), hnsw, ivf, or auto (flat up to 50,000 items, else ivf)."),
    hnsw_m: int = typer.Option(32, "--hnsw-m", help="HNSW: links per node."),
    ef_search: int = typer.Option(64, "--ef-search", help="HNSW: candidates kept while searching."),
    nlist: Optional[int] = typer.Option(None, "--nlist", help="IVF: number of cells (default ~4 sqrt(n))."),
    nprobe: Optional[int] = typer.Option(None, "--nprobe", help="IVF: cells scanned per query (default nlist/8)."),
    no_center: bool = typer.Option(False, "--no-center", help="Do not subtract each modality's mean before normalising."),
) -> None:
    """Build a faiss index over item embeddings (cosine similarity).

    Example: mmrank index build --items out/ml100k --modality text,image_effnet --kind auto --out out/index
    """
    from mmrank.data.ml100k_items import load_item_features
    from mmrank.retrieval.index import IndexSettings, build_index
    from mmrank.retrieval.vectors import item_vectors

    with user_errors():
        settings = IndexSettings(kind=kind, hnsw_m=hnsw_m, ef_search=ef_search, nlist=nlist, nprobe=nprobe)
        settings.check()
        features, _ = load_item_features(items)
        names = _names(modality)
        vectors = item_vectors(features, names, weight or None, center=not no_center)
        t0 = time.perf_counter()
        index = build_index(vectors, features.item_ids, settings,
                            info={"items": str(items), "modalities": names, "weights": weight or None, "center": not no_center})
        seconds = time.perf_counter() - t0
        index.save(out)
    Console(soft_wrap=True).print(f"{index.kind} index over {len(index)} items × {index.dim} dims "
                                  f"({'+'.join(names)}), built in {seconds:.2f} s → {out}", highlight=False)


def _first_stage_report(rset, targets, k: int) -> str:
    from mmrank.retrieval.evaluate import end_to_end_ndcg, list_order_scores, recall_at_k

    recall = recall_at_k(rset, targets)
    ndcg = end_to_end_ndcg(rset, list_order_scores(rset), targets)
    return (f"first stage: recall@{k} {np.nanmean(recall):.4f} over {int(np.sum(np.isfinite(recall)))} queries "
            f"with targets, nDCG@10 (all targets) {ndcg.mean():.4f}")


@app.command("retrieve")
def retrieve_cmd(
    index_dir: Path = typer.Option(..., "--index", help="Index folder from `mmrank index build`."),
    out: Path = typer.Option(..., "--out", help="Candidate file to write (.jsonl or .parquet); OUT.targets.json beside it when targets are known."),
    k: int = typer.Option(100, "--k", help="Candidates per query."),
    task: Optional[Path] = typer.Option(None, "--task", help="ML-100K: OUT of `mmrank data features` (queries of its reranking task)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="ML-100K: folder holding ml-100k/ (the ratings)."),
    split: str = typer.Option("test", "--split", help="ML-100K: train, valid or test."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="JSONL of queries: {query_id, embedding | history, exclude?, targets?}."),
    items: Optional[Path] = typer.Option(None, "--items", help="Item features folder whose modalities are attached to the candidates."),
    modalities: Optional[List[str]] = typer.Option(None, "--modalities", help="Item modalities to attach (default: all of --items / the task's)."),
    query_features: Optional[List[str]] = typer.Option(None, "--query-features", help="ML-100K: query features to keep (default all)."),
    recency_decay: float = typer.Option(1.0, "--recency-decay", help="History queries: weight of the i-th most recent item is decay^i."),
) -> None:
    """Retrieve the top-K items per query into a candidate file the reranker reads.

    Queries are a query embedding or a user's history (the ML-100K task's users with --task); the
    first-stage similarity is the candidates' baseline score and their first_stage modality.

    Example: mmrank retrieve --index out/index --task out/ml100k --data-dir ../shared/data --split test --out out/retrieved/test.jsonl
    Example: mmrank retrieve --index out/index --queries users.jsonl --items out/ml100k --k 50 --out candidates.parquet
    """
    from mmrank.atomic_io import atomic_write_text
    from mmrank.data.formats import write_ranking
    from mmrank.retrieval.index import load_index

    with user_errors():
        if k < 1:
            raise ConfigError(f"--k {k} must be at least 1")
        if (task is None) == (queries is None):
            raise ConfigError("give either --task (with --data-dir) or --queries")
        index = load_index(index_dir)
        t0 = time.perf_counter()
        if task is not None:
            rset, targets = _task_candidates(index, task, data_dir, split, k, recency_decay)
        else:
            rset, targets = _file_candidates(index, queries, items, k, recency_decay)
        keep_mods = _names(modalities)
        if keep_mods:
            rset = rset.with_features({m: rset.features[m] for m in ["first_stage", *keep_mods] if _has(rset, m, "modality")})
        keep_qf = _names(query_features)
        if keep_qf:
            rset = replace(rset, query_features={m: rset.query_features[m] for m in keep_qf if _has(rset, m, "query feature", True)})
        write_ranking(rset, out)
        if targets is not None:
            atomic_write_text(str(out) + ".targets.json", json.dumps(dict(zip(rset.query_ids.tolist(), targets))) + "\n")
    console = Console(soft_wrap=True)
    console.print(f"{rset.n_queries} queries × up to {k} candidates from a {index.kind} index in "
                  f"{time.perf_counter() - t0:.2f} s → {out}", highlight=False)
    if targets is not None:
        console.print(_first_stage_report(rset, targets, k), highlight=False)


def _has(rset, name: str, what: str, query: bool = False) -> bool:
    have = rset.query_features if query else rset.features
    if name not in have:
        raise ConfigError(f"{what} {name!r} is not available — choose from {sorted(have)}")
    return True


def _task_candidates(index, task: Path, data_dir: Optional[Path], split: str, k: int, decay: float):
    from mmrank.data.io_recbole import read_recbole
    from mmrank.data.ml100k_items import load_item_features
    from mmrank.retrieval.ml100k import ml100k_candidates

    if data_dir is None:
        raise ConfigError("--task needs --data-dir (the folder holding ml-100k/ with the ratings)")
    features, _ = load_item_features(task)
    inter, _, _ = read_recbole(Path(data_dir) / "ml-100k")
    return ml100k_candidates(index, task / "rerank", inter, features, split, k, decay)


def _file_candidates(index, queries: Path, items: Optional[Path], k: int, decay: float):
    from mmrank.data.ml100k_items import load_item_features
    from mmrank.retrieval.candidates import candidate_set, retrieve
    from mmrank.retrieval.queries_file import read_query_file

    parsed = read_query_file(queries, index, decay)
    found = retrieve(index, parsed.vectors, k, parsed.query_ids, parsed.exclude)
    features = load_item_features(items)[0] if items is not None else None
    rset = candidate_set(index, found, targets=parsed.targets, items=features,
                         modalities=sorted(features.features) if features is not None else ())
    return rset, parsed.targets


@index_app.command("evaluate")
def evaluate_cmd(
    ranked: Path = typer.Option(..., "--ranked", help="Ranked candidate file: the order of its candidates is the ranking (a retrieve output, or a rerank output)."),
    targets: Path = typer.Option(..., "--targets", help="OUT.targets.json written by `mmrank retrieve`."),
    k: int = typer.Option(10, "--k", help="nDCG cut-off."),
) -> None:
    """nDCG@k of a ranked candidate file against ALL of each query's targets (the ones the first stage
    missed count as ranked last), and the recall of its candidate lists.

    Example: mmrank index evaluate --ranked out/reranked.jsonl --targets out/retrieved/test.jsonl.targets.json
    """
    from mmrank.data.formats import load_ranking
    from mmrank.retrieval.evaluate import end_to_end_ndcg, list_order_scores, recall_at_k

    with user_errors():
        rset = load_ranking(ranked, label_range=None)
        try:
            table = json.loads(targets.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the targets ({e})", path=targets, hint="pass OUT.targets.json of `mmrank retrieve`") from None
        missing = [q for q in rset.query_ids if q not in table]
        if missing:
            raise DataError(f"query {missing[0]!r} has no targets", path=targets, hint="use the targets of the same retrieve run")
        per_query = [table[q] for q in rset.query_ids]
        ndcg = end_to_end_ndcg(rset, list_order_scores(rset), per_query, k)
        recall = recall_at_k(rset, per_query)
    Console(soft_wrap=True).print(f"{rset.n_queries} queries: nDCG@{k} (all targets) {ndcg.mean():.4f}, recall of the "
                                  f"lists {np.nanmean(recall):.4f}", highlight=False)
