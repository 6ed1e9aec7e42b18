"""RecBole atomic files: ``<name>.inter`` plus an optional ``<name>.item``.

Both are tab-separated with a ``name:type`` header (types ``token``, ``float``, ``token_seq``,
``float_seq``; sequences are space-separated). Interactions are found by RecBole's default
column names ``user_id``, ``item_id`` (required) and ``rating``, ``timestamp`` (optional); a
``position`` column instead of ``timestamp`` orders each user's events without times, and an
``x_label`` / ``split`` column (0 train, 1 valid, 2 test) is the data's own split (mmrank's
extensions; RecBole itself reads them as plain fields). Other columns are checked for count
only. Line rules (duplicates, blank lines, missing timestamp): see ``interaction_table``.

``.item`` becomes ``ItemFeatures`` with ``titles`` (``movie_title`` or ``title``) and, when the
file has anything numeric, a ``meta`` modality whose columns are, in this order:
``float`` columns in header order, then ``release_year`` + ``release_year_unknown`` (when a
``release_year``/``year`` column exists; it is ``token`` in RecBole's ML-100K and holds words
like "unkonwn" for two movies, which count as unknown, as do numbers outside 0..9999), then one 0/1 column per genre of the
``class``/``genre``/``genres`` token_seq column, genres in sorted order. ``meta_columns()``
gives these names. A ``.user`` file is not read: the data model has no user features.

The one report covers both files: ``records_in`` counts interaction rows plus item rows, and
each problem names its own file.

``write_recbole(data, folder)`` writes ``<folder name>.inter`` (``user_id:token``,
``item_id:token``, then ``rating:float``, ``timestamp:float`` or ``position:float``,
``x_label:token`` when the data has them) and, when the items have titles, ``<folder name>.item``
(``item_id:token``, ``title:token``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.data.formats import fits_float32, read_bytes
from mmrank.data.interaction_data import (
    InteractionData,
    WriteResult,
    check_writable,
    dropped_columns,
    not_read_files,
    tab_separated_events,
)
from mmrank.data.interaction_table import (
    POSITION_NAMES,
    SPLIT_LABEL_CHECK,
    SPLIT_LABEL_NAMES,
    YEAR_COLUMNS,
    ColumnLayout,
    finite_number,
    merge_report,
    parse_interactions,
    parse_item_rows,
    resolve_file,
    split_header,
    text_lines,
    year_columns,
)
from mmrank.data.model import SEQUENCE, TIME, Interactions, ItemFeatures
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

FIELD_TYPES = ("token", "float", "token_seq", "float_seq")
TITLE_NAMES = ("movie_title", "title")
YEAR_NAMES = ("release_year", "year")
GENRE_NAMES = ("class", "genre", "genres")
RECBOLE_COLUMNS = {"user": "user_id:token", "item": "item_id:token", "rating": "rating:float",
                   "timestamp": "timestamp:float", "position": "position:float", "x_label": "x_label:token"}


def parse_header(text: str, path: Path, lineno: int) -> list[tuple[str, str]]:
    """``[(name, type), ...]`` of an atomic-file header, or a DataError quoting the header."""
    out: list[tuple[str, str]] = []
    for raw in text.split("\t"):
        name, colon, ftype = raw.strip().rpartition(":")
        if not colon or not name or ftype not in FIELD_TYPES:
            raise DataError(
                f"header field {raw!r} is not name:type with a type in {', '.join(FIELD_TYPES)} (header: {text[:300]!r})",
                path=path, line=lineno, hint="write a RecBole header such as 'user_id:token<TAB>item_id:token<TAB>rating:float'",
            )
        if any(name == n for n, _ in out):
            raise DataError(f"column {name!r} appears twice in the header (header: {text[:300]!r})",
                            path=path, line=lineno, hint="give every column its own name")
        out.append((name, ftype))
    return out


def _year(text: str) -> float | None:
    """A year, or None (unknown) for words like "unkonwn" and numbers no calendar year has."""
    v = finite_number(text)
    return v if v is not None and 0 <= v <= 9999 else None


def _first(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for w in wanted:
        if w in names:
            return names.index(w)
    return None


def _read_header(path: Path) -> tuple[int, list[tuple[str, str]], bytes, int]:
    """Header line number, its columns, the bytes after it and their first line number."""
    lineno, text, body, first = split_header(read_bytes(path), path)
    return lineno, parse_header(text, path, lineno), body, first


def _require(names: list[str], required: tuple[str, ...], path: Path, lineno: int, header: str) -> None:
    missing = [r for r in required if r not in names]
    if missing:
        raise DataError(
            f"header has no {' / '.join(missing)} column (header: {header[:300]!r})",
            path=path, line=lineno,
            hint="name the columns " + " and ".join(f"{m}:token" for m in missing) + " as RecBole does",
        )


def read_recbole(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, ReadReport]:
    """Read a RecBole dataset folder (or its ``.inter`` file). See the module docstring."""
    data = read_recbole_data(path, strict=strict, rating_range=rating_range)
    return data.interactions, data.items, data.report


def read_recbole_data(path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
                      ) -> InteractionData:
    """``read_recbole`` as ``InteractionData``: with the ``x_label`` split and the folder's other files."""
    inter_path = resolve_file(path, ".inter", "a RecBole <name>.inter file")
    report = ReadReport(str(inter_path), strict=strict)
    lineno, cols, body, first = _read_header(inter_path)
    names = [n for n, _ in cols]
    _require(names, ("user_id", "item_id"), inter_path, lineno, "\t".join(f"{n}:{t}" for n, t in cols))
    time, position, split = _first(names, ("timestamp",)), _first(names, POSITION_NAMES), _first(names, SPLIT_LABEL_NAMES)
    layout = ColumnLayout(
        n_fields=len(cols),
        user=names.index("user_id"),
        item=names.index("item_id"),
        rating=_first(names, ("rating",)),
        timestamp=time if time is not None else position,
        order=TIME if time is not None else SEQUENCE,
        int_columns={} if split is None else {"x_label": split},
    )
    parsed = parse_interactions(body, first_lineno=first, layout=layout, sep="\t", report=report,
                                rating_range=rating_range, int_column_check=SPLIT_LABEL_CHECK)
    item_path = inter_path.with_suffix(".item")
    items = None
    read = [inter_path]
    if item_path.is_file():
        item_report = ReadReport(str(item_path), strict=strict)
        items = read_recbole_items(item_path, item_report)
        merge_report(report, item_report)
        read.append(item_path)
    report.check_counts()
    return InteractionData(parsed.interactions, items, report, "recbole", parsed.int_columns.get("x_label"),
                           [str(p) for p in read], not_read_files(inter_path.parent, read, _why_not_read))


