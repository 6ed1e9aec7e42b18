"""LibSVM / LETOR ranking files: ``label qid:Q i:v ... # docid = X ...``.

Two layouts are read:

* LETOR (MQ2008, MSLR): every line carries ``qid:Q``; a query's lines must be contiguous; the
  ``docid`` in the trailing comment becomes the candidate id (``Q:k`` when there is none).
* LightGBM: no ``qid``; a group file ``<file>.query`` beside the data gives the number of lines
  of each query, one a line. Queries are named ``0, 1, ...`` and candidates ``<group>:<row>``.

A *record* is one non-blank, non-comment line: a bad line is quarantined on its own and the rest
of its query is kept. Features ``1..D`` become one dense ``(N, D)`` modality (``letor`` by
default; absent features are 0). Writing flattens all modalities (sorted by name, then query
features) into feature ids ``1..D``, so only a single-modality set round-trips unchanged.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from mmrank.data.formats import (
    FLOAT32_MAX,
    BadRecord,
    empty_ranking_set,
    fits_float32,
    format_label,
    iter_lines,
    raw_text,
    read_bytes,
    require_finite,
    short_float_texts,
)
from mmrank.data.model import RankingSet
from mmrank.data.validate import QueryChecker, ReadReport
from mmrank.atomic_io import atomic_write_text
from mmrank.errors import DataError

_DOCID = re.compile(r"docid\s*=\s*(\S+)")
# A dense (N, D) float32 matrix past this many cells is almost surely a corrupt feature index.
MAX_DENSE_CELLS = 200_000_000


def _parse_line(text: str, max_feature_index: int) -> tuple[float, str | None, np.ndarray, np.ndarray, str | None]:
    """label, qid (or None), feature ids, values, docid (or None) of one line; BadRecord if malformed."""
    body, _, comment = text.partition("#")
    tokens = body.split()
    if not tokens:
        raise BadRecord("no label before the comment", "start the line with its label")
    try:
        label = float(tokens[0])
    except ValueError:
        raise BadRecord(f"label {tokens[0][:40]!r} is not a number", "start the line with a numeric label") from None
    qid = None
    rest = tokens[1:]
    if rest and rest[0].startswith("qid:"):
        qid = rest[0][4:]
        if not qid:
            raise BadRecord("empty qid", "write qid:ID with a non-empty ID")
        rest = rest[1:]
    ids, values = _parse_features(rest, max_feature_index)
    m = _DOCID.search(comment)
    return label, qid, ids, values, (m.group(1) if m else None)


def _parse_features(tokens: list[str], max_feature_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Fast path over all ``index:value`` tokens at once; on any doubt, ``_diagnose`` names the
    first bad token exactly (the fast path only decides *whether* the line is good)."""
    try:
        pairs = [tok.split(":") for tok in tokens]
        ids = np.array([int(p[0]) for p in pairs], dtype=np.int64)
        values = np.array([float(p[1]) for p in pairs if len(p) == 2], dtype=np.float64)
    except (ValueError, IndexError, OverflowError):
        _diagnose(tokens, max_feature_index)
    good = (
        len(values) == len(ids)
        and (ids.size == 0 or (ids.min() >= 1 and ids.max() <= max_feature_index))
        and np.all(np.abs(values) <= FLOAT32_MAX)  # False for NaN and inf too
        and len(np.unique(ids)) == len(ids)
    )
    if not good:
        _diagnose(tokens, max_feature_index)
    return ids, values


