"""Column-wise parsing of an interaction file that breaks no rule (the usual case), with pandas.

``interaction_table`` first tries this; it gives up (returns None) at the first sign of anything
the line-by-line parser would treat specially, and the line parser then reads the file and
reports each bad record with its line. To keep the two paths identical on what this one
accepts, it only takes files whose bytes are printable ASCII without spaces, tabs and newlines
(so no decoding, stripping, CR or blank-line questions arise), where every line holds exactly
``n_fields - 1`` separators, ids are non-empty, numbers parse to finite values, and no
(user, item, timestamp) repeats. Numbers are pandas' own parse (its C parser, which agrees with
Python's ``float`` on everything it reads as a number; what it leaves as text makes this path
decline); ``test_interaction_fuzz`` checks the two paths agree.
"""

from __future__ import annotations

import csv
import io
from typing import Callable

import numpy as np

# Bytes the fast path accepts: printable ASCII except space, plus TAB and LF.
_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[0x21:0x7F] = True
_ALLOWED[[0x09, 0x0A]] = True


def _record_lines(buf: np.ndarray, sep: int, n_fields: int) -> np.ndarray | None:
    """0-based indices of the non-empty lines, or None unless each has ``n_fields - 1`` seps
    and is not made of separators only (such a line is blank to the line parser)."""
    newlines = np.flatnonzero(buf == 0x0A)
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(buf)]])
    sep_at = np.flatnonzero(buf == sep)
    seps = np.searchsorted(sep_at, ends) - np.searchsorted(sep_at, starts)
    length = ends - starts
    records = length > 0
    if (seps[records] != n_fields - 1).any() or (length[records] == seps[records]).any():
        return None
    return np.flatnonzero(records)


def _finite(column, rating_range: tuple[float, float] | None = None) -> np.ndarray | None:
    """A numeric column as float64, or None if pandas left text in it (a field that is no
    number, or an integer beyond 64 bits) or any value is not finite (or out of range)."""
    if column.dtype.kind not in "iuf":
        return None
    values = column.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    if rating_range is not None and not ((values >= rating_range[0]) & (values <= rating_range[1])).all():
        return None
    return values


def parse_clean(
    body: bytes,
    first_lineno: int,
    *,
    n_fields: int,
    user: int,
    item: int,
    rating: int | None,
    timestamp: int | None,
    int_columns: dict[str, int],
    sep: str,
    rating_range: tuple[float, float] | None,
    item_id_check: Callable[[str], str | None] | None,
    int_column_check: dict[str, Callable[[int], bool]],
) -> dict | None:
    """Arrays ``users, items, ratings, times, line_numbers, extra`` or None (use the line parser)."""
    if not body or sep != "\t":  # with another separator, a TAB inside a field is whitespace to strip
        return None
    buf = np.frombuffer(body, dtype=np.uint8)
    if not _ALLOWED[buf].all():
        return None
    lines = _record_lines(buf, ord(sep), n_fields)
    if lines is None or len(lines) == 0:
        return None
    import pandas as pd  # imported here: pandas is slow to import and only this path needs it

    wanted = sorted({user, item, *(c for c in (rating, timestamp) if c is not None), *int_columns.values()})
    try:
        df = pd.read_csv(
            io.BytesIO(body), sep=sep, header=None, names=list(range(n_fields)), usecols=wanted,
            dtype={user: object, item: object}, quoting=csv.QUOTE_NONE, na_filter=False,
            skip_blank_lines=True, engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if len(df) != len(lines):
        return None
    users, items = df[user].to_numpy(dtype=object), df[item].to_numpy(dtype=object)
    if (users == "").any() or (items == "").any():
        return None
    if item_id_check is not None and any(item_id_check(i) is not None for i in set(items)):
        return None
    ratings = None
    if rating is not None:
        ratings = _finite(df[rating], rating_range)
        if ratings is None:
            return None
    if timestamp is not None:
        times = _finite(df[timestamp])
        if times is None or pd.DataFrame({"u": users, "i": items, "t": times}).duplicated().any():
            return None
    else:
        times = np.arange(len(df), dtype=np.float64)
    extra = {}
    for name, col in int_columns.items():
        values = _finite(df[col])
        if values is None or (values != np.round(values)).any():
            return None
        check = int_column_check.get(name)
        if check is not None and not all(check(int(v)) for v in np.unique(values)):
            return None
        extra[name] = values.astype(np.int64)
    return {"users": users, "items": items, "ratings": ratings, "times": times,
            "line_numbers": first_lineno + lines, "extra": extra}