def _why_not_read(p: Path) -> str:
    if p.suffix == ".user":
        return "user features: the recommenders use none"
    if p.suffix in (".inter", ".item"):
        return "belongs to another data set in this folder (point data.path at that file to read it)"
    return "not a RecBole atomic file mmrank reads (<name>.inter, <name>.item)"


def write_recbole(data: InteractionData, folder: str | Path) -> WriteResult:
    """Write ``<folder name>.inter`` (+ ``.item`` with titles); see the module docstring."""
    folder = Path(folder)
    inter = data.interactions
    check_writable({"user id": inter.user_ids, "item id": inter.item_ids}, "RecBole", folder)
    folder.mkdir(parents=True, exist_ok=True)
    inter_path = folder / f"{folder.name}.inter"
    atomic_write_text(inter_path, tab_separated_events(data, inter.user_ids, inter.item_ids, RECBOLE_COLUMNS))
    files = [inter_path]
    dropped = []
    items = data.items
    if items is not None and items.titles is not None:
        check_writable({"item id": items.item_ids}, "RecBole", folder)
        check_writable({"title": items.titles}, "RecBole", folder, empty_ok=True)
        rows = "".join(f"{i}\t{t}\n" for i, t in zip(items.item_ids, items.titles))
        files.append(atomic_write_text(folder / f"{folder.name}.item", "item_id:token\ttitle:token\n" + rows))
    if items is not None and items.features:
        dropped.append("item feature matrices: RecBole's .item is written with titles only "
                       "(build an item-feature folder with `mmrank data item-features`)")
    return WriteResult(files, dropped + dropped_columns(data, "RecBole", ratings=True, time=True, split=True, items=True))


