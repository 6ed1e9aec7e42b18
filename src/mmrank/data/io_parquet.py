"""Parquet ranking files: one row per candidate.

Columns: ``query_id``, ``domain``, ``query_text`` (nullable), ``candidate_id``, ``label``
(float64), optional ``baseline_score`` (float64), one ``list<float32>`` column ``f.<name>`` per
candidate modality and ``qf.<name>`` per query feature (repeated on every row of the query).
A query's rows must be contiguous.

A *record* is one query (its contiguous rows); the "line" of a problem is the 1-based row
number of the query's first row. Column-level problems (a required column missing, a column of
the wrong type) concern every record, so they raise ``DataError`` at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrank.data.formats import FLOAT32_MAX, BadRecord, SchemaTracker, empty_ranking_set, require_finite
from mmrank.data.model import RankingSet
from mmrank.data.validate import QueryChecker, ReadReport
from mmrank.atomic_io import atomic_write_bytes
from mmrank.errors import DataError

REQUIRED = ("query_id", "candidate_id", "label")
FEATURE_PREFIX, QUERY_FEATURE_PREFIX = "f.", "qf."


def _list_column(matrix: np.ndarray):
    import pyarrow as pa

    n, d = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).ravel())
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), values)


def write_parquet(rset: RankingSet, path: str | Path) -> Path:
    """Write ``rset`` one row per candidate (atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    require_finite(rset, path)
    qi = rset.query_index
    cols = {
        "query_id": pa.array(rset.query_ids[qi].astype(str).tolist(), pa.string()),
        "domain": pa.array(rset.domains[qi].astype(str).tolist(), pa.string()),
        "query_text": pa.array(
            [None] * rset.n_candidates if rset.query_texts is None else list(rset.query_texts[qi]), pa.string()
        ),
        "candidate_id": pa.array(rset.candidate_ids.astype(str).tolist(), pa.string()),
        "label": pa.array(rset.labels, pa.float64()),
    }
    if rset.baseline_scores is not None:
        cols["baseline_score"] = pa.array(rset.baseline_scores, pa.float64())
    for name in sorted(rset.features):
        cols[FEATURE_PREFIX + name] = _list_column(rset.features[name])
    for name in sorted(rset.query_features):
        cols[QUERY_FEATURE_PREFIX + name] = _list_column(rset.query_features[name][qi])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(cols), sink)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def _load_table(path: Path):
    import pyarrow.parquet as pq

    if path.is_dir():
        raise DataError("is a folder, expected a Parquet file", path=path, hint="pass the .parquet file itself")
    try:
        table = pq.read_table(path)
        table.validate(full=True)  # catches bad UTF-8 and bad offsets now, not deep inside numpy later
        return table
    except MemoryError:
        raise DataError("file claims sizes too large to read (corrupt?)", path=path,
                        hint="check the file, or rewrite it with `mmrank data convert`") from None
    except Exception as e:  # pyarrow raises many types (ArrowInvalid, OSError, ...) for corrupt files
        raise DataError(f"not a readable Parquet file ({type(e).__name__}: {str(e)[:120]})", path=path,
                        hint="check that the file is Parquet and complete") from None


def _strings(table, name: str, path: Path) -> np.ndarray:
    """A column as an object array of str (None for nulls); DataError if it is not text-like."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_integer(col.type)):
        raise DataError(f"column {name!r} has type {col.type}, expected string", path=path,
                        hint="write ids and texts as strings")
    return np.array(pc.cast(col, pa.string()).to_pylist(), dtype=object)


def _floats(table, name: str, path: Path) -> np.ndarray:
    """A numeric column as float64 (NaN for nulls); DataError if it is not numeric."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        raise DataError(f"column {name!r} has type {col.type}, expected a number", path=path,
                        hint=f"write {name} as float64")
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


