"""MovieLens-100K as GroupLens ships it: ``u.data`` + ``u.item`` in one folder.

``u.data``: tab-separated ``user item rating timestamp``, no header (line rules: see
``interaction_table``). ``u.item``: ``|``-separated, Latin-1 (titles such as "Misérables"),
``id|title|release date|video release date|IMDb URL|19 genre flags``. It becomes
``ItemFeatures`` with ``titles`` and a ``meta`` modality whose columns are ``MOVIELENS_META_COLUMNS``:
the 19 genre flags in ``u.genre`` order, then ``release_year`` (the year of "01-Jan-1995";
unknown years are filled, see ``year_columns``) and ``release_year_unknown``. A row whose
flags are not 0/1 or whose field count is not 24 is quarantined; ``u.item`` missing means no
item features. The one report covers both files, each problem naming its own file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mmrank.data.formats import read_bytes
from mmrank.data.interaction_table import (
    YEAR_COLUMNS,
    ColumnLayout,
    drop_bom,
    merge_report,
    parse_interactions,
    parse_item_rows,
    text_lines,
    year_columns,
)
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.data.validate import ReadReport

# u.genre, in its order (the column order of the flags in u.item).
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
MOVIELENS_META_COLUMNS = [f"genre:{g}" for g in MOVIELENS_GENRES] + YEAR_COLUMNS
_ITEM_FIELDS = 5 + len(MOVIELENS_GENRES)
_YEAR_AT_END = re.compile(r"(\d{4})\s*$")


def read_movielens_raw(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, ReadReport]:
    """Read a MovieLens-100K folder (or its ``u.data``). See the module docstring."""
    p = Path(path)
    data_path = p / "u.data" if p.is_dir() else p
    report = ReadReport(str(data_path), strict=strict)
    layout = ColumnLayout(n_fields=4, user=0, item=1, rating=2, timestamp=3)
    parsed = parse_interactions(drop_bom(read_bytes(data_path)), layout=layout, sep="\t", report=report,
                                rating_range=rating_range)
    item_path = data_path.parent / "u.item"
    items = None
    if item_path.is_file():
        item_report = ReadReport(str(item_path), strict=strict)
        items = read_u_item(item_path, item_report)
        merge_report(report, item_report)
    report.check_counts()
    return parsed.interactions, items, report


def _flags_problem(fields: list[str]) -> str | None:
    bad = [f for f in fields[5:] if f.strip() not in ("0", "1")]
    return f"genre flag {bad[0].strip()!r} is not 0 or 1" if bad else None


def read_u_item(path: Path, report: ReadReport) -> ItemFeatures:
    """Read MovieLens' ``u.item`` (``|``-separated, Latin-1) into titles and a ``meta`` modality.

    Bad rows (field count not 24, a genre flag not 0/1, empty or repeated id) go to ``report``
    (which raises in strict mode). The release year is the 4-digit number at the end of the
    release-date field; rows without one get the median year and ``release_year_unknown = 1``.

    Args:
        path: the ``u.item`` file.
        report: the report to count records and problems in (this file's own report; the caller
            merges it into the ``u.data`` one).

    Returns:
        ``ItemFeatures`` with ``meta`` of shape ``(n_items, 21)`` float32, columns
        ``MOVIELENS_META_COLUMNS``, and ``titles`` as written (e.g. ``"Toy Story (1995)"``).

    Raises:
        DataError: when the file cannot be read, or on the first bad row in strict mode.
    """
    lines = text_lines(read_bytes(path), encoding="latin-1")
    ids, rows = parse_item_rows(lines, sep="|", n_fields=_ITEM_FIELDS, id_col=0, report=report,
                                row_problem=_flags_problem)
    flags = np.array([[float(f.strip()) for f in r[5:]] for r in rows], dtype=np.float32).reshape(len(rows), len(MOVIELENS_GENRES))
    years = []
    for r in rows:
        m = _YEAR_AT_END.search(r[2])
        years.append(float(m.group(1)) if m else None)
    return ItemFeatures(
        item_ids=np.array(ids, dtype=object),
        features={"meta": np.concatenate([flags, year_columns(years)], axis=1)},
        titles=np.array([r[1].strip() for r in rows], dtype=object),
    )
