"""Generated rerank data with a known answer, shared by the reranker tests."""

from __future__ import annotations

import numpy as np

from mmrank.data.model import RankingSet


def known_function_set(n_queries: int, per_query: int = 20, seed: int = 0) -> RankingSet:
    """Labels are a known function of ONE modality: grade = [image·w > 0] + [image·w > 1].
    The text modality and the query text embedding are noise with respect to the labels."""
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    image = rng.normal(size=(n, 8))
    signal = image @ np.array([1.0, -0.5, 0.5, 0, 0, 0, 0, 0])
    labels = (signal > 0).astype(int) + (signal > 1).astype(int)
    return RankingSet(
        query_ids=[f"q{seed}-{i}" for i in range(n_queries)],
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"c{j}" for j in range(n)],
        labels=labels,
        features={"image": image, "text": rng.normal(size=(n, 6)), "meta": rng.normal(size=(n, 3))},
        query_features={"text": rng.normal(size=(n_queries, 6))},
    )


def ml100k_task_from_reference_embeddings(data_dir) -> dict[str, RankingSet]:
    """The ML-100K reranking task (``mmrank.data.ml100k_rerank_task``) built without running an
    encoder: text = the reference MiniLM embeddings shipped with the data (row i = movie i + 1),
    meta from the item table, and the poster modality masked (zero rows, mask 0) — the handcrafted
    poster features would take minutes to compute. Real ratings, real time split, real texts."""
    from pathlib import Path

    from mmrank.data.io_recbole import read_recbole
    from mmrank.data.ml100k_items import meta_features, read_items_table
    from mmrank.data.ml100k_rerank_task import build_rerank_task
    from mmrank.data.model import ItemFeatures

    mm = Path(data_dir) / "ml-100k-mm"
    table, _ = read_items_table(mm)
    ids = [str(i) for i in table.index]
    text = np.load(mm / "text_feat_minilm_l6.npy")[[int(i) - 1 for i in ids]]
    no_poster = np.array([not (mm / "posters" / f"{i}.jpg").exists() for i in ids])
    meta, _ = meta_features(table, no_poster)
    items = ItemFeatures(item_ids=ids, features={"text": text, "image": np.zeros((len(ids), 23), np.float32), "meta": meta},
                         masks={"image": np.zeros(len(ids), dtype=bool)})
    inter, _, _ = read_recbole(Path(data_dir) / "ml-100k")
    sets, _ = build_rerank_task(inter, items)
    return sets
