"""The data model every other part of mmrank speaks.

``RankingSet``: query groups of candidates in CSR form (``offsets`` bound each query's rows),
columnar numpy arrays, one ``(N, d)`` matrix per candidate modality and one ``(Q, d)`` matrix
per query feature. Padded ``(B, L, d)`` views are made on demand for models and never stored.

``Interactions`` + ``ItemFeatures``: user-item events for sequential recommendation and the
per-item modality matrices (with a per-item mask saying which rows are real).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

import numpy as np

from mmrank.errors import DataError


def _as_str_array(values: Iterable) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    return np.array([str(v) for v in arr.ravel()], dtype=object)


def hash_ids(ids: Iterable) -> str:
    """sha256 over ids (as strings, newline-separated, in the given order)."""
    h = hashlib.sha256()
    for v in ids:
        h.update(str(v).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# What ``Interactions.timestamps`` hold (``Interactions.order``).
TIME = "time"          # real times from a time column
SEQUENCE = "sequence"  # no times; positions in an order the data defines (SASRec text, a position column)
ROW = "row"            # no times, no order: the file's row numbers
ORDERS = (TIME, SEQUENCE, ROW)


@dataclass
class Query:
    """One query's rows, as views into the parent RankingSet (no copies)."""

    query_id: str
    domain: str
    candidate_ids: np.ndarray
    labels: np.ndarray
    baseline_scores: np.ndarray | None
    features: dict[str, np.ndarray]
    query_features: dict[str, np.ndarray]
    query_text: str | None