class _Matrix:
    """A list<number> (or plain numeric) column as flat float32 values + per-row bounds."""

    def __init__(self, table, name: str, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        col = table.column(name)
        t = col.type
        # float64 with safe=False: huge ints become floats (not an ArrowInvalid); values beyond
        # float32 are then caught per query in block(), at the query's row
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            values = pc.cast(col, pa.float64(), safe=False)
            self.lengths = np.where(pc.is_null(values).to_numpy(zero_copy_only=False), -1, 1)
            self.values = np.asarray(pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
        elif (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
            pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)
        ):
            lengths = pc.list_value_length(col)
            self.lengths = np.asarray(pc.fill_null(lengths, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
            flat = pc.list_flatten(col)
            # element nulls become NaN, which the QueryChecker reports as non-finite
            self.values = np.asarray(pc.cast(flat, pa.float64(), safe=False).to_numpy(zero_copy_only=False),
                                     dtype=np.float64)
        else:
            raise DataError(f"column {name!r} has type {t}, expected list<float32>", path=path,
                            hint="write each modality as a list of numbers per row")
        self.bounds = np.concatenate([[0], np.cumsum(np.maximum(self.lengths, 0))])
        if self.bounds[-1] != len(self.values):
            raise DataError(f"column {name!r} is inconsistent (corrupt file?)", path=path,
                            hint="rewrite the file")

    def block(self, a: int, b: int, what: str) -> np.ndarray:
        lengths = self.lengths[a:b]
        if np.any(lengths < 0):
            raise BadRecord(f"{what} is null in row {a + 1 + int(np.argmax(lengths < 0))}", f"give every row its {what}")
        if np.any(lengths == 0):
            raise BadRecord(f"{what} is an empty list", f"give every row a non-empty {what}")
        if np.any(lengths != lengths[0]):
            raise BadRecord(f"{what} has lengths {sorted(set(lengths.tolist()))} within one query",
                            f"give every {what} vector of a query the same length")
        block = self.values[self.bounds[a]:self.bounds[b]].reshape(b - a, int(lengths[0]))
        finite = np.abs(block[np.isfinite(block)])  # NaN/inf are left to the QueryChecker's message
        if finite.size and finite.max() > FLOAT32_MAX:
            raise BadRecord(f"{what} holds a value beyond the float32 range", "rescale the feature")
        return block


@dataclass
class _Columns:
    n: int
    qids: np.ndarray
    cids: np.ndarray
    labels: np.ndarray
    domains: np.ndarray
    texts: np.ndarray
    base: np.ndarray | None
    feats: dict[str, _Matrix]
    qfeats: dict[str, _Matrix]


def _columns(table, path: Path) -> _Columns:
    names = table.column_names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise DataError(f"missing column(s) {missing}", path=path,
                        hint=f"a ranking Parquet file needs {list(REQUIRED)}")
    n = table.num_rows
    return _Columns(
        n=n,
        qids=_strings(table, "query_id", path),
        cids=_strings(table, "candidate_id", path),
        labels=_floats(table, "label", path),
        domains=_strings(table, "domain", path) if "domain" in names else np.full(n, None, dtype=object),
        texts=_strings(table, "query_text", path) if "query_text" in names else np.full(n, None, dtype=object),
        base=_floats(table, "baseline_score", path) if "baseline_score" in names else None,
        feats={c[len(FEATURE_PREFIX):]: _Matrix(table, c, path) for c in names if c.startswith(FEATURE_PREFIX)},
        qfeats={c[len(QUERY_FEATURE_PREFIX):]: _Matrix(table, c, path)
                for c in names if c.startswith(QUERY_FEATURE_PREFIX)},
    )


def read_parquet(
    path: str | Path, *, strict: bool = False, label_range: tuple[float, float] | None = None
) -> tuple[RankingSet, ReadReport]:
    """Read a one-row-per-candidate Parquet file, quarantining bad queries."""
    from pyarrow import ArrowException

    path = Path(path)
    report = ReadReport(str(path), strict=strict)
    table = _load_table(path)
    try:
        cols = _columns(table, path)
    except (ArrowException, ValueError, TypeError, OverflowError) as e:  # corrupt values that passed validate()
        raise DataError(f"unreadable column values ({type(e).__name__}: {str(e)[:120]})", path=path,
                        hint="rewrite the file, e.g. with `mmrank data convert`") from None
    return _group_queries(cols, table, report, label_range), report


def _group_queries(cols: _Columns, table, report: ReadReport, label_range) -> RankingSet:
    """Check each query (contiguous rows) and assemble the good ones."""
    n, qids, cids, labels, domains, texts, base, feats, qfeats = (
        cols.n, cols.qids, cols.cids, cols.labels, cols.domains, cols.texts, cols.base, cols.feats, cols.qfeats)
    checker = QueryChecker(label_range)
    schema = SchemaTracker()
    starts = np.flatnonzero(np.r_[True, qids[1:] != qids[:-1]]) if n else np.zeros(0, dtype=np.int64)
    bounds = np.r_[starts, n].astype(np.int64)
    seen: dict[str, int] = {}
    kept: list[tuple[int, int]] = []
    q_feats: dict[str, list[np.ndarray]] = {k: [] for k in feats}
    q_qfeats: dict[str, list[np.ndarray]] = {k: [] for k in qfeats}
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        report.records_in += 1
        try:
            qid = qids[a]
            if qid is None or qid == "":
                raise BadRecord("query_id is null or empty", "give every row its query_id")
            if qid in seen:
                raise BadRecord(f"query_id {qid!r} reappears (its rows started at row {seen[qid]})",
                                "keep each query's rows together (sort by query_id)")
            seen[qid] = a + 1  # even if this group turns out bad: a later group with its id is still split off
            if any(c is None for c in cids[a:b]):
                raise BadRecord("candidate_id is null", "give every row its candidate_id")
            for what, col in (("domain", domains), ("query_text", texts)):
                if len(set(col[a:b].tolist())) > 1:
                    raise BadRecord(f"rows of query {qid!r} disagree on {what}", f"give all rows of a query one {what}")
            f = {k: m.block(a, b, f"modality {k!r}") for k, m in feats.items()}
            qf = {k: m.block(a, b, f"query feature {k!r}") for k, m in qfeats.items()}
            for k, v in qf.items():
                if np.any((v != v[0]) & ~(np.isnan(v) & np.isnan(v[0]))):
                    raise BadRecord(f"rows of query {qid!r} disagree on query feature {k!r}",
                                    "repeat the same query features on every row of a query")
            problem = schema.problem(f, qf, base is not None)  # fixed by the columns; kept for symmetry
            if problem:
                raise BadRecord(*problem)
            problems = checker.problems(cids[a:b].tolist(), labels[a:b], f, {k: v[:1] for k, v in qf.items()},
                                        None if base is None else base[a:b])
            if problems:
                raise BadRecord(*problems[0])
        except BadRecord as bad:
            report.bad(a + 1, bad.message, bad.hint, _row_text(table, a, b))
            continue
        schema.accept(f, qf, base is not None)
        kept.append((a, b))
        for k, v in f.items():
            q_feats[k].append(v)
        for k, v in qf.items():
            q_qfeats[k].append(v[:1])
        report.records_read += 1
    if not kept:
        return empty_ranking_set()
    rows = np.concatenate([np.arange(a, b) for a, b in kept])
    first = np.array([a for a, _ in kept])
    q_texts = texts[first]
    return RankingSet(
        query_ids=qids[first],
        offsets=np.concatenate([[0], np.cumsum([b - a for a, b in kept])]),
        candidate_ids=cids[rows],
        labels=labels[rows],
        domains=[("default" if d is None else d) for d in domains[first]],
        baseline_scores=None if base is None else base[rows],
        features={k: np.concatenate(v) for k, v in q_feats.items()},
        query_features={k: np.concatenate(v) for k, v in q_qfeats.items()},
        query_texts=q_texts if any(t is not None for t in q_texts) else None,
    )


def _row_text(table, a: int, b: int) -> str:
    """The query's rows as JSON for the quarantine file (never raises)."""
    try:
        return json.dumps(table.slice(a, min(b - a, 1000)).to_pylist(), default=str, ensure_ascii=False)
    except Exception:  # a row that cannot even be shown must not hide the reason it was quarantined
        return f"<rows {a + 1}..{b}>"
