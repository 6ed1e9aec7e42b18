"""Vectorised ranking metrics over query groups, one value per query.

Candidates of all queries live in flat ``(N,)`` arrays; ``offsets (Q+1,)`` bound each query's
rows (the RankingSet layout). Every metric is computed with one sort of the flat arrays and
segment sums (``np.bincount``): no Python loop over queries, no ``(Q, L)`` padding, so a single
very long query does not blow up memory and 100k+ queries take well under a second.

Conventions (kept in one place so every caller means the same thing):

* **Ranking**: candidates sorted by score, descending. **Ties are broken by original candidate
  position**: among equal scores the row that comes first in the query ranks higher (a stable
  sort). NaN scores are refused (they would rank arbitrarily); ``-inf`` is a valid score.
* **nDCG@k**: ``DCG@k / IDCG@k`` with discount ``1 / log2(rank + 1)`` (rank 1-based) and gain
  ``2**label - 1`` (``gain="exponential"``, Burges et al. 2005; LightGBM, allRank, ranx
  ``ndcg_burges``) or ``label`` (``gain="linear"``, Järvelin & Kekäläinen 2002; trec_eval
  ``ndcg_cut``, ranx ``ndcg``). IDCG@k uses the query's labels sorted descending, cut at k.
* **Binary metrics** call a candidate relevant when ``label >= relevance_threshold`` (default 1);
  ``R`` is the number of relevant candidates of the query.
  ``hr@k``: 1 if any relevant candidate is in the top k. ``mrr@k``: 1/rank of the first relevant
  candidate within the top k, else 0. ``map@k``: sum of precision@r over relevant candidates at
  ranks r <= k, divided by R (all relevant, as trec_eval and ranx do). ``recall@k``: hits@k / R.
  ``precision@k``: hits@k / k, k and not min(k, n): a query shorter than k pays for it (as
  trec_eval and ranx).
* Leaving out ``@k`` (``mrr``, ``map``, ``ndcg``, ...) means the whole list.
* **Queries with nothing to find** (ideal DCG 0 for nDCG; R == 0 for hr, mrr, map, recall) get,
  by ``no_relevant``: ``"one"`` 1.0 (default; any order is ideal, as LightGBM and allRank count
  it), ``"zero"`` 0.0 (ranx, trec_eval), ``"skip"`` NaN (left out of means by ``evaluate``).
  ``precision@k`` is defined for such queries (0 hits: 0.0) and stays 0.0 under "one" and
  "zero"; under "skip" it is NaN too, so that every metric's mean covers the same queries.
* **Named conventions** (``convention=``): ``"default"`` is the above; ``"letor"`` is the LETOR
  evaluation tool's (Eval-Score-4.0.pl, the numbers of published LETOR tables): gain
  ``2**label - 1``, discount 1 at ranks 1 and 2 and ``1 / log2(rank)`` after, and every query
  with nothing to find counts 0. Explicit ``gain`` / ``discount`` / ``no_relevant`` override it.
* **compliance@k**: the share of the top min(k, n) candidates whose conflict flag is 0; labels
  play no part. NaN for an empty query (nothing was shown).

``per_query_metrics`` returns per-query arrays in query order; ``evaluate`` averages them.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from mmrank.errors import ConfigError, DataError

if TYPE_CHECKING:  # metrics sit below data in the layering: duck-type RankingSet at run time
    import pandas as pd

    from mmrank.data.model import RankingSet

__all__ = [
    "average_precision",
    "compliance_at_k",
    "evaluate",
    "evaluate_per_query",
    "hit_rate_at_k",
    "mrr",
    "ndcg_at_k",
    "parse_metric",
    "per_query_metrics",
    "precision_at_k",
    "recall_at_k",
]

METRIC_KINDS = ("ndcg", "hr", "mrr", "map", "recall", "precision", "compliance")
_NAME = re.compile(r"^(?P<kind>[a-z]+)(?:@(?P<k>\d+))?$")
_GAINS = ("exponential", "linear")
_NO_RELEVANT = {"one": 1.0, "zero": 0.0, "skip": np.nan}
_MAX_PACKED_KEY = 2**62  # (query, value rank, position) packed in one int64 below this


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"mrr"`` -> ``("mrr", None)`` (whole list)."""
    m = _NAME.match(str(name).strip().lower())
    if m is None or m.group("kind") not in METRIC_KINDS:
        raise ConfigError(
            f"unknown metric {name!r} — use one of {', '.join(k + '@K' for k in METRIC_KINDS)} "
            "(e.g. ndcg@10, hr@5, mrr, map@10, recall@20, precision@5, compliance@10)"
        )
    k = m.group("k")
    if k is not None and int(k) < 1:
        raise ConfigError(f"metric {name!r}: the cut-off k must be at least 1")
    return m.group("kind"), None if k is None else int(k)


