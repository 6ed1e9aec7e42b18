"""Train / valid / test splits as objects that say what is in each part and can prove it.

A split lists the ids in each part (query ids for ``RankingSplit``, row indices into the
interactions for ``InteractionSplit``) and carries a fingerprint: sha256 of each part's ids in
order (``hash_ids``) plus a combined hash, which goes into every run directory's
``fingerprint.json``. ``to_json``/``from_json`` round-trip a split and refuse a file whose ids no
longer match its stored fingerprint.

Rules the makers follow (and tests check):

* ``query_grouped_split``: whole queries go to one part (no query id in two parts); a seeded
  permutation of the distinct query ids, part sizes by largest remainder so they add up.
* ``temporal_split`` / ``temporal_query_split``: global time cuts. With ``n`` rows (queries), the
  test part starts at the timestamp of the ``round(test_frac * n)``-th latest row and valid at
  the one ``round(valid_frac * n)`` rows earlier. **Ties:** every row at a cut's timestamp goes
  to the later part, so no timestamp is in two parts and train never holds a moment that is also
  evaluated; parts can therefore be a little larger (valid can even be empty) than requested.
* ``leave_one_out``: per user, events ordered by timestamp, **ties broken by original row order**
  (the later row counts as the later event); the last goes to test, the second last to valid,
  the rest to train. **A user with fewer than 3 events goes entirely to train** (they cannot give a
  history, a valid target and a test target); ``params["users_all_train"]`` counts them.
* ``InteractionSplit`` row indices only mean something for the data they were made on, so the
  split stores that data's fingerprint, folds it into the combined hash, and ``apply`` refuses
  other data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from mmrank.data.model import Interactions, RankingSet, hash_ids
from mmrank.atomic_io import atomic_write_text
from mmrank.errors import ConfigError, DataError

PARTS = ("train", "valid", "test")


@dataclass(eq=False)
class Split:
    """Named parts of ids plus how they were made. Subclasses fix what an id is (``unit``)."""

    method: str
    parts: dict[str, np.ndarray]
    params: dict = field(default_factory=dict)
    data_fingerprint: str | None = None

    unit: ClassVar[str] = ""

    @property
    def sizes(self) -> dict[str, int]:
        """Number of ids in each part.

        Returns:
            ``{part: count}``, e.g. ``{"train": 800, "valid": 100, "test": 100}``.
        """
        return {name: int(len(ids)) for name, ids in self.parts.items()}

    @property
    def fingerprint(self) -> dict[str, str]:
        """``{part: sha256 of its ids, ..., "combined": hash of the unit, data and part hashes}``."""
        fp = {name: hash_ids(ids) for name, ids in self.parts.items()}
        fp["combined"] = hash_ids(
            [f"unit:{self.unit}", f"data:{self.data_fingerprint}"] + [f"{k}:{v}" for k, v in fp.items()]
        )
        return fp

    # -- storage -----------------------------------------------------------------------
    def to_json(self) -> str:
        """Serialise the split as indented JSON: unit, method, params, data fingerprint, sizes,
        fingerprint and every part's ids in order.

        The fingerprint is written alongside the ids so that :meth:`from_json` can tell an edited or
        damaged file from a good one. ``sizes`` is informational and not checked on reading.

        Returns:
            The JSON text.
        """
        return json.dumps(
            {
                "unit": self.unit,
                "method": self.method,
                "params": self.params,
                "data_fingerprint": self.data_fingerprint,
                "sizes": self.sizes,
                "fingerprint": self.fingerprint,
                "parts": {name: [_json_id(v) for v in ids] for name, ids in self.parts.items()},
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str, *, path: str | Path | None = None) -> "Split":
        """A split from ``to_json`` output; DataError when malformed or its fingerprint is off."""
        try:
            obj = json.loads(text)
            cls = {c.unit: c for c in (RankingSplit, InteractionSplit)}[obj["unit"]]
            split = cls(
                method=str(obj["method"]),
                parts={str(k): cls._ids(v) for k, v in obj["parts"].items()},
                params=dict(obj.get("params") or {}),
                data_fingerprint=obj.get("data_fingerprint"),
            )
            stored = dict(obj["fingerprint"])
            computed = split.fingerprint  # UnicodeEncodeError (a ValueError) on lone surrogates
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise DataError(f"not a split file ({type(e).__name__}: {str(e)[:200]})", path=path,
                            hint="write splits with Split.save / to_json") from None
        if stored != computed:
            raise DataError("the split's ids do not match its stored fingerprint", path=path,
                            hint="the file was edited or damaged: make the split again")
        return split

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically (a crash never leaves half a split file).

        Args:
            path: destination file.

        Returns:
            The path written.

        Example:
            >>> split = query_grouped_split(rset, seed=0)  # doctest: +SKIP
            >>> split.save("run/split.json"); Split.load("run/split.json").sizes  # doctest: +SKIP
        """
        return atomic_write_text(path, self.to_json())

    @staticmethod
    def load(path: str | Path) -> "Split":
        """Read a split file written by :meth:`save`, verifying its fingerprint.

        The returned object is a ``RankingSplit`` or an ``InteractionSplit``, chosen by the file's
        ``unit``.

        Args:
            path: the split JSON file.

        Returns:
            The split.

        Raises:
            DataError: when the file cannot be read or is not UTF-8, is not a split file, or its ids
                no longer match its stored fingerprint.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read split file ({e})", path=path, hint="check the path") from None
        return Split.from_json(text, path=path)

    @staticmethod
    def _ids(values) -> np.ndarray:
        raise NotImplementedError


def _json_id(v):
    return int(v) if isinstance(v, (np.integer, int)) else str(v)


# -- ranking data: parts are query ids --------------------------------------------------------
@dataclass(eq=False)
class RankingSplit(Split):
    unit: ClassVar[str] = "query"

    @staticmethod
    def _ids(values) -> np.ndarray:
        return np.array([str(v) for v in values], dtype=object)

    def part_indices(self, rset: RankingSet) -> dict[str, np.ndarray]:
        """Query indices of ``rset`` per part; DataError when ``rset`` is not the data split."""
        part_of = {qid: name for name, ids in self.parts.items() for qid in ids}
        unknown = [q for q in rset.query_ids if q not in part_of]
        if unknown:
            raise DataError(f"{len(unknown)} query id(s) of this data are in no part of the split, e.g. {unknown[:3]}",
                            hint="the split was made for other data: make a split for this data")
        missing = set(part_of) - set(rset.query_ids)
        if missing:
            raise DataError(f"the split lists {len(missing)} query id(s) this data lacks, e.g. {sorted(missing)[:3]}",
                            hint="the split was made for other data: make a split for this data")
        names = np.array([part_of[q] for q in rset.query_ids], dtype=object)
        return {name: np.nonzero(names == name)[0] for name in self.parts}

    def apply(self, rset: RankingSet) -> tuple[RankingSet, ...]:
        """``(train, valid, test)`` RankingSets (queries in their original order)."""
        idx = self.part_indices(rset)
        return tuple(rset.subset(idx[name]) for name in self.parts)

    @classmethod
    def from_labels(cls, query_ids: np.ndarray, labels: np.ndarray, method: str, params: dict) -> "RankingSplit":
        """Parts from a per-query part number (0 train, 1 valid, 2 test); a repeated query id must
        get one part only, else the split would leak it."""
        seen: dict[str, int] = {}
        for q, k in zip(query_ids, labels):
            if seen.setdefault(q, int(k)) != int(k):
                raise DataError(f"query id {q!r} repeats and would fall in two parts",
                                hint="give each query a unique id (or one timestamp)")
        first = np.sort(np.unique(query_ids, return_index=True)[1]) if len(query_ids) else np.zeros(0, int)
        ids, lab = np.asarray(query_ids, dtype=object)[first], np.asarray(labels)[first]
        return cls(method, {name: ids[lab == k] for k, name in enumerate(PARTS)}, params)


# -- interaction data: parts are row indices -------------------------------------------------
@dataclass(eq=False)
class InteractionSplit(Split):
    unit: ClassVar[str] = "row"

    @staticmethod
    def _ids(values) -> np.ndarray:
        return np.array([int(v) for v in values], dtype=np.int64)

    def apply(self, interactions: Interactions) -> tuple[Interactions, ...]:
        """``(train, valid, test)`` Interactions; DataError on data other than the split's."""
        if self.data_fingerprint is not None and interactions.fingerprint() != self.data_fingerprint:
            raise DataError("these interactions are not the ones the split was made on (fingerprint differs)",
                            hint="make the split on this data")
        return tuple(interactions.take(rows) for rows in self.parts.values())

    @classmethod
    def from_labels(cls, interactions: Interactions, labels: np.ndarray, method: str, params: dict | None = None) -> "InteractionSplit":
        """Parts from a per-row part number (0 train, 1 valid, 2 test)."""
        labels = np.asarray(labels)
        if labels.shape != (len(interactions),):
            raise DataError(f"{labels.shape} part labels for {len(interactions)} interactions")
        return cls(
            method,
            {name: np.nonzero(labels == k)[0].astype(np.int64) for k, name in enumerate(PARTS)},
            dict(params or {}),
            interactions.fingerprint(),
        )


