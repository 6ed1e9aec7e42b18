"""From query vectors to candidate lists the reranker reads.

``retrieve`` searches the index for each query, drops the items a query excludes (what the user
already saw), and keeps the top ``k``; ``candidate_set`` turns that into a RankingSet whose
``baseline_scores`` are the first-stage similarities, with a 1-d ``first_stage`` modality
holding the same score (so a reranker can learn from it) and the item modalities the caller
asks for. Written with ``mmrank.data.formats.write_ranking`` it is a JSONL or Parquet file
``mmrank rerank`` / ``mmrank train`` read as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mmrank.data.model import ItemFeatures, RankingSet
from mmrank.errors import DataError
from mmrank.retrieval.index import VectorIndex

FIRST_STAGE = "first_stage"


@dataclass
class Retrieved:
    """Per query: ``rows[q]`` (item rows of the index, best first) and their ``scores[q]``."""

    query_ids: list[str]
    rows: list[np.ndarray]
    scores: list[np.ndarray]

    def candidate_ids(self, index: VectorIndex, q: int) -> np.ndarray:
        """The item ids retrieved for query ``q``, best first."""
        return index.item_ids[self.rows[q]]


def retrieve(index: VectorIndex, query_vectors: np.ndarray, k: int, query_ids: Sequence[str],
             exclude: Sequence[Sequence[int]] | None = None) -> Retrieved:
    """The top ``k`` items of each query that are not in its ``exclude`` rows.

    The index is asked for ``k`` plus the longest exclusion list, so excluded items never cost
    a query its ``k`` candidates (unless the index runs out of items).
    """
    exclude = [np.asarray(e, dtype=np.int64) for e in (exclude or [[]] * len(query_ids))]
    if len(exclude) != len(query_ids) or len(query_vectors) != len(query_ids):
        raise DataError(f"{len(query_ids)} queries, {len(query_vectors)} vectors and {len(exclude)} exclusion lists")
    wanted = min(len(index), k + max((len(e) for e in exclude), default=0))
    scores, rows = index.search(query_vectors, wanted)
    out_rows, out_scores = [], []
    for q in range(len(query_ids)):
        keep = (rows[q] >= 0) & ~np.isin(rows[q], exclude[q])
        out_rows.append(rows[q][keep][:k])
        out_scores.append(scores[q][keep][:k].astype(np.float64))
    return Retrieved([str(q) for q in query_ids], out_rows, out_scores)


def candidate_set(index: VectorIndex, retrieved: Retrieved, *, targets: Sequence[Mapping[str, float]] | None = None,
                  items: ItemFeatures | None = None, modalities: Sequence[str] = (),
                  extra_features: Mapping[str, Sequence[np.ndarray]] | None = None,
                  query_features: Mapping[str, np.ndarray] | None = None, query_texts=None,
                  domain: str = "retrieved") -> RankingSet:
    """A RankingSet of the retrieved candidates.

    Args:
        index: the index the rows refer to.
        retrieved: what :func:`retrieve` returned.
        targets: per query ``{item id: label}``; retrieved items not in it get label 0 (None: all 0).
        items: item features to attach (rows looked up by id) for ``modalities``.
        modalities: item modalities to attach as candidate modalities.
        extra_features: more per-query candidate matrices ``{name: [(k_q, d) per query]}``.
        query_features: ``{name: (Q, d)}`` to keep with the queries.
        query_texts: ``(Q,)`` query texts or None.
        domain: the domain of every query.

    Returns:
        The RankingSet; ``baseline_scores`` = first-stage score, modality ``first_stage`` the same.
    """
    sizes = [len(r) for r in retrieved.rows]
    rows = np.concatenate(retrieved.rows) if sizes else np.zeros(0, dtype=np.int64)
    ids = index.item_ids[rows]
    scores = np.concatenate(retrieved.scores) if sizes else np.zeros(0)
    labels = np.zeros(len(ids))
    if targets is not None:
        q_of = np.repeat(np.arange(len(sizes)), sizes)
        labels = np.array([float(targets[q].get(i, 0.0)) for q, i in zip(q_of, ids)])
    features = {FIRST_STAGE: scores[:, None].astype(np.float32)}
    if modalities:
        if items is None:
            raise DataError("item modalities were asked for but no item features were given")
        row_of = items.row_of()
        unknown = [i for i in ids if i not in row_of]
        if unknown:
            raise DataError(f"{len(unknown)} retrieved ids have no item features, e.g. {unknown[:3]}",
                            hint="build the index and the item features from the same items")
        item_rows = np.array([row_of[i] for i in ids], dtype=np.int64)
        features.update({m: items.features[m][item_rows] for m in modalities})
    for name, per_query in (extra_features or {}).items():
        features[name] = np.concatenate(per_query).astype(np.float32)
    return RankingSet(query_ids=retrieved.query_ids, offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                      candidate_ids=ids, labels=labels, domains=[domain] * len(sizes), baseline_scores=scores,
                      features=features, query_features=dict(query_features or {}), query_texts=query_texts)
