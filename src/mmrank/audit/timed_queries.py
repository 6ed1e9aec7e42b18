"""Reranking data with time: each query is one user at one cut time, so the time checks apply.

A time-split reranking task (the ML-100K task of ``mmrank data features``: ``task.json`` beside
the ranking files) gives every query a user and a *cut time* tau: the query shows what happened
before tau, its positive candidates are what the user did at or after tau. With the ratings file
the task was built from (``--interactions``), the audit turns the queries into events:

* **training events** (train and valid queries: the model learnt from them, or chose its epoch
  on them): each positive candidate at the time the user rated it (at or after the query's cut),
  plus one event at the query's cut itself (the model saw the user's history up to it);
* **test events**: each positive candidate of a test query at the query's cut: from the cut on,
  the test query's user is the future.

``temporal_leakage`` then FAILs on a training event of a test user later than that user's test
cut (and, when every test query shares one cut, on any training event at or after it), and
``split_sensitivity`` compares the audited split with a temporal re-split of the same queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrank.data.model import Interactions, RankingSet
from mmrank.data.ml100k_rerank_task import query_windows
from mmrank.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


@dataclass
class QueryTimes:
    """Per split, each query's user and cut time (``{split: {query_id: value}}``), and the
    fingerprint of the interactions the task was built from (when known)."""

    users: dict[str, dict[str, str]]
    cuts: dict[str, dict[str, float]]
    interactions_fingerprint: str | None = None
    source: str = "<given>"

    def of(self, split: str, rset: RankingSet) -> tuple[np.ndarray, np.ndarray]:
        """(users, cut times) of ``rset``'s queries as the task recorded them for ``split``.

        Raises:
            DataError: a query of ``rset`` has no recorded cut (the task describes other data)."""
        cuts, users = self.cuts.get(split, {}), self.users.get(split, {})
        missing = [q for q in rset.query_ids.tolist() if q not in cuts]
        if missing:
            raise DataError(f"{len(missing)} {split} queries have no cut time in the task (e.g. {missing[0]!r})",
                            path=self.source, hint="pass the task.json written with these ranking files (--task)")
        return (np.array([users[q] for q in rset.query_ids.tolist()], dtype=object),
                np.array([cuts[q] for q in rset.query_ids.tolist()], dtype=np.float64))

    def is_temporal(self) -> bool:
        """True when every test cut is at or after every train/valid cut (a time split)."""
        before = [t for s in ("train", "valid") for t in self.cuts.get(s, {}).values()]
        test = list(self.cuts.get("test", {}).values())
        return not before or not test or min(test) >= max(before)

    def global_test_cut(self) -> float | None:
        """The test cut when every test query shares one, else None."""
        test = set(self.cuts.get("test", {}).values())
        return float(next(iter(test))) if len(test) == 1 else None


def read_query_times(path: str | Path) -> QueryTimes:
    """The query users and cut times of a ``task.json`` (each query's window start, see
    :func:`~mmrank.data.ml100k_rerank_task.query_windows`; users from ``user_per_query`` when
    present, else the query id before its last ``@``).

    Raises:
        ConfigError: the file cannot be read, or lists no query cut times."""
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read the task description: {e} — pass the task.json written by "
                          "`mmrank data features`") from e
    return query_times_from(info, str(path))


def query_times_from(info: dict, source: str = "<task info>") -> QueryTimes:
    """:class:`QueryTimes` from a task description (``build_rerank_task``'s info, ``task.json``).

    Raises:
        ConfigError: it lists no query cut times."""
    windows = query_windows(info)
    if windows is None:
        raise ConfigError(f"{source}: no window_per_query (or cut_time_per_query) — a time-split task's task.json "
                          "lists each query's cut time")
    cuts = {s: {q: w[0] for q, w in v.items()} for s, v in windows.items()}
    given = info.get("user_per_query") or {}
    users = {s: {q: str(given.get(s, {}).get(q, q.rsplit("@", 1)[0])) for q in v} for s, v in cuts.items()}
    fingerprint = (info.get("interactions") or {}).get("fingerprint")
    return QueryTimes(users, cuts, fingerprint, source)


def task_beside(test_file: str | Path) -> Path | None:
    """``task.json`` in the test file's folder when it describes a time-split task, else None."""
    path = Path(test_file).parent / "task.json"
    if not path.is_file():
        return None
    try:
        return path if query_windows(json.loads(path.read_text(encoding="utf-8"))) is not None else None
    except (OSError, ValueError):
        return None


def _event_times(events: Interactions) -> dict[tuple[str, str], np.ndarray]:
    """(user, item) -> sorted times of its events."""
    order = np.lexsort((events.timestamps, events.item_ids.astype(str), events.user_ids.astype(str)))
    out: dict[tuple[str, str], list[float]] = {}
    for u, i, t in zip(events.user_ids[order].tolist(), events.item_ids[order].tolist(), events.timestamps[order].tolist()):
        out.setdefault((str(u), str(i)), []).append(float(t))
    return {k: np.asarray(v) for k, v in out.items()}


def query_events(times: QueryTimes, sets: dict[str, RankingSet], events: Interactions
                 ) -> tuple[Interactions, Interactions, int]:
    """(training events, test events, training positives with no rating at or after their
    query's cut in ``events``) as the module docstring defines them; ``sets`` maps split names
    to RankingSets (``valid`` optional).

    Raises:
        ConfigError: ``events`` is not the interactions file the task was built from (its
            recorded fingerprint differs)."""
    if times.interactions_fingerprint and events.fingerprint() != times.interactions_fingerprint:
        raise ConfigError(f"the interactions given are not the ones the task was built from (fingerprint "
                          f"{events.fingerprint()} vs {times.interactions_fingerprint} in {times.source}) — pass the "
                          "ratings file the task was built from as --interactions")
    rated = _event_times(events)
    train_rows: list[tuple[str, str, float]] = []
    test_rows: list[tuple[str, str, float]] = []
    unmatched = 0
    for split, rset in sets.items():
        if rset is None:
            continue
        users, cuts = times.of(split, rset)
        qi = rset.query_index
        for n in np.flatnonzero(rset.labels > 0):
            u, item, cut = str(users[qi[n]]), str(rset.candidate_ids[n]), float(cuts[qi[n]])
            if split == "test":
                test_rows.append((u, item, cut))
                continue
            when = rated.get((u, item), np.empty(0))
            later = when[when >= cut]
            unmatched += int(not later.size)
            train_rows.append((u, item, float(later[0]) if later.size else cut))
        if split != "test":
            train_rows += [(str(u), "<history up to the cut>", float(c)) for u, c in zip(users, cuts)]

    def as_events(rows):
        u, i, t = zip(*rows) if rows else ((), (), ())
        return Interactions(np.array(u, dtype=object), np.array(i, dtype=object), np.array(t, dtype=np.float64))

    return as_events(train_rows), as_events(test_rows), unmatched
