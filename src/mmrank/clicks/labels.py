"""From a fitted click model to graded relevance labels the trainers consume.

The model's relevance of each (query, candidate) pair is joined onto a RankingSet (which holds
the features), turned into integer grades ``0 .. grades-1`` by equal-width bins of the
probability, and rows the log never showed (no estimate) are dropped — counted, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from mmrank.clicks.base import ClickModel
from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError, DataError


def relevance_of(rset: RankingSet, model: ClickModel, min_impressions: int = 1) -> np.ndarray:
    """(N,) the model's relevance of each candidate of ``rset``; NaN where the log showed the pair
    fewer than ``min_impressions`` times (or never)."""
    table = model.relevance_table()
    table = table[table["impressions"] >= min_impressions]
    rows = pd.DataFrame({"query_id": rset.query_ids[rset.query_index].astype(str),
                         "candidate_id": rset.candidate_ids.astype(str)})
    joined = rows.merge(table, on=["query_id", "candidate_id"], how="left", validate="many_to_one")
    return joined["relevance"].to_numpy(dtype=np.float64)


def grades_of(relevance: np.ndarray, grades: int) -> np.ndarray:
    """Equal-width bins of a probability: ``min(floor(p * grades), grades - 1)``."""
    if grades < 2:
        raise ConfigError(f"grades={grades} — use at least 2 (0 = not relevant)")
    return np.minimum(np.floor(np.asarray(relevance) * grades), grades - 1).astype(np.float64)


@dataclass
class WeakLabels:
    """The labelled set and what the labelling kept: candidates and queries in / kept."""

    rset: RankingSet
    candidates_in: int
    candidates_labelled: int
    queries_in: int
    queries_kept: int

    def summary(self) -> dict:
        """The counts as JSON-ready data."""
        return {"candidates_in": self.candidates_in, "candidates_labelled": self.candidates_labelled,
                "candidates_dropped": self.candidates_in - self.candidates_labelled,
                "queries_in": self.queries_in, "queries_kept": self.queries_kept}


def weak_labels(rset: RankingSet, model: ClickModel, *, grades: int = 5, min_impressions: int = 1) -> WeakLabels:
    """``rset`` relabelled with graded click-model relevance, keeping the candidates the log showed.

    Args:
        rset: the queries with their features (its labels, if any, are replaced).
        model: a fitted click model whose query and candidate ids match ``rset``'s.
        grades: number of grades (``0 .. grades-1``).
        min_impressions: a pair needs at least this many impressions to be labelled.

    Returns:
        :class:`WeakLabels`; queries left with no labelled candidate are dropped.

    Raises:
        DataError: when no candidate of ``rset`` appears in the model (ids do not match).

    Example:
        >>> weak = weak_labels(train, PositionBasedModel().fit(log))  # doctest: +SKIP
        >>> weak.rset.labels[:5], weak.summary()  # doctest: +SKIP
    """
    relevance = relevance_of(rset, model, min_impressions)
    known = np.isfinite(relevance)
    if not known.any():
        raise DataError("no candidate of the data appears in the click model",
                        hint="the click log's query_id/candidate_id must be the data's ids")
    labelled = rset.with_labels(np.where(known, grades_of(np.nan_to_num(relevance), grades), 0.0)).take_rows(
        np.flatnonzero(known))
    keep_queries = np.flatnonzero(labelled.group_sizes > 0)
    out = labelled.subset(keep_queries)
    return WeakLabels(out, rset.n_candidates, int(known.sum()), rset.n_queries, len(keep_queries))


def relevance_agreement(rset: RankingSet, model: ClickModel, min_impressions: int = 1) -> dict:
    """Rank correlation of the model's relevance with ``rset``'s true labels, over the candidates
    the log showed: Kendall's tau-b and Spearman's rho (``scipy.stats``), the tau-b a perfect
    order would reach given the ties in the labels, the mean relevance per label, and how many pairs."""
    relevance = relevance_of(rset, model, min_impressions)
    known = np.isfinite(relevance)
    if known.sum() < 3:
        raise DataError("fewer than 3 candidates have a click-model estimate", hint="simulate or log more sessions")
    labels = rset.labels[known]
    tau = sps.kendalltau(relevance[known], labels)
    rho = sps.spearmanr(relevance[known], labels)
    # Ties in the labels keep tau-b below 1 even for a perfect order: what a perfect estimate gets.
    perfect = labels + np.random.default_rng(0).uniform(0, 0.5, size=len(labels))
    ceiling = sps.kendalltau(perfect, labels)
    return {"kendall_tau_b": float(tau.statistic), "kendall_tau_b_perfect_order": float(ceiling.statistic),
            "spearman": float(rho.statistic), "pairs": int(known.sum()),
            "mean_relevance_by_label": {str(int(l)): float(relevance[known & (rset.labels == l)].mean())
                                        for l in np.unique(rset.labels[known])}}