# -- makers ----------------------------------------------------------------------------------
def _part_sizes(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Sizes adding up to ``n``: floors of ``f * n``, leftovers to the largest remainders."""
    fr = [float(f) for f in fractions]
    if len(fr) != len(PARTS) or any(not math.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"split fractions {list(fractions)} must be three non-negative numbers adding up to 1")
    raw = np.array(fr) * n
    sizes = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - sizes), kind="stable")
    sizes[order[: n - int(sizes.sum())]] += 1
    return sizes


def query_grouped_split(rset: RankingSet, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> RankingSplit:
    """Whole queries to train/valid/test at random (seeded); see the module docstring."""
    first = np.sort(np.unique(rset.query_ids, return_index=True)[1])
    ids = rset.query_ids[first]
    sizes = _part_sizes(len(ids), fractions)
    labels = np.empty(len(ids), dtype=np.int64)
    labels[np.random.default_rng(seed).permutation(len(ids))] = np.repeat(np.arange(len(PARTS)), sizes)
    return RankingSplit.from_labels(ids, labels, "query_grouped",
                                    {"fractions": [float(f) for f in fractions], "seed": int(seed)})


def _time_labels(times: np.ndarray, valid_frac: float, test_frac: float) -> tuple[np.ndarray, dict]:
    """Part per row from global time cuts (ties to the later part) and the cut times."""
    fr = (valid_frac, test_frac)
    if any(not math.isfinite(f) or f < 0 for f in fr) or sum(fr) >= 1:
        raise ConfigError(f"valid_frac {valid_frac} and test_frac {test_frac} must be >= 0 and add up to less than 1")
    times = np.asarray(times, dtype=np.float64)
    if not np.all(np.isfinite(times)):
        raise DataError("timestamps hold NaN or inf; a temporal split needs real times")
    n = len(times)
    ordered = np.sort(times, kind="stable")
    n_test, n_valid = round(test_frac * n), round(valid_frac * n)
    test_from = float(ordered[n - n_test]) if n_test > 0 else math.inf
    valid_from = float(ordered[max(n - n_test - n_valid, 0)]) if n_valid > 0 else test_from
    labels = np.where(times >= test_from, 2, np.where(times >= valid_from, 1, 0))
    cuts = {"valid_from": None if math.isinf(valid_from) else valid_from,
            "test_from": None if math.isinf(test_from) else test_from}
    return labels, {"valid_frac": float(valid_frac), "test_frac": float(test_frac), **cuts}


def temporal_split(interactions: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1) -> InteractionSplit:
    """Rows before the valid cut to train, then valid, then test (global time; ties later)."""
    labels, params = _time_labels(interactions.timestamps, valid_frac, test_frac)
    return InteractionSplit.from_labels(interactions, labels, "temporal", params)


def temporal_query_split(rset: RankingSet, query_timestamps, valid_frac: float = 0.1, test_frac: float = 0.1) -> RankingSplit:
    """Queries by their time (``query_timestamps (Q,)``, aligned with ``rset.query_ids``)."""
    ts = np.asarray(query_timestamps, dtype=np.float64)
    if ts.shape != (rset.n_queries,):
        raise DataError(f"query_timestamps has shape {ts.shape}, expected ({rset.n_queries},): one per query")
    labels, params = _time_labels(ts, valid_frac, test_frac)
    return RankingSplit.from_labels(rset.query_ids, labels, "temporal_query", params)


def leave_one_out(interactions: Interactions) -> InteractionSplit:
    """Per user: last event to test, second last to valid, rest to train (see module docstring)."""
    times = interactions.timestamps
    if not np.all(np.isfinite(times)):
        raise DataError("timestamps hold NaN or inf; leave-one-out needs an order of events")
    _, users = np.unique(interactions.user_ids, return_inverse=True)
    order = np.lexsort((times, users))  # lexsort is stable: equal times keep row order
    counts = np.bincount(users)
    group_end = np.cumsum(counts)
    from_end = group_end[users[order]] - 1 - np.arange(len(order))
    part = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0))
    part[counts[users[order]] < 3] = 0
    labels = np.empty(len(order), dtype=np.int64)
    labels[order] = part
    return InteractionSplit.from_labels(interactions, labels, "leave_one_out",
                                        {"users_all_train": int((counts < 3).sum())})
