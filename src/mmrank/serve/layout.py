"""The input layout of a query — which modalities, of which dims, with or without a baseline score
and a query text — and what it is used for: grouping queries that can share one model call
(batch rerank), and building a probe query of a given layout (the reload check).

Two queries of different layouts are never stacked into one ``RankingSet``: stacking would fail
(different dims) or silently drop a column (a baseline score only some of them have), so the
batch path scores each layout on its own and one odd line never touches its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmrank.data.model import RankingSet, concat_ranking_sets


@dataclass(frozen=True)
class Layout:
    """What a model sees of a query besides the values: names and dims, sorted."""

    features: tuple[tuple[str, int], ...]
    query_features: tuple[tuple[str, int], ...] = ()
    baseline: bool = False
    query_text: bool = False

    def describe(self) -> str:
        """``image 6, text 4; query text 8; baseline`` — short enough for a one-line error."""
        parts = [", ".join(f"{n} {d}" for n, d in self.features) or "no modalities"]
        if self.query_features:
            parts.append("query " + ", ".join(f"{n} {d}" for n, d in self.query_features))
        if self.baseline:
            parts.append("baseline score")
        return "; ".join(parts)


def layout_of(rset: RankingSet) -> Layout:
    """The layout of ``rset`` (every query of a RankingSet shares one)."""
    return Layout(
        features=tuple(sorted(rset.modality_dims.items())),
        query_features=tuple(sorted(rset.query_feature_dims.items())),
        baseline=rset.baseline_scores is not None,
        query_text=rset.query_texts is not None,
    )


def group_by_layout(queries: list[RankingSet]) -> list[tuple[list[int], RankingSet]]:
    """``(indices, stacked set)`` per layout, in order of first appearance; a group that cannot be
    stacked (it should not happen within one layout) is split into one group per query."""
    groups: dict[Layout, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault(layout_of(q), []).append(i)
    out = []
    for idx in groups.values():
        try:
            out.append((idx, concat_ranking_sets([queries[i] for i in idx]) if len(idx) > 1 else queries[idx[0]]))
        except Exception:  # noqa: BLE001 — never let stacking lose a query: score them one by one
            out.extend(([i], queries[i]) for i in idx)
    return out


def probe_query(layout: Layout, n: int = 3, seed: int = 0) -> RankingSet:
    """A query of ``n`` candidates in ``layout`` with small deterministic values: what a model
    must be able to score to serve traffic of that layout."""
    rng = np.random.default_rng(seed)
    return RankingSet(
        query_ids=["mmrank-reload-probe"],
        offsets=np.array([0, n]),
        candidate_ids=[f"probe-{j}" for j in range(n)],
        labels=np.zeros(n),
        features={name: rng.uniform(0.0, 1.0, size=(n, d)) for name, d in layout.features},
        query_features={name: rng.uniform(0.0, 1.0, size=(1, d)) for name, d in layout.query_features},
        baseline_scores=np.linspace(1.0, 0.0, n) if layout.baseline else None,
        query_texts=["probe"] if layout.query_text else None,
    )


def declared_layout(ranker) -> Layout | None:
    """The layout a ranker says it was trained on, when it says so (``input_dims()`` or
    ``input_dims_``, keys ``features.<name>`` / ``query_features.<name>``); None otherwise."""
    dims = getattr(ranker, "input_dims", None)
    try:
        dims = dims() if callable(dims) else getattr(ranker, "input_dims_", None)
    except Exception:  # noqa: BLE001 — a ranker that cannot say is treated as one that does not
        return None
    if not isinstance(dims, dict) or not dims:
        return None
    feats = sorted((k.split(".", 1)[1], int(d)) for k, d in dims.items() if k.startswith("features."))
    qfeats = sorted((k.split(".", 1)[1], int(d)) for k, d in dims.items() if k.startswith("query_features."))
    return Layout(tuple(feats), tuple(qfeats))