class _Ranking:
    """One stable sort of all queries' candidates, shared by every metric of one call.

    Slot ``i`` of the ranked layout belongs to query ``qidx[i]`` (the same group blocks as the
    input, because queries are the primary sort key) at 0-based rank ``pos[i]`` and holds the
    input row ``order[i]``."""

    def __init__(self, scores: np.ndarray, offsets: np.ndarray, labels: np.ndarray | None,
                 relevance_threshold: float, gain: str, discount: str = "log2") -> None:
        self.offsets = offsets
        self.sizes = np.diff(offsets)
        self.n_queries = len(self.sizes)
        self.qidx = np.repeat(np.arange(self.n_queries), self.sizes)
        self.pos = np.arange(len(scores)) - np.repeat(offsets[:-1], self.sizes)
        self.order = self.descending_order(scores)
        self.labels = labels
        self.relevance_threshold = relevance_threshold
        self.gain_kind = gain
        self.discount_kind = discount

    def descending_order(self, values: np.ndarray) -> np.ndarray:
        """Rows sorted by (query, value descending, position in the query).

        One unique integer key per row, ``(query, dense rank of -value, position)``, sorted with
        the fast unstable integer sort: 2-3x quicker than ``np.lexsort`` on 1M float scores, and
        as deterministic, since no two keys are equal. lexsort (stable) when the key would
        overflow int64."""
        distinct, dense = np.unique(-values, return_inverse=True)
        max_len = int(self.sizes.max(initial=1))
        if self.n_queries * len(distinct) * max_len < _MAX_PACKED_KEY:
            return np.argsort((self.qidx * len(distinct) + dense) * max_len + self.pos)
        return np.lexsort((-values, self.qidx))

    def segment_sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.qidx, weights=values, minlength=self.n_queries).astype(np.float64)

    def in_top(self, k: int | None) -> np.ndarray:
        return np.ones(len(self.pos), dtype=bool) if k is None else self.pos < k

    def cut(self, k: int | None) -> np.ndarray:
        """(Q,) number of ranks a top-k metric looks at: k, or the whole list when k is None."""
        return self.sizes.astype(np.float64) if k is None else np.full(self.n_queries, float(k))

    @cached_property
    def discount(self) -> np.ndarray:
        if self.discount_kind == "letor":  # rank 1 and 2 weigh 1, rank r > 2 weighs 1 / log2(r)
            return 1.0 / np.log2(np.maximum(self.pos + 1.0, 2.0))
        return 1.0 / np.log2(self.pos + 2.0)

    @cached_property
    def gains(self) -> np.ndarray:
        labels = self._need_labels()
        return np.exp2(labels) - 1.0 if self.gain_kind == "exponential" else labels

    @cached_property
    def ideal_gains(self) -> np.ndarray:
        """Gains sorted descending within each query (the ideal ranking's gains, slot layout)."""
        return self.gains[self.descending_order(self.gains)]

    @cached_property
    def relevant(self) -> np.ndarray:
        """(N,) bool in ranked slot order."""
        return (self._need_labels() >= self.relevance_threshold)[self.order]

    @cached_property
    def n_relevant(self) -> np.ndarray:
        return self.segment_sum(self.relevant)

    @cached_property
    def hits_so_far(self) -> np.ndarray:
        """(N,) relevant candidates at ranks 1..pos+1 of the slot's query (inclusive)."""
        cum = np.cumsum(self.relevant, dtype=np.int64)
        before_query = np.concatenate([[0], cum])[self.offsets[:-1]]
        return cum - np.repeat(before_query, self.sizes)

    def _need_labels(self) -> np.ndarray:
        if self.labels is None:
            raise ConfigError("label-based metrics need labels — pass the labels array")
        return self.labels


