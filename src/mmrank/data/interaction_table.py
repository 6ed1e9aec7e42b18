"""Line-level parsing shared by the interaction readers (RecBole atomic, MovieLens raw, MMRec).

Each reader knows its own layout (separator, header, which column is what); this module turns
the lines of a delimited file into validated interaction rows. One data line is one *record*:
it is either accepted or handed to ``ReadReport.bad`` with its line number, so that
``records_in == records_read + records_quarantined`` holds for every file.

Rules every interaction reader shares (documented once, here):

* Bytes are decoded as UTF-8 (a leading BOM is dropped) unless the format says otherwise; a
  line that does not decode is a bad record, never a ``UnicodeDecodeError``.
* Lines are split on ``\\n`` only (a trailing ``\\r`` is dropped). Blank or whitespace-only
  lines are not records (a trailing newline is common) and are skipped.
* Fields are stripped of surrounding whitespace. A record is bad when its field count differs
  from the header's, an id is empty, a rating/timestamp is not a number or is NaN/inf, or a
  rating is outside ``rating_range`` (when given).
* Exact duplicates of (user, item, timestamp) are quarantined: the first occurrence is kept and
  every later one is reported as "duplicate of line N". A duplicated event would otherwise sit
  in two split parts at once (train *and* test), which is a leak, and dropping it silently would
  hide a data problem. Without a timestamp column there is no duplicate check (a user may
  consume the same item again, and the file order is then the only clock).
* Without a timestamp column, timestamps are the 0-based record order of the file and
  ``Interactions.order`` is ``"row"``: the rows carry no time, and nothing downstream may treat
  their order as one (the recommenders then use the data's own split or a random holdout that
  says so). A ``position`` column (``POSITION_NAMES``) instead of a time column gives each user's
  events an order without times (``order == "sequence"``); it is parsed and checked like a
  timestamp.
* Column names of headered formats (MMRec, plain tables) are matched case-insensitively against
  ``USER_NAMES``, ``ITEM_NAMES``, ``RATING_NAMES``, ``TIME_NAMES``, ``POSITION_NAMES`` and
  ``SPLIT_LABEL_NAMES`` (a RecBole-style ``:type`` suffix is ignored).
* Zero accepted records is an error (``DataError`` naming the first problem), since nothing
  downstream can work on an empty interaction set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mmrank.data.clean_table import parse_clean
from mmrank.data.formats import iter_lines, raw_text
from mmrank.data.model import ROW, SEQUENCE, TIME, Interactions
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

# A quarantined record keeps its raw text, cut so that a binary blob cannot bloat the report.
MAX_RAW_CHARS = 2000

# Column names the headered readers recognise (lower case, first match wins).
USER_NAMES = ("userid", "user_id", "user", "uid", "reviewerid", "visitorid", "session_id", "sessionid")
ITEM_NAMES = ("itemid", "item_id", "item", "iid", "asin", "movieid", "movie_id", "productid", "product_id")
RATING_NAMES = ("rating", "overall", "score")
TIME_NAMES = ("timestamp", "time", "unixreviewtime", "ts", "datetime")
POSITION_NAMES = ("position", "seq_position", "sequence_index")
SPLIT_LABEL_NAMES = ("x_label", "split", "split_label")
SPLIT_PARTS = ("train", "valid", "test")  # split label 0, 1, 2


def column_name(header_field: str) -> str:
    """A header field as the readers compare it: stripped, lower case, without a ``:type`` suffix."""
    return header_field.strip().split(":")[0].strip().lower()


def find_column(names: list[str], aliases: tuple[str, ...]) -> int | None:
    """Index of the first of ``aliases`` found in ``names`` (already :func:`column_name`-ed), or None."""
    for a in aliases:
        if a in names:
            return names.index(a)
    return None

Line = tuple[int, "str | None", bytes]  # (1-based line number, decoded text or None, raw bytes)


def drop_bom(data: bytes) -> bytes:
    """Strip a leading UTF-8 byte-order mark, if any (files saved on Windows often start with one).

    Args:
        data: the file's bytes.

    Returns:
        ``data`` without its first 3 bytes when they are ``EF BB BF``, else ``data`` unchanged.
    """
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def text_lines(data: bytes, encoding: str = "utf-8", first_lineno: int = 1) -> list[Line]:
    """The non-blank lines (``formats.iter_lines``) with a trailing ``\\r`` dropped, numbered from
    ``first_lineno``; a line that does not decode has text None and is reported where it is met.
    Latin-1 (MovieLens' ``u.item``) always decodes, so it is transcoded to UTF-8 first."""
    if encoding == "latin-1":
        data = data.decode("latin-1").encode("utf-8")
    shift = first_lineno - 1
    return [(n + shift, None if t is None else t.removesuffix("\r"), raw) for n, t, raw in iter_lines(data)]


def quarantined_text(line: Line) -> str:
    """Return a line's text as it goes into the quarantine file, cut to ``MAX_RAW_CHARS``.

    An undecodable line is decoded with replacement characters instead, so quarantining never
    fails on the bytes it is quarantining.

    Args:
        line: ``(line number, decoded text or None, raw bytes)``.

    Returns:
        At most ``MAX_RAW_CHARS`` characters.
    """
    _, text, raw = line
    return (raw_text(raw) if text is None else text)[:MAX_RAW_CHARS]


def data_lines(lines: list[Line], report: ReadReport) -> Iterator[tuple[int, str]]:
    """(line number, text) of each record line; undecodable ones are counted and reported."""
    for line in lines:
        lineno, text, _ = line
        if text is None:
            report.records_in += 1
            report.bad(lineno, "line is not valid UTF-8", "save the file as UTF-8", quarantined_text(line))
        elif text.strip():  # iter_lines skips ASCII-blank lines; this also skips Unicode-blank ones
            yield lineno, text


def split_header(data: bytes, path: Path) -> tuple[int, str, bytes, int]:
    """``(header line number, header text, the bytes after it, their first line number)``.

    The header is the first non-blank line; a DataError when there is none or it does not decode."""
    data = drop_bom(data)
    pos, lineno = 0, 1
    while pos <= len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        raw = data[pos:end]
        if raw.strip():
            try:
                text = raw.decode("utf-8").removesuffix("\r")
            except UnicodeDecodeError:
                raise DataError("header line is not valid UTF-8", path=path, line=lineno, hint="save the file as UTF-8") from None
            return lineno, text, data[end + 1:], lineno + 1
        pos, lineno = end + 1, lineno + 1
    raise DataError("file is empty: no header line", path=path, line=1, hint="write the header, then one record per line")


@dataclass
class ColumnLayout:
    """Where the interaction fields are in a split line (0-based indices)."""

    n_fields: int
    user: int
    item: int
    rating: int | None = None
    timestamp: int | None = None  # a time column, or a position column when ``order`` is "sequence"
    order: str = TIME  # what the ``timestamp`` column holds (ignored without one: the order is "row")
    # Further columns a reader wants as validated integers (e.g. MMRec's x_label), name -> index.
    int_columns: dict[str, int] = field(default_factory=dict)


def header_layout(header: str, sep: str, path: Path, lineno: int, hint: str) -> ColumnLayout:
    """The layout of a headered interaction file from its column names (aliases above).

    A time column wins over a position column; the split column (``x_label``, ``split``) becomes
    the validated integer column ``x_label``. DataError, quoting the header, without a user or an
    item column."""
    names = [column_name(h) for h in header.split(sep)]
    user, item = find_column(names, USER_NAMES), find_column(names, ITEM_NAMES)
    if user is None or item is None:
        raise DataError(f"header has no {'user' if user is None else 'item'} column (header: {header[:300]!r})",
                        path=path, line=lineno, hint=hint)
    time, position = find_column(names, TIME_NAMES), find_column(names, POSITION_NAMES)
    split = find_column(names, SPLIT_LABEL_NAMES)
    return ColumnLayout(
        n_fields=len(names), user=user, item=item, rating=find_column(names, RATING_NAMES),
        timestamp=time if time is not None else position, order=TIME if time is not None else SEQUENCE,
        int_columns={} if split is None else {"x_label": split},
    )


SPLIT_LABEL_CHECK = {"x_label": lambda v: 0 <= v < len(SPLIT_PARTS)}


@dataclass
class ParsedInteractions:
    interactions: Interactions
    line_numbers: np.ndarray  # (n,) source line of each accepted row
    int_columns: dict[str, np.ndarray]  # name -> (n,) int64


def finite_number(text: str) -> float | None:
    """Parse a field as a finite float, or return None when it is not one.

    Uses Python's ``float()``, so surrounding whitespace, exponents and digit underscores
    (``"1_000"``) are accepted; ``nan``, ``inf`` and non-numbers give None.

    Args:
        text: the field text.

    Returns:
        The value, or None.
    """
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def parse_interactions(
    body: bytes,
    *,
    first_lineno: int = 1,
    layout: ColumnLayout,
    sep: str,
    report: ReadReport,
    rating_range: tuple[float, float] | None = None,
    item_id_check: Callable[[str], str | None] | None = None,
    int_column_check: dict[str, Callable[[int], bool]] | None = None,
    file_sep: str | None = None,
) -> ParsedInteractions:
    """Validate and collect the interaction rows in ``body`` (the file after its header, whose
    first line is line ``first_lineno``). ``file_sep``: the separator the user's file has, for
    messages, when ``body`` was rewritten with ``sep`` (a CSV read as tab-separated).

    ``item_id_check(item) -> problem or None`` lets a format add its own rule on item ids (MMRec:
    a row of the feature matrices). ``int_column_check[name](value) -> ok`` restricts the values of
    an extra integer column.

    A clean file (the usual case) is parsed column-wise by ``clean_table.parse_clean``; only when
    it declines is the file parsed line by line, which finds and reports each bad record. Both
    apply the same rules, so the result does not depend on which one ran."""
    checks = dict(rating_range=rating_range, item_id_check=item_id_check, int_column_check=int_column_check or {})
    clean = parse_clean(body, first_lineno, n_fields=layout.n_fields, user=layout.user, item=layout.item,
                        rating=layout.rating, timestamp=layout.timestamp, int_columns=layout.int_columns,
                        sep=sep, **checks)
    if clean is None:
        lines = text_lines(body, first_lineno=first_lineno)
        parsed = _parse_line_by_line(lines, layout=layout, sep=sep, report=report,
                                     last_lineno=max(first_lineno - 1, 1), file_sep=file_sep or sep, **checks)
    else:
        parsed = _parsed(**clean, order=_order(layout))
        report.records_in += len(parsed.line_numbers)
        report.records_read += len(parsed.line_numbers)
    report.check_counts()
    return parsed


def _order(layout: ColumnLayout) -> str:
    return ROW if layout.timestamp is None else layout.order


def _parsed(users, items, ratings, times, line_numbers, extra, order: str) -> ParsedInteractions:
    """The accepted rows as Interactions, with their source lines and extra integer columns."""
    interactions = Interactions.of_str_ids(  # both parsers give str ids
        np.array(users, dtype=object), np.array(items, dtype=object), np.asarray(times, dtype=np.float64),
        None if ratings is None else np.asarray(ratings, dtype=np.float64), order,
    )
    return ParsedInteractions(
        interactions,
        np.array(line_numbers, dtype=np.int64),
        {k: np.asarray(v, dtype=np.int64) for k, v in extra.items()},
    )


def _parse_line_by_line(lines: list[Line], *, layout: ColumnLayout, sep: str, report: ReadReport, rating_range,
                        item_id_check, int_column_check, last_lineno: int = 1, file_sep: str | None = None) -> ParsedInteractions:
    """One record at a time: every bad record is reported with its line (or raised if strict)."""
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[float] = []
    line_numbers: list[int] = []
    extra: dict[str, list[int]] = {k: [] for k in layout.int_columns}
    first_seen: dict[tuple[str, str, float], int] = {}
    has_rating, has_time = layout.rating is not None, layout.timestamp is not None
    n_fields = layout.n_fields

    def bad(lineno: int, text: str, message: str, hint: str) -> None:
        report.bad(lineno, message, hint, text[:MAX_RAW_CHARS])

    for lineno, text in data_lines(lines, report):
        report.records_in += 1
        fields = text.split(sep)
        if len(fields) != n_fields:
            bad(lineno, text, f"expected {n_fields} fields separated by {file_sep or sep!r}, found {len(fields)}",
                "fix the separators so every record has one value per header column")
            continue
        user, item = fields[layout.user].strip(), fields[layout.item].strip()
        if not user or not item:
            bad(lineno, text, f"empty {'user' if not user else 'item'} id", "every record needs a user id and an item id")
            continue
        if item_id_check is not None:
            problem = item_id_check(item)
            if problem is not None:
                bad(lineno, text, problem, "use the item's row number in the feature files as its id")
                continue
        rating = 1.0
        if has_rating:
            rating = finite_number(fields[layout.rating])
            if rating is None:
                bad(lineno, text, f"rating {fields[layout.rating].strip()!r} is not a finite number",
                    "write the rating as a number")
                continue
            if rating_range is not None and not (rating_range[0] <= rating <= rating_range[1]):
                bad(lineno, text, f"rating {rating:g} outside the declared range [{rating_range[0]:g}, {rating_range[1]:g}]",
                    "fix the rating or widen the rating range")
                continue
        if has_time:
            ts = finite_number(fields[layout.timestamp])
            if ts is None:
                what = "timestamp" if layout.order == TIME else "position"
                bad(lineno, text, f"{what} {fields[layout.timestamp].strip()!r} is not a finite number",
                    f"write {what}s as numbers" + (" (e.g. Unix seconds)" if layout.order == TIME else ""))
                continue
        else:
            ts = float(len(times))
        values: dict[str, int] = {}
        for name, col in layout.int_columns.items():
            v = finite_number(fields[col])
            check = int_column_check.get(name)
            if v is None or v != int(v) or (check is not None and not check(int(v))):
                values = {}
                bad(lineno, text, f"{name} {fields[col].strip()!r} is not an allowed value", f"check the {name} column")
                break
            values[name] = int(v)
        if len(values) != len(layout.int_columns):
            continue
        if has_time:
            key = (user, item, ts)
            earlier = first_seen.get(key)
            if earlier is not None:
                bad(lineno, text, f"duplicate of line {earlier} (same user, item and {'timestamp' if layout.order == TIME else 'position'})",
                    "remove the repeated record; mmrank keeps the first one")
                continue
            first_seen[key] = lineno
        users.append(user)
        items.append(item)
        ratings.append(rating)
        times.append(ts)
        line_numbers.append(lineno)
        for name, v in values.items():
            extra[name].append(v)

    report.records_read += len(users)
    if not users:
        if report.problems:
            first = report.problems[0]
            raise DataError(f"no valid interaction record; the first bad one: {first.message}",
                            path=first.path, line=first.line, hint=first.hint)
        raise DataError("no interaction records in the file", path=report.path,
                        line=lines[-1][0] if lines else last_lineno, hint="add one record per line, or point at the right file")
    return _parsed(users, items, ratings if has_rating else None, times, line_numbers, extra, _order(layout))


def resolve_file(path: str | Path, suffix: str, what: str) -> Path:
    """``path`` itself when it is a file, else the one ``*<suffix>`` file in the folder
    (``<folder name><suffix>`` wins when there are several)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise DataError("no such file or folder", path=p, hint=f"point at a folder holding {what}")
    found = sorted(q for q in p.glob(f"*{suffix}") if q.is_file())
    preferred = p / f"{p.name}{suffix}"
    if preferred in found:
        return preferred
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"no *{suffix} file in this folder", path=p, hint=f"point at a folder holding {what}")
    raise DataError(
        f"several *{suffix} files here ({', '.join(q.name for q in found)}) and none named {preferred.name}",
        path=p, hint="point at the file you mean",
    )


def merge_report(into: ReadReport, other: ReadReport) -> None:
    """Fold a side file's report (e.g. ``.item``) into the main one; problems keep their own path."""
    into.records_in += other.records_in
    into.records_read += other.records_read
    into.problems.extend(other.problems)


def parse_item_rows(
    lines: list[Line],
    *,
    sep: str,
    n_fields: int,
    id_col: int,
    report: ReadReport,
    row_problem: Callable[[list[str]], str | None] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Accepted (item id, fields) of an item side file; bad or repeated ids are quarantined.

    A repeated item id keeps its first row: two rows for one item would make its features
    depend on file order."""
    ids: list[str] = []
    rows: list[list[str]] = []
    first_seen: dict[str, int] = {}
    for lineno, text in data_lines(lines, report):
        report.records_in += 1
        fields = text.split(sep)
        if len(fields) != n_fields:
            report.bad(lineno, f"expected {n_fields} fields separated by {sep!r}, found {len(fields)}",
                       "fix the separators so every item row has one value per column", text[:MAX_RAW_CHARS])
            continue
        item = fields[id_col].strip()
        problem = "empty item id" if not item else (row_problem(fields) if row_problem else None)
        if problem is None and item in first_seen:
            problem = f"item {item!r} already defined on line {first_seen[item]}"
        if problem is not None:
            report.bad(lineno, problem, "fix or remove the item row", text[:MAX_RAW_CHARS])
            continue
        first_seen[item] = lineno
        ids.append(item)
        rows.append(fields)
    report.records_read += len(ids)
    return ids, rows


def year_columns(years: list[float | None]) -> np.ndarray:
    """``(n, 2)``: release year (unknown years filled with the median known year, so the column
    stays on the same scale) and a 0/1 "year unknown" flag that tells a model which were filled."""
    known = [y for y in years if y is not None]
    fill = float(np.median(known)) if known else 0.0
    out = np.zeros((len(years), 2), dtype=np.float32)
    for i, y in enumerate(years):
        out[i] = (fill, 1.0) if y is None else (y, 0.0)
    return out


YEAR_COLUMNS = ["release_year", "release_year_unknown"]
