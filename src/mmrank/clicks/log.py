"""Click/impression logs: the documented schema, its readers and writers (docs/clicks.md).

One *session* is one query shown to one user: the ordered list of shown candidates (position =
place in the list, 1-based), which of them were clicked, and optionally each click's dwell time
in seconds. Two formats hold the same thing:

* **JSONL**, one session a line::

    {"session_id": "s1", "query_id": "q7", "shown": ["d3", "d9", "d1"], "clicks": ["d9"],
     "dwell": {"d9": 41.5}}

  ``session_id`` is optional (the line number is used), ``clicks`` must name shown candidates,
  ``dwell`` is optional and keyed by clicked candidate.
* **Parquet**, one row per shown candidate: ``session_id``, ``query_id``, ``candidate_id``,
  ``position`` (1-based, contiguous per session), ``clicked`` (bool), optional ``dwell`` (float,
  null when unknown). A session's rows must be contiguous.

Bad sessions are quarantined in a :class:`~mmrank.data.validate.ReadReport` with their line (or
first row) and reason; ``records_in == records_read + records_quarantined`` always holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.data.formats import BadRecord, read_json_lines
from mmrank.data.validate import ReadReport, is_finite_number
from mmrank.errors import DataError

FORMATS = ("jsonl", "parquet")
PARQUET_COLUMNS = ("session_id", "query_id", "candidate_id", "position", "clicked")


@dataclass
class ClickLog:
    """Sessions in CSR form: session ``s`` showed ``candidate_ids[offsets[s]:offsets[s+1]]`` in
    that order. ``clicks (M,)`` bool, ``dwell (M,)`` seconds (NaN: unknown or not clicked)."""

    session_ids: np.ndarray
    query_ids: np.ndarray
    offsets: np.ndarray
    candidate_ids: np.ndarray
    clicks: np.ndarray
    dwell: np.ndarray

    def __post_init__(self) -> None:
        self.session_ids = np.asarray(self.session_ids, dtype=object)
        self.query_ids = np.asarray(self.query_ids, dtype=object)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.candidate_ids = np.asarray(self.candidate_ids, dtype=object)
        self.clicks = np.asarray(self.clicks, dtype=bool)
        self.dwell = np.asarray(self.dwell, dtype=np.float64)
        s, m = len(self.session_ids), len(self.candidate_ids)
        if (self.query_ids.shape != (s,) or self.offsets.shape != (s + 1,) or self.offsets[0] != 0
                or self.offsets[-1] != m or self.clicks.shape != (m,) or self.dwell.shape != (m,)):
            raise DataError("inconsistent ClickLog: the session and impression arrays do not fit together")

    @property
    def n_sessions(self) -> int:
        """Number of sessions ``S``."""
        return len(self.session_ids)

    @property
    def n_impressions(self) -> int:
        """Number of shown candidates ``M`` over all sessions."""
        return len(self.candidate_ids)

    @property
    def session_index(self) -> np.ndarray:
        """(M,) the session of each impression."""
        return np.repeat(np.arange(self.n_sessions), np.diff(self.offsets))

    @property
    def positions(self) -> np.ndarray:
        """(M,) 1-based position of each impression within its session."""
        return np.arange(self.n_impressions) - self.offsets[:-1][self.session_index] + 1

    @property
    def impression_query_ids(self) -> np.ndarray:
        """(M,) the query id of each impression."""
        return self.query_ids[self.session_index]

    def satisfied_clicks(self, min_dwell: float | None) -> np.ndarray:
        """Clicks that count: every click, or with ``min_dwell`` only clicks whose dwell is known
        and at least that many seconds (a quick back-click is not a sign of relevance)."""
        if min_dwell is None:
            return self.clicks
        return self.clicks & (np.nan_to_num(self.dwell, nan=-np.inf) >= min_dwell)

    def summary(self) -> dict:
        """Counts as JSON-ready data: sessions, impressions, clicks, queries, sessions with a click."""
        per_session = np.add.reduceat(self.clicks, self.offsets[:-1]) if self.n_impressions else np.zeros(0)
        return {"sessions": self.n_sessions, "impressions": self.n_impressions, "clicks": int(self.clicks.sum()),
                "queries": int(len(np.unique(self.query_ids.astype(str)))) if self.n_sessions else 0,
                "sessions_with_click": int(np.count_nonzero(per_session[np.diff(self.offsets) > 0]))}


def _text(value, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        raise BadRecord(f"{what} must be a non-empty string or number", f"give every session a {what}")
    return str(value)


def _session_from_json(obj, line: int) -> tuple[str, str, list[str], list[bool], list[float]]:
    if not isinstance(obj, dict):
        raise BadRecord("a line must be a JSON object", "write one session object per line")
    session = _text(obj.get("session_id", f"line{line}"), "session_id")
    query = _text(obj.get("query_id"), "query_id")
    shown = obj.get("shown")
    if not isinstance(shown, list) or not shown:
        raise BadRecord("'shown' must be a non-empty list of candidate ids", "list the shown candidates in display order")
    shown = [_text(c, "shown candidate id") for c in shown]
    if len(set(shown)) != len(shown):
        raise BadRecord("a candidate is shown twice in one session", "give each shown candidate once")
    clicks = obj.get("clicks", [])
    if not isinstance(clicks, list):
        raise BadRecord("'clicks' must be a list of clicked candidate ids", "write [] when nothing was clicked")
    clicked = {_text(c, "clicked candidate id") for c in clicks}
    unknown = sorted(clicked - set(shown))
    if unknown:
        raise BadRecord(f"clicked {unknown[0]!r} was not shown", "clicks must name candidates of 'shown'")
    dwell_obj = obj.get("dwell", {}) or {}
    if not isinstance(dwell_obj, dict):
        raise BadRecord("'dwell' must be an object {candidate_id: seconds}", "or leave it out")
    dwell = []
    for c in shown:
        value = dwell_obj.get(c)
        if value is not None and (not is_finite_number(value) or value < 0):
            raise BadRecord(f"dwell of {c!r} is not a non-negative number", "give dwell in seconds")
        if value is not None and c not in clicked:
            raise BadRecord(f"dwell given for {c!r}, which was not clicked", "give dwell only for clicks")
        dwell.append(np.nan if value is None else float(value))
    return session, query, shown, [c in clicked for c in shown], dwell


def _assemble(sessions: list[tuple[str, str, list[str], list[bool], list[float]]]) -> ClickLog:
    sizes = [len(s[2]) for s in sessions]
    return ClickLog(
        session_ids=[s[0] for s in sessions], query_ids=[s[1] for s in sessions],
        offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        candidate_ids=[c for s in sessions for c in s[2]],
        clicks=np.array([c for s in sessions for c in s[3]], dtype=bool),
        dwell=np.array([d for s in sessions for d in s[4]], dtype=np.float64),
    )


def _read_jsonl(path: Path, report: ReadReport) -> ClickLog:
    sessions = []
    read_json_lines(path, report, lambda no, obj: sessions.append(_session_from_json(obj, no)))
    return _assemble(sessions)


def _read_parquet(path: Path, report: ReadReport) -> ClickLog:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path).to_pandas()
    except Exception as e:  # noqa: BLE001 — pyarrow raises many types for a bad file
        raise DataError(f"cannot read as Parquet ({str(e)[:120]})", path=path, hint="write the log with pyarrow") from None
    missing = [c for c in PARQUET_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", path=path, hint=f"a click log has columns {list(PARQUET_COLUMNS)} (+ dwell)")
    sid = table["session_id"].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.zeros(0, dtype=np.int64)
    bounds = np.r_[starts, len(sid)]
    seen: set[str] = set()
    sessions = []
    dwell_col = table["dwell"].to_numpy(dtype=np.float64, na_value=np.nan) if "dwell" in table.columns else None
    for a, b in zip(bounds[:-1], bounds[1:]):
        report.records_in += 1
        rows = table.iloc[a:b]
        try:
            if sid[a] in seen:
                raise BadRecord(f"session {sid[a]!r} is not contiguous", "sort the rows by session")
            seen.add(sid[a])
            if rows["query_id"].nunique() != 1:
                raise BadRecord("one session has several query ids", "give every row of a session the same query_id")
            if not np.array_equal(rows["position"].to_numpy(), np.arange(1, b - a + 1)):
                raise BadRecord("positions are not 1, 2, ... in row order", "write a session's rows in display order")
            obj = {"session_id": sid[a], "query_id": rows["query_id"].iloc[0], "shown": rows["candidate_id"].astype(str).tolist(),
                   "clicks": rows["candidate_id"][rows["clicked"].astype(bool)].astype(str).tolist()}
            if dwell_col is not None:
                obj["dwell"] = {c: float(d) for c, d in zip(obj["shown"], dwell_col[a:b]) if np.isfinite(d)}
            sessions.append(_session_from_json(obj, int(a) + 1))
        except BadRecord as bad:
            report.bad(int(a) + 1, bad.message, bad.hint, rows.to_json(orient="records")[:2000])
            continue
        report.records_read += 1
    return _assemble(sessions)


def click_log_format(path: str | Path) -> str:
    """``"parquet"`` for ``*.parquet`` and ``"jsonl"`` for anything else."""
    return "parquet" if str(path).endswith(".parquet") else "jsonl"


def read_click_log(path: str | Path, *, strict: bool = False) -> tuple[ClickLog, ReadReport]:
    """Read a click log (JSONL or Parquet by extension), quarantining bad sessions.

    Args:
        path: ``*.jsonl`` (one session a line) or ``*.parquet`` (one row per shown candidate).
        strict: raise ``DataError`` at the first bad session instead of quarantining it.

    Returns:
        ``(log, report)``: the good sessions, and the counts + problems of the read.

    Raises:
        DataError: when the file is missing, unreadable, lacks a required Parquet column, or
            (strict) at the first bad session.

    Example:
        >>> log, report = read_click_log("clicks.jsonl")  # doctest: +SKIP
        >>> log.summary(), report.records_quarantined  # doctest: +SKIP
    """
    path = Path(path)
    report = ReadReport(str(path), strict=strict)
    log = _read_parquet(path, report) if click_log_format(path) == "parquet" else _read_jsonl(path, report)
    report.check_counts()
    return log, report


def write_click_log(log: ClickLog, path: str | Path) -> Path:
    """Write ``log`` in the format its extension names (``.parquet`` or JSONL), atomically."""
    path = Path(path)
    positions = log.positions
    if click_log_format(path) == "parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        si = log.session_index
        table = pa.table({
            "session_id": pa.array(log.session_ids[si].astype(str).tolist()),
            "query_id": pa.array(log.query_ids[si].astype(str).tolist()),
            "candidate_id": pa.array(log.candidate_ids.astype(str).tolist()),
            "position": pa.array(positions.astype(np.int32)),
            "clicked": pa.array(log.clicks),
            "dwell": pa.array(log.dwell, mask=np.isnan(log.dwell)),
        })
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return atomic_write_bytes(path, buf.getvalue())
    lines = []
    for s in range(log.n_sessions):
        a, b = log.offsets[s], log.offsets[s + 1]
        shown = [str(c) for c in log.candidate_ids[a:b]]
        obj = {"session_id": str(log.session_ids[s]), "query_id": str(log.query_ids[s]), "shown": shown,
               "clicks": [c for c, k in zip(shown, log.clicks[a:b]) if k]}
        dwell = {c: float(d) for c, d in zip(shown, log.dwell[a:b]) if np.isfinite(d)}
        if dwell:
            obj["dwell"] = dwell
        lines.append(json.dumps(obj, separators=(",", ":")))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
