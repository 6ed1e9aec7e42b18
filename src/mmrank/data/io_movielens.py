"""MovieLens as GroupLens ships it: ML-100K's ``u.data`` + ``u.item``, or ML-1M's ``ratings.dat`` +
``movies.dat``, in one folder.

``u.data``: tab-separated ``user item rating timestamp``, no header (line rules: see
``interaction_table``). ``u.item``: ``|``-separated, Latin-1 (titles such as "Misérables"),
``id|title|release date|video release date|IMDb URL|19 genre flags``. It becomes
``ItemFeatures`` with ``titles`` and a ``meta`` modality whose columns are ``MOVIELENS_META_COLUMNS``:
the 19 genre flags in ``u.genre`` order, then ``release_year`` (the year of "01-Jan-1995";
unknown years are filled, see ``year_columns``) and ``release_year_unknown``. A row whose
flags are not 0/1 or whose field count is not 24 is quarantined; ``u.item`` missing means no
item features. The one report covers both files, each problem naming its own file.

``ratings.dat`` (ML-1M, ML-10M): ``user::item::rating::timestamp``. ``movies.dat``:
``id::title::genres`` (Latin-1, genres ``|``-separated) becomes titles and a ``meta`` modality of
one 0/1 column per genre (sorted) plus ``release_year`` / ``release_year_unknown`` from the
year in brackets at the end of the title.

``write_movielens(data, path)`` writes ``u.data`` (a folder or a file named ``u.data``) or
``ratings.dat`` (a file of that name); both need ratings and real timestamps, so data without
them is refused (convert it to csv, recbole, mmrec or sasrec instead). Item titles are not
written (``u.item`` needs genre flags and release dates).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.data.formats import read_bytes
from mmrank.data.interaction_data import InteractionData, WriteResult, check_writable, dropped_columns, not_read_files
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
from mmrank.errors import DataError

# u.genre, in its order (the column order of the flags in u.item).
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
MOVIELENS_META_COLUMNS = [f"genre:{g}" for g in MOVIELENS_GENRES] + YEAR_COLUMNS
_ITEM_FIELDS = 5 + len(MOVIELENS_GENRES)
_YEAR_AT_END = re.compile(r"(\d{4})\s*$")
_YEAR_IN_BRACKETS = re.compile(r"\((\d{4})\)\s*$")


def read_movielens_raw(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, ReadReport]:
    """Read a MovieLens folder (or its ``u.data`` / ``ratings.dat``). See the module docstring."""
    data = read_movielens_data(path, strict=strict, rating_range=rating_range)
    return data.interactions, data.items, data.report


def ratings_file(path: str | Path) -> Path:
    """The ratings file of a MovieLens folder (``u.data`` or ``ratings.dat``), or ``path`` itself."""
    p = Path(path)
    if not p.is_dir():
        return p
    for name in ("u.data", "ratings.dat"):
        if (p / name).is_file():
            return p / name
    raise DataError("no u.data or ratings.dat in this folder", path=p, hint="point at a MovieLens-100K or -1M folder")


def read_movielens_data(path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
                        ) -> InteractionData:
    """``read_movielens_raw`` as ``InteractionData`` (with the folder's files that were not read)."""
    data_path = ratings_file(path)
    report = ReadReport(str(data_path), strict=strict)
    layout = ColumnLayout(n_fields=4, user=0, item=1, rating=2, timestamp=3)
    body, sep = drop_bom(read_bytes(data_path)), "\t"
    if data_path.name.endswith(".dat"):
        # "::" becomes a TAB (the fast parser's separator) unless a TAB already sits in a field
        body, sep = (body.replace(b"::", b"\t"), "\t") if b"\t" not in body else (body, "::")
    parsed = parse_interactions(body, layout=layout, sep=sep, report=report, rating_range=rating_range,
                                file_sep="::" if data_path.name.endswith(".dat") else None)
    read = [data_path]
    items = None
    item_path = data_path.parent / ("movies.dat" if data_path.name.endswith(".dat") else "u.item")
    if item_path.is_file():
        item_report = ReadReport(str(item_path), strict=strict)
        items = read_movies_dat(item_path, item_report) if item_path.suffix == ".dat" else read_u_item(item_path, item_report)
        merge_report(report, item_report)
        read.append(item_path)
    report.check_counts()
    return InteractionData(parsed.interactions, items, report, "movielens", files_read=[str(p) for p in read],
                           files_not_read=not_read_files(data_path.parent, read, _why_not_read))


def _why_not_read(p: Path) -> str:
    if p.name in ("u.user", "users.dat"):
        return "user features: the recommenders use none"
    if p.name.startswith("u") and (p.suffix in (".base", ".test") or p.name.startswith("u.")):
        return "a GroupLens side file (folds, genre and occupation lists): not needed, u.data holds every event"
    return "not a MovieLens file mmrank reads (u.data + u.item, or ratings.dat + movies.dat)"


def read_movies_dat(path: Path, report: ReadReport) -> ItemFeatures:
    """Read ML-1M's ``movies.dat`` (``id::title::genres``, Latin-1) into titles and a ``meta``
    modality (one 0/1 column per genre, sorted, then the release-year columns)."""
    lines = text_lines(read_bytes(path), encoding="latin-1")
    ids, rows = parse_item_rows(lines, sep="::", n_fields=3, id_col=0, report=report)
    genres = [[g for g in r[2].strip().split("|") if g] for r in rows]
    vocab = sorted({g for gs in genres for g in gs})
    index = {g: k for k, g in enumerate(vocab)}
    flags = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for i, gs in enumerate(genres):
        flags[i, [index[g] for g in gs]] = 1.0
    years = []
    for r in rows:
        m = _YEAR_IN_BRACKETS.search(r[1])
        years.append(float(m.group(1)) if m else None)
    return ItemFeatures(item_ids=np.array(ids, dtype=object),
                        features={"meta": np.concatenate([flags, year_columns(years)], axis=1)},
                        titles=np.array([r[1].strip() for r in rows], dtype=object))


def write_movielens(data: InteractionData, path: str | Path) -> WriteResult:
    """Write ``u.data`` (tab-separated) or ``ratings.dat`` (``::``); see the module docstring."""
    from mmrank.data.io_table import number_text

    path = Path(path)
    target = path if path.name in ("u.data", "ratings.dat") else path / "u.data"
    inter = data.interactions
    if inter.ratings is None or not inter.timed:
        missing = "ratings" if inter.ratings is None else "timestamps"
        raise DataError(f"MovieLens files need ratings and timestamps; this data has no {missing}", path=target,
                        hint="convert to csv, recbole, mmrec or sasrec instead")
    sep = "::" if target.name == "ratings.dat" else "\t"
    check_writable({"user id": inter.user_ids, "item id": inter.item_ids}, "MovieLens", target)
    cols = [inter.user_ids.tolist(), inter.item_ids.tolist(), number_text(inter.ratings), number_text(inter.timestamps)]
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, "".join(sep.join(r) + "\n" for r in zip(*cols)))
    dropped = dropped_columns(data, "MovieLens", ratings=True, time=True, split=False, items=False)
    return WriteResult([target], dropped)


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