def _diagnose(tokens: list[str], max_feature_index: int) -> None:
    """Raise BadRecord for the first bad ``index:value`` token, in line order (always raises)."""
    seen: set[int] = set()
    for tok in tokens:
        idx_text, colon, val_text = tok.partition(":")
        try:
            if not colon:
                raise ValueError
            idx = int(idx_text)
        except ValueError:
            raise BadRecord(f"bad token {tok[:40]!r}", "features are written index:value, e.g. 7:0.25") from None
        if idx <= 0:
            raise BadRecord(f"feature index {idx} is not positive", "feature indices start at 1")
        if idx > max_feature_index:
            raise BadRecord(
                f"feature index {idx} is larger than {max_feature_index}",
                "fix the index, or raise max_feature_index if the data really has that many features",
            )
        if idx in seen:
            raise BadRecord(f"feature index {idx} appears twice", "give each feature once per line")
        seen.add(idx)
        try:
            value = float(val_text)
        except ValueError:
            raise BadRecord(
                f"feature {idx} has non-numeric value {val_text[:40]!r}", "write the value as a number, e.g. 7:0.25"
            ) from None
        if not math.isfinite(value):
            raise BadRecord(f"feature {idx} is NaN or infinite", "replace it with a finite number")
        if not fits_float32(value):
            raise BadRecord(f"feature {idx} = {value:g} is beyond the float32 range", "rescale the feature")
    raise BadRecord("malformed features", "features are written index:value, e.g. 7:0.25")


def _read_group_sizes(path: Path, n_lines: int) -> list[int]:
    sizes = []
    text = read_bytes(path).decode("utf-8", errors="replace")
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            size = int(line.strip())
        except ValueError:
            raise DataError(f"group size {line.strip()[:40]!r} is not an integer", path=path, line=i,
                            hint="one positive number of lines per query, one a line") from None
        if size <= 0:
            raise DataError(f"group size {size} is not positive", path=path, line=i,
                            hint="one positive number of lines per query, one a line")
        sizes.append(size)
    if sum(sizes) != n_lines:
        raise DataError(
            f"group sizes sum to {sum(sizes)} but the data file has {n_lines} data lines", path=path,
            hint="make the group file match the data file (one size per query, in order)",
        )
    return sizes


def read_libsvm(
    path: str | Path,
    *,
    strict: bool = False,
    label_range: tuple[float, float] | None = None,
    modality: str = "letor",
    group_file: str | Path | None = None,
    max_feature_index: int = 100_000,
    n_features: int | None = None,
) -> tuple[RankingSet, ReadReport]:
    """Read a LETOR (``qid:``) or LightGBM (``.query`` group file) LibSVM ranking file.

    ``group_file`` defaults to ``<path>.query`` when that file exists; with it, ``qid`` tokens
    are ignored and groups come from the group file. ``n_features`` fixes the width D (so that
    a train and a test file agree even when the last features never occur in one of them); by
    default D is the largest feature id read."""
    path = Path(path)
    if n_features is not None:
        max_feature_index = int(n_features)
    report = ReadReport(str(path), strict=strict)
    lines = [
        (no, text, raw) for no, text, raw in iter_lines(read_bytes(path))
        if not (text is not None and text.lstrip().startswith("#"))  # whole-line comments are not records
    ]
    group_path = Path(group_file) if group_file is not None else Path(str(path) + ".query")
    if group_file is not None or group_path.is_file():
        sizes = _read_group_sizes(group_path, len(lines))
        group_of_line = np.repeat(np.arange(len(sizes)), sizes)
        row_in_group = np.arange(len(lines)) - np.repeat(np.cumsum([0] + sizes)[:-1], sizes)
    else:
        group_of_line = row_in_group = None

    checker = QueryChecker(label_range)
    q_ids: list[str] = []        # per good line
    c_ids: list[str] = []
    labels: list[float] = []
    rows: list[np.ndarray] = []  # feature ids per good line
    vals: list[np.ndarray] = []
    current: str | None = None   # qid of the query being read
    first_line: dict[str, int] = {}
    docid_line: dict[str, int] = {}  # docids of the current query -> line
    kept_in_query = 0
    for k, (no, text, raw) in enumerate(lines):
        report.records_in += 1
        try:
            if text is None:
                raise BadRecord("line is not UTF-8 text", "save the file as UTF-8")
            label, qid, ids, values, docid = _parse_line(text, max_feature_index)
            if group_of_line is not None:
                # Group numbers restart at 0 in every file: qualify them with the file name so that
                # query 0 of rank.train and query 0 of rank.test are not mistaken for one query.
                qid = f"{path.name}#{int(group_of_line[k])}"
                docid = docid or f"{qid}:{int(row_in_group[k])}"
            elif qid is None:
                raise BadRecord("qid missing", "write qid:ID after the label (or put a .query group file beside it)")
            if qid != current:
                if qid in first_line:
                    raise BadRecord(
                        f"qid {qid} reappears after other queries (it started at line {first_line[qid]})",
                        "keep each query's lines together (sort the file by qid)",
                    )
                # a new query starts only at a good line, so bad lines never split a query
                new_query = True
            else:
                new_query = False
            if docid is None:
                docid = f"{qid}:{0 if new_query else kept_in_query}"
            if not new_query and docid in docid_line:
                raise BadRecord(
                    f"duplicate docid {docid} in query {qid} (first at line {docid_line[docid]})",
                    "give every document of a query a unique docid",
                )
            problems = checker.problems([docid], [label])
            if problems:
                raise BadRecord(*problems[0])
        except BadRecord as bad:
            report.bad(no, bad.message, bad.hint, raw_text(raw))
            continue
        if new_query:
            current, kept_in_query, docid_line = qid, 0, {}
            first_line[qid] = no
        docid_line[docid] = no
        kept_in_query += 1
        report.records_read += 1
        q_ids.append(qid)
        c_ids.append(docid)
        labels.append(label)
        rows.append(ids)
        vals.append(values)
    return _build(path, q_ids, c_ids, labels, rows, vals, modality, n_features), report