def meta_columns(item_path: str | Path) -> list[str]:
    """Names of the ``meta`` columns ``read_recbole`` builds from this ``.item`` file."""
    path = Path(item_path)
    report = ReadReport(str(path))
    return _item_table(path, report)[2]


def read_recbole_items(path: Path, report: ReadReport) -> ItemFeatures:
    """Read a RecBole ``.item`` file into ``ItemFeatures`` (titles and a ``meta`` modality).

    The ``meta`` columns are those described in the module docstring (``meta_columns()`` gives
    their names); the modality is left out when the file has no numeric, year or genre column.
    Bad rows (wrong field count, a ``float`` value that is not a finite float32, empty or repeated
    id) go to ``report``.

    Args:
        path: the ``.item`` file.
        report: this file's own report; the caller merges it into the ``.inter`` one.

    Returns:
        ``ItemFeatures`` aligned with the accepted item ids; ``titles`` is None without a
        ``movie_title`` / ``title`` column.

    Raises:
        DataError: when the header is missing, unreadable or has no ``item_id`` column, or on the
            first bad row in strict mode.
    """
    ids, titles, columns, meta = _item_table(path, report)
    return ItemFeatures(
        item_ids=np.array(ids, dtype=object),
        features={"meta": meta} if columns else {},
        titles=titles,
    )


def _item_table(path: Path, report: ReadReport):
    lineno, cols, body, first = _read_header(path)
    names = [n for n, _ in cols]
    _require(names, ("item_id",), path, lineno, "\t".join(f"{n}:{t}" for n, t in cols))
    title_col, year_col, genre_col = _first(names, TITLE_NAMES), _first(names, YEAR_NAMES), _first(names, GENRE_NAMES)
    if genre_col is not None and cols[genre_col][1] != "token_seq":
        genre_col = None
    float_cols = [i for i, (_, t) in enumerate(cols) if t == "float" and i != year_col]

    def row_problem(fields: list[str]) -> str | None:
        for i in float_cols:
            v = finite_number(fields[i])
            if v is None or not fits_float32(v):  # features are float32: a larger value would become inf
                return f"{names[i]} {fields[i].strip()!r} is not a finite float32 number"
        return None

    ids, rows = parse_item_rows(text_lines(body, first_lineno=first), sep="\t", n_fields=len(cols),
                                id_col=names.index("item_id"), report=report, row_problem=row_problem)
    blocks: list[np.ndarray] = []
    columns: list[str] = []
    if float_cols:
        blocks.append(np.array([[float(r[i]) for i in float_cols] for r in rows], dtype=np.float32).reshape(len(rows), len(float_cols)))
        columns += [names[i] for i in float_cols]
    if year_col is not None:
        blocks.append(year_columns([_year(r[year_col]) for r in rows]))
        columns += YEAR_COLUMNS
    if genre_col is not None:
        genres = [r[genre_col].split() for r in rows]
        vocab = sorted({g for gs in genres for g in gs})
        index = {g: j for j, g in enumerate(vocab)}
        hot = np.zeros((len(rows), len(vocab)), dtype=np.float32)
        for i, gs in enumerate(genres):
            hot[i, [index[g] for g in gs]] = 1.0
        blocks.append(hot)
        columns += [f"genre:{g}" for g in vocab]
    meta = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(rows), 0), dtype=np.float32)
    titles = None if title_col is None else np.array([r[title_col].strip() for r in rows], dtype=object)
    return ids, titles, columns, meta