def _apply_no_relevant(values: np.ndarray, undefined: np.ndarray, no_relevant: str) -> np.ndarray:
    out = values.copy()
    out[undefined] = _NO_RELEVANT[no_relevant]
    return out


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _ndcg(r: _Ranking, k: int | None, no_relevant: str) -> np.ndarray:
    weight = r.in_top(k) * r.discount
    dcg = r.segment_sum(r.gains[r.order] * weight)
    idcg = r.segment_sum(r.ideal_gains * weight)
    return _apply_no_relevant(_safe_divide(dcg, idcg), idcg <= 0, no_relevant)


def _hits(r: _Ranking, k: int | None) -> np.ndarray:
    return r.segment_sum(r.relevant & r.in_top(k))


def _hr(r: _Ranking, k: int | None, no_relevant: str) -> np.ndarray:
    hit = (_hits(r, k) > 0).astype(np.float64)
    return _apply_no_relevant(hit, r.n_relevant == 0, no_relevant)


def _mrr(r: _Ranking, k: int | None, no_relevant: str) -> np.ndarray:
    first = r.relevant & (r.hits_so_far == 1) & r.in_top(k)
    rr = r.segment_sum(first / (r.pos + 1.0))
    return _apply_no_relevant(rr, r.n_relevant == 0, no_relevant)


def _map(r: _Ranking, k: int | None, no_relevant: str) -> np.ndarray:
    precision_at_hit = (r.relevant & r.in_top(k)) * r.hits_so_far / (r.pos + 1.0)
    ap = _safe_divide(r.segment_sum(precision_at_hit), r.n_relevant)
    return _apply_no_relevant(ap, r.n_relevant == 0, no_relevant)


def _recall(r: _Ranking, k: int | None, no_relevant: str) -> np.ndarray:
    rec = _safe_divide(_hits(r, k), r.n_relevant)
    return _apply_no_relevant(rec, r.n_relevant == 0, no_relevant)


def _precision(r: _Ranking, k: int | None, no_relevant: str) -> np.ndarray:
    prec = _safe_divide(_hits(r, k), r.cut(k))
    # Defined without relevant items (0.0); only "skip" removes those queries, see module doc.
    undefined = (r.n_relevant == 0) if no_relevant == "skip" else np.zeros(r.n_queries, dtype=bool)
    return _apply_no_relevant(prec, undefined, no_relevant)


def _compliance(r: _Ranking, k: int | None, conflict: np.ndarray) -> np.ndarray:
    clean = (conflict[r.order] == 0) & r.in_top(k)
    shown = np.minimum(r.cut(k), r.sizes)
    out = np.full(r.n_queries, np.nan)
    np.divide(r.segment_sum(clean), shown, out=out, where=shown > 0)
    return out


_LABEL_METRICS = {"ndcg": _ndcg, "hr": _hr, "mrr": _mrr, "map": _map, "recall": _recall,
                  "precision": _precision}