def _build(path, q_ids, c_ids, labels, rows, vals, modality, n_features) -> RankingSet:
    n = len(c_ids)
    if n == 0:
        return empty_ranking_set()
    dim = n_features if n_features is not None else max((int(r.max()) for r in rows if r.size), default=0)
    if n * dim > MAX_DENSE_CELLS:
        raise DataError(
            f"a dense {n} x {dim} feature matrix is too large", path=path,
            hint="check for a corrupt feature index, or split the file",
        )
    sizes = np.fromiter((r.size for r in rows), dtype=np.int64, count=n)
    dense = np.zeros((n, dim), dtype=np.float32)
    if sizes.sum():
        dense[np.repeat(np.arange(n), sizes), np.concatenate(rows) - 1] = np.concatenate(vals)
    qarr = np.asarray(q_ids, dtype=object)
    starts = np.flatnonzero(np.r_[True, qarr[1:] != qarr[:-1]])
    return RankingSet(
        query_ids=qarr[starts],
        offsets=np.r_[starts, n],
        candidate_ids=c_ids,
        labels=labels,
        features={modality: dense} if dim else {},
    )


def _check_token(value: str, what: str, path: Path, allow: str = "") -> None:
    if not value or any(ch.isspace() for ch in value) or ("#" in value and "#" not in allow):
        raise DataError(
            f"{what} {value!r} cannot be written to LibSVM (empty, or holds whitespace or '#')", path=path,
            hint="rename the ids, or write JSONL/Parquet instead",
        )


def write_libsvm(rset: RankingSet, path: str | Path, *, group_file: bool = False) -> Path:
    """Write ``label qid:Q 1:v ... D:v # docid = X`` lines (dense feature ids, shortest float32 text).

    ``group_file=True`` writes LightGBM's form instead: no qid, and ``<path>.query`` with group sizes."""
    path = Path(path)
    require_finite(rset, path)
    matrix = rset.feature_matrix()
    d = matrix.shape[1]
    texts = short_float_texts(matrix)
    out: list[str] = []
    for qi, (qid, a, b) in enumerate(zip(rset.query_ids, rset.offsets[:-1], rset.offsets[1:])):
        _check_token(str(qid), "query id", path)
        for r in range(int(a), int(b)):
            cid = str(rset.candidate_ids[r])
            _check_token(cid, "candidate id", path, allow="#")
            parts = [format_label(rset.labels[r])]
            if not group_file:
                parts.append(f"qid:{qid}")
            parts.extend(f"{j}:{t}" for j, t in enumerate(texts[r * d:(r + 1) * d], start=1))
            parts.append(f"# docid = {cid}")
            out.append(" ".join(parts))
    text = "".join(line + "\n" for line in out)
    if group_file:
        atomic_write_text(str(path) + ".query", "".join(f"{int(s)}\n" for s in rset.group_sizes))
    return atomic_write_text(path, text)