@dataclass
class RankingSet:
    """Query groups of graded candidates with named modalities.

    Shapes: ``query_ids (Q,)``, ``offsets (Q+1,)`` with ``offsets[0] == 0`` and
    ``offsets[-1] == N``, ``candidate_ids (N,)``, ``labels (N,)``, ``domains (Q,)``,
    ``baseline_scores (N,)`` or None, ``features[name] (N, d)``, ``query_features[name] (Q, d)``,
    ``query_texts (Q,)`` or None.
    """

    query_ids: np.ndarray
    offsets: np.ndarray
    candidate_ids: np.ndarray
    labels: np.ndarray
    domains: np.ndarray | None = None
    baseline_scores: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    query_features: dict[str, np.ndarray] = field(default_factory=dict)
    query_texts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.query_ids = _as_str_array(self.query_ids)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.candidate_ids = _as_str_array(self.candidate_ids)
        self.labels = np.asarray(self.labels, dtype=np.float64)
        q, n = len(self.query_ids), len(self.candidate_ids)
        if self.domains is None:
            self.domains = np.array(["default"] * q, dtype=object)
        else:
            self.domains = _as_str_array(self.domains)
        if self.baseline_scores is not None:
            self.baseline_scores = np.asarray(self.baseline_scores, dtype=np.float64)
        if self.query_texts is not None:
            self.query_texts = np.array(
                [None if t is None else str(t) for t in self.query_texts], dtype=object
            )
        self.features = {k: _as_matrix(v, k) for k, v in self.features.items()}
        self.query_features = {k: _as_matrix(v, k) for k, v in self.query_features.items()}
        problems = []
        if self.offsets.shape != (q + 1,):
            problems.append(f"offsets has shape {self.offsets.shape}, expected ({q + 1},)")
        elif q >= 0 and (self.offsets[0] != 0 or self.offsets[-1] != n):
            problems.append("offsets must start at 0 and end at the number of candidates")
        elif np.any(np.diff(self.offsets) < 0):
            problems.append("offsets must be non-decreasing")
        if self.labels.shape != (n,):
            problems.append(f"labels has shape {self.labels.shape}, expected ({n},)")
        if self.domains.shape != (q,):
            problems.append(f"domains has shape {self.domains.shape}, expected ({q},)")
        if self.baseline_scores is not None and self.baseline_scores.shape != (n,):
            problems.append(f"baseline_scores has shape {self.baseline_scores.shape}, expected ({n},)")
        if self.query_texts is not None and self.query_texts.shape != (q,):
            problems.append(f"query_texts has shape {self.query_texts.shape}, expected ({q},)")
        for k, v in self.features.items():
            if v.shape[0] != n:
                problems.append(f"feature {k!r} has {v.shape[0]} rows, expected {n}")
        for k, v in self.query_features.items():
            if v.shape[0] != q:
                problems.append(f"query feature {k!r} has {v.shape[0]} rows, expected {q}")
        if problems:
            raise DataError("inconsistent RankingSet: " + "; ".join(problems))

    # -- sizes -------------------------------------------------------------------------
    @property
    def n_queries(self) -> int:
        """Number of query groups ``Q``."""
        return len(self.query_ids)

    @property
    def n_candidates(self) -> int:
        """Number of candidate rows ``N`` over all queries."""
        return len(self.candidate_ids)

    @property
    def group_sizes(self) -> np.ndarray:
        """Candidates per query.

        Returns:
            (Q,) int64, ``offsets[i + 1] - offsets[i]``; may contain zeros (a query with no candidates).
        """
        return np.diff(self.offsets)

    @property
    def query_index(self) -> np.ndarray:
        """(N,) index of the query each candidate belongs to."""
        return np.repeat(np.arange(self.n_queries), self.group_sizes)

    @property
    def modality_dims(self) -> dict[str, int]:
        """Width of each candidate modality matrix.

        Returns:
            ``{name: d}`` for every ``features[name]`` of shape ``(N, d)``, in insertion order.
        """
        return {k: int(v.shape[1]) for k, v in self.features.items()}

    @property
    def query_feature_dims(self) -> dict[str, int]:
        """Width of each per-query feature matrix.

        Returns:
            ``{name: d}`` for every ``query_features[name]`` of shape ``(Q, d)``.
        """
        return {k: int(v.shape[1]) for k, v in self.query_features.items()}

    def __len__(self) -> int:
        return self.n_queries

    def query(self, i: int) -> Query:
        """Return query ``i`` with its candidates, as views into this set's arrays (no copies).

        Args:
            i: query position in ``0 .. Q-1`` (not the query id); negative indices are not supported.

        Returns:
            A :class:`Query` whose per-candidate arrays have length ``group_sizes[i]`` and whose
            ``query_features[name]`` is the ``(d,)`` row of that query. Writing into them writes into
            this set.

        Example:
            >>> q = rs.query(0)  # doctest: +SKIP
            >>> q.candidate_ids, q.labels  # doctest: +SKIP
        """
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return Query(
            query_id=str(self.query_ids[i]),
            domain=str(self.domains[i]),
            candidate_ids=self.candidate_ids[a:b],
            labels=self.labels[a:b],
            baseline_scores=None if self.baseline_scores is None else self.baseline_scores[a:b],
            features={k: v[a:b] for k, v in self.features.items()},
            query_features={k: v[i] for k, v in self.query_features.items()},
            query_text=None if self.query_texts is None else self.query_texts[i],
        )

    def __iter__(self) -> Iterator[Query]:
        for i in range(self.n_queries):
            yield self.query(i)

    # -- selection ---------------------------------------------------------------------
    def subset(self, query_indices: Iterable[int]) -> "RankingSet":
        """A new RankingSet holding the given queries, in the given order (copies)."""
        qi = np.asarray(list(query_indices) if not isinstance(query_indices, np.ndarray) else query_indices, dtype=np.int64)
        sizes = self.group_sizes[qi]
        rows = (
            np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in qi])
            if len(qi)
            else np.zeros(0, dtype=np.int64)
        ).astype(np.int64)
        return RankingSet(
            query_ids=self.query_ids[qi],
            offsets=np.concatenate([[0], np.cumsum(sizes)]),
            candidate_ids=self.candidate_ids[rows],
            labels=self.labels[rows],
            domains=self.domains[qi],
            baseline_scores=None if self.baseline_scores is None else self.baseline_scores[rows],
            features={k: v[rows] for k, v in self.features.items()},
            query_features={k: v[qi] for k, v in self.query_features.items()},
            query_texts=None if self.query_texts is None else self.query_texts[qi],
        )

    def take_rows(self, rows: np.ndarray) -> "RankingSet":
        """The same queries (all of them, in order) holding only the candidate ``rows`` (sorted
        positions, or a boolean mask over the candidates); a query may end up empty. Used to
        subsample candidates without regrouping."""
        rows = np.asarray(rows)
        sizes = np.bincount(self.query_index[rows], minlength=self.n_queries)
        return RankingSet(
            query_ids=self.query_ids, offsets=np.concatenate([[0], np.cumsum(sizes)]),
            candidate_ids=self.candidate_ids[rows], labels=self.labels[rows], domains=self.domains,
            baseline_scores=None if self.baseline_scores is None else self.baseline_scores[rows],
            features={k: v[rows] for k, v in self.features.items()}, query_features=self.query_features,
            query_texts=self.query_texts,
        )

    def with_labels(self, labels: np.ndarray) -> "RankingSet":
        """Return a new set with the labels replaced; feature matrices are shared, not copied.

        The new set is built (and validated) afresh, so its id arrays are new string arrays.

        Used e.g. by the label-permutation audit to shuffle labels without touching the original.

        Args:
            labels: (N,) new labels, cast to float64.

        Returns:
            A new, re-validated RankingSet.

        Raises:
            DataError: when ``labels`` does not have shape ``(N,)``.
        """
        return replace(self, labels=np.asarray(labels, dtype=np.float64))

    def with_features(self, features: dict[str, np.ndarray]) -> "RankingSet":
        """Return a copy of the set whose candidate modalities are exactly ``features``.

        Modalities not in ``features`` are dropped. Float32 matrices (and the other set's query
        features and scores) are shared, not copied; id arrays are rebuilt.

        Args:
            features: ``{name: (N, d) array}``; 1-D arrays become ``(N, 1)``, values are cast to float32.

        Returns:
            A new, re-validated RankingSet.

        Raises:
            DataError: when a matrix does not have ``N`` rows or is not 1-D/2-D.
        """
        return replace(self, features=dict(features))

    # -- views for models --------------------------------------------------------------
    def padded(self, values: np.ndarray, max_len: int | None = None, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pad a per-candidate array ``(N, ...)`` to ``(Q, L, ...)`` plus a ``(Q, L)`` bool mask.

        Queries longer than ``max_len`` are cut (the mask says which rows are real)."""
        sizes = self.group_sizes
        L = int(sizes.max(initial=0)) if max_len is None else int(max_len)
        values = np.asarray(values)
        out = np.full((self.n_queries, L) + values.shape[1:], fill, dtype=values.dtype)
        pos = np.arange(self.n_candidates) - np.repeat(self.offsets[:-1], sizes)
        keep = pos < L
        out[self.query_index[keep], pos[keep]] = values[keep]
        mask = np.arange(L)[None, :] < np.minimum(sizes, L)[:, None]
        return out, mask

    def unpad(self, padded: np.ndarray) -> np.ndarray:
        """Inverse of ``padded`` for rows that fit: ``(Q, L, ...)`` -> ``(N, ...)``."""
        sizes = self.group_sizes
        pos = np.arange(self.n_candidates) - np.repeat(self.offsets[:-1], sizes)
        return padded[self.query_index, pos]

    def feature_matrix(self, names: Iterable[str] | None = None, with_query_features: bool = True) -> np.ndarray:
        """Flat ``(N, D)`` matrix for models that want one vector per candidate (e.g. GBDTs):
        the named candidate modalities in sorted name order, then query features broadcast to
        their candidates. Column order is stable, so a fitted model can be reapplied."""
        cols = [self.features[k] for k in sorted(self.features if names is None else names)]
        if with_query_features:
            qi = self.query_index
            cols += [self.query_features[k][qi] for k in sorted(self.query_features)]
        if not cols:
            return np.zeros((self.n_candidates, 0), dtype=np.float32)
        return np.concatenate(cols, axis=1)

    # -- identity ----------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of the query ids and the candidate ids in order: identifies the data's rows."""
        return hash_ids(np.concatenate([self.query_ids, ["|"], self.candidate_ids]))

    def summary(self) -> dict:
        """Return the set's sizes as a JSON-ready dict for reports and logs.

        Returns:
            ``{"queries": Q, "candidates": N, "modalities": {name: d}, "query_features": {name: d}}``.
        """
        return {
            "queries": self.n_queries,
            "candidates": self.n_candidates,
            "modalities": self.modality_dims,
            "query_features": self.query_feature_dims,
        }


def concat_ranking_sets(parts: list[RankingSet]) -> RankingSet:
    """Stack RankingSets that share the same modality names and dims."""
    if not parts:
        raise DataError("nothing to concatenate")
    names = set(parts[0].features)
    qnames = set(parts[0].query_features)
    for p in parts[1:]:
        if set(p.features) != names or set(p.query_features) != qnames:
            raise DataError(
                f"cannot concatenate sets with different modalities {sorted(names)} vs {sorted(p.features)}"
            )
    sizes = np.concatenate([p.group_sizes for p in parts])
    has_base = all(p.baseline_scores is not None for p in parts)
    has_text = all(p.query_texts is not None for p in parts)
    return RankingSet(
        query_ids=np.concatenate([p.query_ids for p in parts]),
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        candidate_ids=np.concatenate([p.candidate_ids for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        domains=np.concatenate([p.domains for p in parts]),
        baseline_scores=np.concatenate([p.baseline_scores for p in parts]) if has_base else None,
        features={k: np.concatenate([p.features[k] for p in parts]) for k in parts[0].features},
        query_features={k: np.concatenate([p.query_features[k] for p in parts]) for k in parts[0].query_features},
        query_texts=np.concatenate([p.query_texts for p in parts]) if has_text else None,
    )


def _as_matrix(v: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"modality {name!r} must be 2-D (rows, dim), got shape {arr.shape}")
    return arr


@dataclass
class Interactions:
    """User-item events: ``user_ids (n,)``, ``item_ids (n,)``, ``timestamps (n,)``, ``ratings (n,)``.

    Ids are strings (as in the source files); models map them to dense integers themselves.

    ``order`` says what ``timestamps`` hold, so that nothing downstream calls file order time:
    ``"time"`` real times from a time column; ``"sequence"`` no times, but each user's events are
    in an order the data defines (SASRec text files, a ``position`` column) and ``timestamps``
    hold those positions; ``"row"`` no times and no order: ``timestamps`` are the file's row
    numbers, which say nothing about when an event happened."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None = None
    order: str = "time"

    def __post_init__(self) -> None:
        self.user_ids = _as_str_array(self.user_ids)
        self.item_ids = _as_str_array(self.item_ids)
        self._check()

    @classmethod
    def of_str_ids(cls, user_ids: np.ndarray, item_ids: np.ndarray, timestamps: np.ndarray,
                   ratings: np.ndarray | None, order: str) -> "Interactions":
        """Events from object arrays whose ids already are ``str`` (a reader's own output), without
        converting each id again (a million ids cost ~0.4 s); numbers and shapes are still checked."""
        out = object.__new__(cls)
        out.user_ids, out.item_ids = np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object)
        out.timestamps, out.ratings, out.order = timestamps, ratings, order
        out._check()
        return out

    def _check(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        if self.ratings is not None:
            self.ratings = np.asarray(self.ratings, dtype=np.float64)
        if self.order not in ORDERS:
            raise DataError(f"Interactions.order {self.order!r} is not one of {ORDERS}")
        n = len(self.user_ids)
        for name in ("item_ids", "timestamps", "ratings"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise DataError(f"Interactions.{name} has {len(v)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def timed(self) -> bool:
        """True when ``timestamps`` are real times (``order == "time"``)."""
        return self.order == TIME

    @property
    def n_users(self) -> int:
        """Number of distinct user ids (computed with ``np.unique`` on each call)."""
        return len(np.unique(self.user_ids))

    @property
    def n_items(self) -> int:
        """Number of distinct item ids that occur in the events (computed on each call)."""
        return len(np.unique(self.item_ids))

    def take(self, rows: np.ndarray) -> "Interactions":
        """Return the events at ``rows`` as a new Interactions (fancy-indexed copies).

        Args:
            rows: (k,) int positions, or an (n,) bool mask; order and repeats are kept.

        Returns:
            A new Interactions with ``k`` events and the same ``order``.
        """
        rows = np.asarray(rows)
        out = object.__new__(Interactions)  # the arrays are already validated: skip re-converting ids
        out.user_ids, out.item_ids = self.user_ids[rows], self.item_ids[rows]
        out.timestamps = self.timestamps[rows]
        out.ratings = None if self.ratings is None else self.ratings[rows]
        out.order = self.order
        return out

    def sorted(self) -> "Interactions":
        """Stable order by (user, timestamp), the order sequences are built in."""
        order = np.lexsort((self.timestamps, self.user_ids.astype(str)))
        return self.take(order)

    def fingerprint(self) -> str:
        """Hash the events (user, item, timestamp to 6 decimals) in their current order.

        Ratings are not part of it, so the hash identifies which events were used, not their values;
        call it on :meth:`sorted` output when the order should not matter.

        Returns:
            The sha256 hex digest.
        """
        return hash_ids(
            f"{u}\t{i}\t{t:.6f}" for u, i, t in zip(self.user_ids, self.item_ids, self.timestamps)
        )


@dataclass
class ItemFeatures:
    """Per-item modality matrices aligned with ``item_ids``.

    ``masks[name] (n_items,)`` is True where the row holds a real value; missing rows are zero
    *and* masked, so a model can tell "absent" from "zero"."""

    item_ids: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    titles: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.item_ids = _as_str_array(self.item_ids)
        n = len(self.item_ids)
        self.features = {k: _as_matrix(v, k) for k, v in self.features.items()}
        for k, v in self.features.items():
            if v.shape[0] != n:
                raise DataError(f"item feature {k!r} has {v.shape[0]} rows, expected {n}")
        masks = {}
        for k in self.features:
            m = self.masks.get(k)
            masks[k] = np.ones(n, dtype=bool) if m is None else np.asarray(m, dtype=bool)
            if masks[k].shape != (n,):
                raise DataError(f"mask of {k!r} has shape {masks[k].shape}, expected ({n},)")
        self.masks = masks
        if self.titles is not None:
            self.titles = _as_str_array(self.titles)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def modality_dims(self) -> dict[str, int]:
        """Width of each item modality matrix.

        Returns:
            ``{name: d}`` for every ``features[name]`` of shape ``(n_items, d)``.
        """
        return {k: int(v.shape[1]) for k, v in self.features.items()}

    def row_of(self) -> dict[str, int]:
        """Map each item id to its row in the feature matrices.

        Built afresh on every call, so keep the result when looking up many ids. With duplicate ids the
        last row wins.

        Returns:
            ``{item_id: row}``.
        """
        return {iid: i for i, iid in enumerate(self.item_ids)}
