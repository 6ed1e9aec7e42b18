"""Plain interaction tables: a CSV / TSV file with a header row, or a Parquet file, one event per
row, with a user and an item column and optionally a rating, a time (or position) and a split
column. Format name ``table`` (``csv`` and ``tsv`` are accepted as aliases).

Columns are found by name (``interaction_table.USER_NAMES`` ... case-insensitive, e.g.
``user_id,item_id,rating,timestamp``, ``userId,movieId,rating,timestamp`` of MovieLens'
``ratings.csv``, ``reviewerID,asin,overall,unixReviewTime``); other columns are kept out. The
separator of a text file is the first of TAB, ``,``, ``;`` its header holds. Double-quoted fields
are unquoted (CSV as spreadsheets write it); a record must fit on one line. A ``split`` /
``x_label`` column (0 train, 1 valid, 2 test) is the data's own split.

Line rules (bad records, duplicates, a missing time column: ``order == "row"``) are the ones of
``interaction_table``; for Parquet a record's "line" is its 1-based row number.

The writer picks CSV, TSV or Parquet from the file extension and writes ``user_id``,
``item_id``, then ``rating``, ``timestamp`` (or ``position`` for data ordered without times) and
``x_label`` when the data has them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.data.formats import read_bytes
from mmrank.data.interaction_data import InteractionData, WriteResult, dropped_columns
from mmrank.data.interaction_table import (
    SPLIT_LABEL_CHECK,
    header_layout,
    parse_interactions,
    split_header,
)
from mmrank.data.model import SEQUENCE, TIME
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

HEADER_HINT = "write a header row naming the columns, e.g. user_id,item_id,rating,timestamp"
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_table_data(path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
                    ) -> InteractionData:
    """Read a CSV / TSV / Parquet interaction table (see the module docstring)."""
    path = Path(path)
    report = ReadReport(str(path), strict=strict)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        header, sep, body, first, lineno = _parquet_as_tsv(path)
        file_sep = sep
    else:
        lineno, header, body, first = split_header(read_bytes(path), path)
        sep = file_sep = _separator(header)
        header, body, sep = _as_tab_separated(header, body, sep)
    layout = header_layout(header, sep, path, lineno, HEADER_HINT)
    parsed = parse_interactions(body, first_lineno=first, layout=layout, sep=sep, report=report,
                                rating_range=rating_range, int_column_check=SPLIT_LABEL_CHECK, file_sep=file_sep)
    return InteractionData(parsed.interactions, None, report, "table",
                           split_labels=parsed.int_columns.get("x_label"), files_read=[str(path)])


def _separator(header: str) -> str:
    for sep in ("\t", ",", ";"):
        if sep in header:
            return sep
    return ","  # one column: the header check names what is missing


def _as_tab_separated(header: str, body: bytes, sep: str) -> tuple[str, bytes, str]:
    """(header, body, separator) with quoted fields unquoted; comma/semicolon files become
    tab-separated when that changes no field (so the fast column-wise parser can read them)."""
    if sep == "\t":
        return header, body, sep
    if b'"' not in body and '"' not in header:
        if b"\t" in body:  # a TAB would become a separator: keep the file's own one
            return header, body, sep
        return header.replace(sep, "\t"), body.replace(sep.encode(), b"\t"), "\t"

    def unquote(line: str) -> str:
        return "\t".join(f.replace("\t", " ") for f in next(csv.reader([line], delimiter=sep)))

    lines = body.split(b"\n")
    out = []
    for raw in lines:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            out.append(raw)  # reported as not UTF-8 by the line parser, at its own line
            continue
        out.append(unquote(text.rstrip("\r")).encode("utf-8") if text.strip() else raw)
    return unquote(header), b"\n".join(out), "\t"


def _parquet_as_tsv(path: Path) -> tuple[str, str, bytes, int, int]:
    """A Parquet table as (header, separator, tab-separated body, first line, header line), so that
    the same record rules apply; a record's line is its 1-based row number."""
    import pandas as pd

    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a damaged file; all mean "not readable"
        raise DataError(f"not a readable Parquet file ({type(e).__name__}: {str(e)[:200]})", path=path,
                        hint="write it with pandas.DataFrame.to_parquet") from None
    for col in df.columns:
        if df[col].dtype == object:
            text = df[col].astype(str)
            if text.str.contains("[\t\n\r]", regex=True).any():
                raise DataError(f"column {col!r} holds tabs or line breaks", path=path,
                                hint="remove them from the ids")
    header = "\t".join(str(c) for c in df.columns)
    body = df.to_csv(sep="\t", header=False, index=False, na_rep="", quoting=csv.QUOTE_NONE,
                     lineterminator="\n").encode("utf-8")
    return header, "\t", body, 1, 0


def _columns(data: InteractionData) -> dict[str, np.ndarray]:
    inter = data.interactions
    cols: dict[str, np.ndarray] = {"user_id": inter.user_ids, "item_id": inter.item_ids}
    if inter.ratings is not None:
        cols["rating"] = inter.ratings
    if inter.order == TIME:
        cols["timestamp"] = inter.timestamps
    elif inter.order == SEQUENCE:
        cols["position"] = inter.timestamps
    if data.split_labels is not None:
        cols["x_label"] = data.split_labels
    return cols


def number_text(values: np.ndarray) -> list[str]:
    """Numbers as text that reads back to the same float64 (integers without ``.0``)."""
    values = np.asarray(values, dtype=np.float64)
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
        return [str(v) for v in values.astype(np.int64).tolist()]
    return [repr(v) for v in values.tolist()]


def write_table(data: InteractionData, path: str | Path) -> WriteResult:
    """Write ``data`` as CSV (``.csv``), TSV (``.tsv``, ``.txt``) or Parquet (``.parquet``)."""
    path = Path(path)
    cols = _columns(data)
    dropped = dropped_columns(data, "table", ratings=True, time=True, split=True, items=False)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        import pandas as pd

        buf = io.BytesIO()
        frame = {k: (v.astype(str) if v.dtype == object else v) for k, v in cols.items()}
        pd.DataFrame(frame).to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
        return WriteResult([path], dropped)
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    text_cols = [v.tolist() if v.dtype == object else number_text(v) for v in cols.values()]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n")
    writer.writerow(list(cols))
    writer.writerows(zip(*text_cols))
    atomic_write_text(path, out.getvalue())
    return WriteResult([path], dropped)