def _check_inputs(scores: Any, offsets: Any, labels: Any = None, conflict: Any = None):
    scores = np.asarray(scores, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    if scores.ndim != 1:
        raise DataError(f"scores must be 1-D (one per candidate), got shape {scores.shape}",
                        hint="flatten the model output to (N,)")
    n = len(scores)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != n \
            or np.any(np.diff(offsets) < 0):
        raise DataError(f"offsets must be non-decreasing from 0 to the number of candidates ({n})",
                        hint="pass the RankingSet's offsets that match these scores")
    bad = np.flatnonzero(np.isnan(scores))
    if len(bad):
        raise DataError(f"{len(bad)} score(s) are NaN (first at candidate row {bad[0]})",
                        hint="fix the model output; NaN has no place in a ranking")
    out = [scores, offsets]
    for name, arr in (("labels", labels), ("conflict", conflict)):
        if arr is None:
            out.append(None)
            continue
        arr = np.asarray(arr, dtype=np.float64)
        if arr.shape != (n,):
            raise DataError(f"{name} has shape {arr.shape}, expected ({n},) like the scores",
                            hint=f"pass one {name} value per candidate")
        if np.isnan(arr).any():
            raise DataError(f"{name} contain NaN (first at candidate row {np.flatnonzero(np.isnan(arr))[0]})",
                            hint=f"every candidate needs a {name} value for these metrics")
        out.append(arr)
    return out


CONVENTIONS: dict[str, dict[str, str]] = {
    "default": {"gain": "exponential", "discount": "log2", "no_relevant": "one"},
    "letor": {"gain": "exponential", "discount": "letor", "no_relevant": "zero"},
}
_DISCOUNTS = ("log2", "letor")


def resolve_convention(convention: str | None, gain: str | None, discount: str | None,
                       no_relevant: str | None) -> tuple[str, str, str]:
    """(gain, discount, no_relevant) of a named convention, explicit values taking precedence.

    Example:
        >>> resolve_convention("letor", None, None, None)
        ('exponential', 'letor', 'zero')
    """
    if convention not in (None, *CONVENTIONS):
        raise ConfigError(f"convention={convention!r} — use one of {tuple(CONVENTIONS)}")
    base = CONVENTIONS[convention or "default"]
    chosen = (gain or base["gain"], discount or base["discount"], no_relevant or base["no_relevant"])
    if chosen[1] not in _DISCOUNTS:
        raise ConfigError(f"discount={chosen[1]!r} — use one of {_DISCOUNTS}")
    return chosen


def _check_options(gain: str, no_relevant: str) -> None:
    if gain not in _GAINS:
        raise ConfigError(f"gain={gain!r} — use one of {_GAINS}")
    if no_relevant not in _NO_RELEVANT:
        raise ConfigError(f"no_relevant={no_relevant!r} — use one of {tuple(_NO_RELEVANT)}")


def per_query_metrics(
    labels: Any,
    scores: Any,
    offsets: Any,
    metrics: Iterable[str] = ("ndcg@10",),
    *,
    gain: str | None = None,
    no_relevant: str | None = None,
    conflict: Any = None,
    relevance_threshold: float = 1.0,
    convention: str | None = None,
    discount: str | None = None,
) -> dict[str, np.ndarray]:
    """Per-query values of each named metric: ``{name: (Q,) float64}`` in query order.

    Conventions (ties by position, gains, queries with no relevant candidate, short lists) are in
    the module docstring. One sort serves all the metrics of a call, so asking for several metrics
    at once is cheaper than one call each.

    Args:
        labels: (N,) graded relevance; may be None when only ``compliance@k`` is asked.
        scores: (N,) float scores, higher ranks first; NaN is refused.
        offsets: (Q+1,) int query bounds, ``offsets[0] == 0`` and ``offsets[-1] == N``.
        metrics: names such as ``"ndcg@10"``, ``"hr@5"``, ``"mrr"`` (see :func:`parse_metric`).
        gain: ``"exponential"`` (``2**label - 1``) or ``"linear"`` (``label``), for nDCG.
        no_relevant: value for queries with nothing to find: ``"one"``, ``"zero"`` or ``"skip"``.
        convention: ``"default"`` or ``"letor"`` (see the module docstring); explicit ``gain``,
            ``discount`` and ``no_relevant`` override it.
        discount: ``"log2"`` (``1/log2(rank+1)``) or ``"letor"`` (1 at ranks 1–2, then ``1/log2(rank)``).
        conflict: (N,) bool / 0-1 flags, needed by ``compliance@k`` only.
        relevance_threshold: smallest label that counts as relevant for binary metrics.

    Returns:
        ``{name: (Q,) float64}``, keys in the order ``metrics`` gave them.

    Raises:
        ConfigError: for an unknown metric, gain or ``no_relevant``, or missing labels / conflict.
        DataError: when the arrays' shapes disagree, offsets are not valid bounds, or scores,
            labels or conflict flags hold NaN.

    Example:
        >>> labels, scores = np.array([2, 0, 1, 0, 1]), np.array([0.9, 0.8, 0.1, 0.3, 0.7])
        >>> out = per_query_metrics(labels, scores, np.array([0, 3, 5]), ["ndcg@2", "mrr"])
        >>> out["ndcg@2"].round(4).tolist(), out["mrr"].tolist()
        ([0.8262, 1.0], [1.0, 1.0])
    """
    metrics = list(metrics)
    parsed = [parse_metric(m) for m in metrics]
    gain, discount, no_relevant = resolve_convention(convention, gain, discount, no_relevant)
    _check_options(gain, no_relevant)
    needs_labels = any(kind != "compliance" for kind, _ in parsed)
    needs_conflict = any(kind == "compliance" for kind, _ in parsed)
    if needs_conflict and conflict is None:
        raise ConfigError("compliance@k needs conflict flags — pass conflict=(N,) 0/1 array")
    scores, offsets, labels, conflict = _check_inputs(
        scores, offsets, labels if needs_labels else None, conflict if needs_conflict else None
    )
    if needs_labels and labels is None:
        raise ConfigError("label-based metrics need labels — pass the labels array")
    ranking = _Ranking(scores, offsets, labels, float(relevance_threshold), gain, discount)
    out: dict[str, np.ndarray] = {}
    for name, (kind, k) in zip(metrics, parsed):
        if kind == "compliance":
            out[name] = _compliance(ranking, k, conflict)
        else:
            out[name] = _LABEL_METRICS[kind](ranking, k, no_relevant)
    return out


def _one(kind: str, k: int | None, labels, scores, offsets, **kw) -> np.ndarray:
    name = kind if k is None else f"{kind}@{int(k)}"
    return per_query_metrics(labels, scores, offsets, (name,), **kw)[name]


def ndcg_at_k(labels, scores, offsets, k, *, gain="exponential", no_relevant="one") -> np.ndarray:
    """Per-query nDCG@k (k=None: whole list). See the module docstring for conventions."""
    return _one("ndcg", k, labels, scores, offsets, gain=gain, no_relevant=no_relevant)


def hit_rate_at_k(labels, scores, offsets, k, *, relevance_threshold=1.0, no_relevant="one") -> np.ndarray:
    """Per-query HR@k: 1.0 when a relevant candidate is in the top k."""
    return _one("hr", k, labels, scores, offsets, relevance_threshold=relevance_threshold,
                no_relevant=no_relevant)


def mrr(labels, scores, offsets, k=None, *, relevance_threshold=1.0, no_relevant="one") -> np.ndarray:
    """Per-query reciprocal rank of the first relevant candidate (0 if none within k)."""
    return _one("mrr", k, labels, scores, offsets, relevance_threshold=relevance_threshold,
                no_relevant=no_relevant)


def average_precision(labels, scores, offsets, k=None, *, relevance_threshold=1.0, no_relevant="one") -> np.ndarray:
    """Per-query AP@k (divided by all relevant candidates, as trec_eval); mean = MAP."""
    return _one("map", k, labels, scores, offsets, relevance_threshold=relevance_threshold,
                no_relevant=no_relevant)


def recall_at_k(labels, scores, offsets, k, *, relevance_threshold=1.0, no_relevant="one") -> np.ndarray:
    """Per-query recall@k: relevant candidates in the top k / all relevant candidates."""
    return _one("recall", k, labels, scores, offsets, relevance_threshold=relevance_threshold,
                no_relevant=no_relevant)


def precision_at_k(labels, scores, offsets, k, *, relevance_threshold=1.0, no_relevant="one") -> np.ndarray:
    """Per-query precision@k: relevant candidates in the top k / k."""
    return _one("precision", k, labels, scores, offsets, relevance_threshold=relevance_threshold,
                no_relevant=no_relevant)


def compliance_at_k(conflict, scores, offsets, k) -> np.ndarray:
    """Per-query share of the top min(k, n) candidates whose conflict flag is 0 (NaN if empty)."""
    return _one("compliance", k, None, scores, offsets, conflict=conflict)


def _conflict_of(rset: "RankingSet") -> np.ndarray | None:
    """A candidate is in conflict when any column of its ``conflict`` modality is non-zero."""
    feats = getattr(rset, "features", {}) or {}
    if "conflict" not in feats:
        return None
    return np.any(np.asarray(feats["conflict"]) != 0, axis=1)


def _metrics_of_set(rset: "RankingSet", scores: Any, metrics: Sequence[str], kw: dict) -> dict[str, np.ndarray]:
    if kw.get("conflict") is None and any(parse_metric(m)[0] == "compliance" for m in metrics):
        kw = {**kw, "conflict": _conflict_of(rset)}
    return per_query_metrics(rset.labels, scores, rset.offsets, metrics, **kw)


def evaluate_per_query(
    rset: "RankingSet",
    scores: Any,
    metrics: Sequence[str] = ("ndcg@1", "ndcg@5", "ndcg@10"),
    **kw: Any,
) -> "pd.DataFrame":
    """One row per query: ``query_id``, ``domain`` and one column per metric.

    ``conflict`` defaults to the RankingSet's ``conflict`` modality when it has one."""
    import pandas as pd  # only the table needs pandas; the metric code does not

    values = _metrics_of_set(rset, scores, metrics, kw)
    table = {"query_id": np.asarray(rset.query_ids), "domain": np.asarray(rset.domains)}
    table.update(values)
    return pd.DataFrame(table)


def evaluate(
    rset: "RankingSet",
    scores: Any,
    metrics: Sequence[str] = ("ndcg@1", "ndcg@5", "ndcg@10"),
    **kw: Any,
) -> dict[str, float]:
    """Mean of each metric over the queries of ``rset``; NaN entries (skipped queries) are left out.

    A metric with no query left to average is NaN. ``conflict`` defaults to the set's ``conflict``
    modality (a candidate is in conflict when any of its columns is non-zero).

    Args:
        rset: the queries, with labels and offsets.
        scores: (N,) scores in ``rset``'s candidate order, e.g. ``model.score(rset)``.
        metrics: metric names, see :func:`per_query_metrics`.
        **kw: ``gain``, ``no_relevant``, ``conflict``, ``relevance_threshold`` for
            :func:`per_query_metrics`.

    Returns:
        ``{name: mean}`` as Python floats.

    Raises:
        ConfigError: for an unknown metric or option.
        DataError: when ``scores`` does not fit ``rset`` or holds NaN.

    Example:
        >>> evaluate(test, model.score(test), ["ndcg@10", "mrr"])  # doctest: +SKIP
        {'ndcg@10': 0.71, 'mrr': 0.64}
    """
    values = _metrics_of_set(rset, scores, metrics, kw)
    return {name: _nan_mean(v) for name, v in values.items()}


def _nan_mean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if len(kept) else float("nan")

