"""First-stage retrieval: a faiss index over item embeddings, queried by a query embedding or a
user's history, writing candidate files the reranker reads (docs/retrieval.md).

* ``index``: build / save / load the index (exact, HNSW, IVF);
* ``vectors``: item vectors from item modalities, query vectors from histories;
* ``candidates``: search with exclusions → a RankingSet with the first-stage score as baseline;
* ``evaluate``: recall@K, end-to-end nDCG (missed targets count), ANN overlap with exact search;
* ``ml100k``: the ML-100K reranking task's queries retrieved from the index.
"""

from mmrank.retrieval.index import IndexSettings, VectorIndex, build_index, load_index

__all__ = ["IndexSettings", "VectorIndex", "build_index", "load_index"]
