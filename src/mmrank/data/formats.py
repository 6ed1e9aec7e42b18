"""The format registry: which reader/writer handles a path, plus the helpers all readers share.

Ranking formats (``jsonl``, ``parquet``, ``libsvm``) give a ``RankingSet``; interaction formats
(``recbole``, ``movielens``, ``mmrec``, ``sasrec``, ``table``) give ``InteractionData``:
``Interactions`` + optional ``ItemFeatures`` + the data's own split, and every interaction format
can be written (``write_interactions``), so ``mmrank data convert`` goes between any two.
Readers are imported lazily (by dotted name) so that ``import mmrank`` stays fast and so that a
reader module may use the helpers below without an import cycle.

Every reader returns ``(data, ReadReport)``; nothing it reads escapes as anything but
``DataError`` (with file and line), whatever bytes the file holds.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from mmrank.data.model import Interactions, ItemFeatures, RankingSet

if TYPE_CHECKING:
    from mmrank.data.interaction_data import InteractionData, WriteResult
from mmrank.data.validate import ReadReport
from mmrank.errors import ConfigError, DataError

# name -> (module, reader function, writer function or None)
RANKING_FORMATS: dict[str, tuple[str, str, str]] = {
    "jsonl": ("mmrank.data.io_jsonl", "read_jsonl", "write_jsonl"),
    "parquet": ("mmrank.data.io_parquet", "read_parquet", "write_parquet"),
    "libsvm": ("mmrank.data.io_libsvm", "read_libsvm", "write_libsvm"),
}
# name -> (module, reader returning InteractionData, writer returning WriteResult)
INTERACTION_FORMATS: dict[str, tuple[str, str, str]] = {
    "recbole": ("mmrank.data.io_recbole", "read_recbole_data", "write_recbole"),
    "movielens": ("mmrank.data.io_movielens", "read_movielens_data", "write_movielens"),
    "mmrec": ("mmrank.data.io_mmrec", "read_mmrec_data", "write_mmrec"),
    "sasrec": ("mmrank.data.io_sasrec", "read_sasrec_data", "write_sasrec"),
    "table": ("mmrank.data.io_table", "read_table_data", "write_table"),
}
FORMAT_ALIASES = {"csv": "table", "tsv": "table"}
ALL_FORMATS = tuple(RANKING_FORMATS) + tuple(INTERACTION_FORMATS)
FORMAT_HINT = "pass --format (CLI) or data.format (config), one of " + ", ".join(ALL_FORMATS)
_RECBOLE_FIELD = re.compile(r"^[^:\s][^\t]*:(token|float|token_seq|float_seq)$")

_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "libsvm", ".svm": "libsvm", ".libsvm": "libsvm", ".letor": "libsvm",
    ".train": "libsvm", ".test": "libsvm", ".vali": "libsvm", ".valid": "libsvm",
}
_TABLE_EXTENSIONS = (".csv", ".tsv")
_PARQUET_EXTENSIONS = (".parquet", ".pq")
# a LibSVM line starts with a number, then either qid:Q or an i:v pair
_LIBSVM_START = re.compile(rb"^\s*[-+]?[0-9.]+(?:[eE][-+]?\d+)?\s+(?:qid:\S+|\d+:\S+)")


# -- detection ---------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    """Format name of ``path`` from its kind (folder), name, extension, then its first bytes.

    Folders: ``*_feat.npy`` or an ``.inter`` header without RecBole's ``name:type`` fields make
    ``mmrec``, other ``.inter`` folders ``recbole``; ``u.data`` / ``ratings.dat`` make
    ``movielens``. Files: ``.csv`` / ``.tsv`` are ``table``; a Parquet file is ``table`` when it
    has user and item columns, else ranking ``parquet``; ``.txt`` and unknown extensions are told
    apart by their first line (LibSVM ``label qid:...``, a JSON object, a header naming user and
    item columns, or whitespace-separated ids: ``sasrec``)."""
    path = Path(path)
    if path.is_dir():
        return _detect_folder(path)
    if not path.exists():
        raise DataError("file not found", path=path, hint="check the path")
    if path.name in ("u.data", "ratings.dat"):
        return "movielens"
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return _inter_flavour(path)
    if suffix in _TABLE_EXTENSIONS:
        return "table"
    head = _read_head(path)
    if suffix in _PARQUET_EXTENSIONS or head.startswith(b"PAR1"):
        return _parquet_flavour(path)
    by_ext = _EXTENSIONS.get(suffix)
    if by_ext and by_ext != "libsvm":
        return by_ext
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)[0]
    if first.startswith(b"{"):
        return "jsonl"
    if _LIBSVM_START.match(first):
        return "libsvm"
    if _names_user_and_item(first.decode("utf-8", errors="replace")):
        return "table"
    tokens = first.split()
    if by_ext is None or suffix == ".txt":
        if len(tokens) >= 2 and not any(b":" in t for t in tokens):
            return "sasrec"
    if by_ext:
        return by_ext
    raise DataError("cannot tell the format from the name or the first line", path=path, hint=FORMAT_HINT)


def _detect_folder(path: Path) -> str:
    if (path / "u.data").is_file() or (path / "ratings.dat").is_file():
        return "movielens"
    inters = sorted(path.glob("*.inter"))
    if inters:
        if any(path.glob("*_feat.npy")):
            return "mmrec"
        preferred = path / f"{path.name}.inter"
        return _inter_flavour(preferred if preferred in inters else inters[0])
    raise DataError(
        "folder holds no known data (no *.inter, no u.data or ratings.dat)", path=path,
        hint="pass a data file, a RecBole/MMRec folder with *.inter or a MovieLens folder; " + FORMAT_HINT,
    )


def _inter_flavour(path: Path) -> str:
    """``recbole`` when every header field is RecBole's ``name:type``, else ``mmrec``."""
    first = _read_head(path).removeprefix(b"\xef\xbb\xbf").lstrip().split(b"\n", 1)[0]
    fields = first.decode("utf-8", errors="replace").rstrip("\r").split("\t")
    return "recbole" if all(_RECBOLE_FIELD.match(f.strip()) for f in fields) else "mmrec"


def _names_user_and_item(line: str) -> bool:
    from mmrank.data.interaction_table import ITEM_NAMES, USER_NAMES, column_name

    names = {column_name(f).strip('"') for f in re.split(r"[\t,;]", line)}
    return bool(names & set(USER_NAMES)) and bool(names & set(ITEM_NAMES))


def _parquet_flavour(path: Path) -> str:
    """``parquet`` (ranking) when the schema has query ids, ``table`` when it has users and items."""
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    except Exception:  # an unreadable file: let the ranking reader say what is wrong with it
        return "parquet"
    if "query_id" not in names and _names_user_and_item("\t".join(names)):
        return "table"
    return "parquet"


def _read_head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror or e}", path=path, hint="check the path and its permissions") from None


def resolve_format(path: str | Path, format: str | None) -> str:
    """Return the format to read ``path`` with: the given name (case-insensitive), else detected.

    Args:
        path: the data file or folder (used for detection and in error messages).
        format: a name from ``ALL_FORMATS``, or None to call :func:`detect_format`.

    Returns:
        The lower-case format name.

    Raises:
        DataError: when ``format`` is not a known name, or detection fails.
    """
    if format is None:
        return detect_format(path)
    name = FORMAT_ALIASES.get(format.lower(), format.lower())
    if name not in ALL_FORMATS:
        raise DataError(f"unknown format {format!r}", path=path,
                        hint=f"use one of {', '.join(ALL_FORMATS)} (csv and tsv mean table)")
    return name


def is_interaction_format(name: str) -> bool:
    """Tell whether a format name holds user-item interactions rather than ranking queries.

    Args:
        name: a lower-case format name, e.g. from :func:`resolve_format`.

    Returns:
        True for ``recbole``, ``movielens``, ``mmrec``, ``sasrec`` and ``table`` (and its aliases
        ``csv``, ``tsv``); False otherwise (also for unknown names).
    """
    return FORMAT_ALIASES.get(name, name) in INTERACTION_FORMATS


def _function(module: str, name: str, fmt: str) -> Callable:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise DataError(
            f"the {fmt!r} reader is not available ({e})",
            hint="this mmrank build lacks that format; convert the data to another format",
        ) from None


def _check_options(fn: Callable, fmt: str, options: dict) -> None:
    """A format option the format does not know is a config mistake, not a TypeError."""
    known = set(inspect.signature(fn).parameters)
    unknown = sorted(set(options) - known)
    if unknown:
        usable = sorted(known - {"path", "rset", "strict", "label_range"})
        raise ConfigError(
            f"option(s) {unknown} do not apply to the {fmt!r} format"
            + (f" (it takes {usable})" if usable else " (it takes none)")
        )


# -- ranking data --------------------------------------------------------------------------------
def read_ranking(
    path: str | Path,
    format: str | None = None,
    *,
    strict: bool = False,
    label_range: tuple[float, float] | None = None,
    **format_options,
) -> tuple[RankingSet, ReadReport]:
    """Read a ranking file into a RankingSet, quarantining bad records in the report.

    Every bad record (a line that is not JSON, a NaN label, a modality whose width changes, ...) is
    listed in the report with its line and reason, and reading goes on; with ``strict`` the first
    one raises instead. Nothing is dropped silently: ``records_in == records_read +
    records_quarantined``.

    Args:
        path: a ``.jsonl`` / ``.parquet`` / LibSVM (LETOR) file.
        format: ``"jsonl"``, ``"parquet"`` or ``"libsvm"``; None detects it from the name and bytes.
        strict: raise on the first bad record instead of quarantining it.
        label_range: ``(lo, hi)``; labels outside it are bad records.
        **format_options: options of that format's reader (an unknown one is a ConfigError).

    Returns:
        ``(rset, report)``; ``report.write_quarantine(path)`` saves the bad records.

    Raises:
        DataError: when the file is missing or unreadable, its format is unknown or holds
            interactions, or (strict) on the first bad record.
        ConfigError: for a format option the reader does not take.

    Example:
        >>> rset, report = read_ranking("Fold1/train.txt", label_range=(0, 2))  # doctest: +SKIP
        >>> rset.n_queries, report.records_quarantined  # doctest: +SKIP
    """
    fmt = resolve_format(path, format)
    if fmt not in RANKING_FORMATS:
        raise DataError(
            f"{fmt!r} holds interactions, not ranking queries", path=path,
            hint="use read_interactions for recommendation data",
        )
    module, reader, _ = RANKING_FORMATS[fmt]
    fn = _function(module, reader, fmt)
    _check_options(fn, fmt, format_options)
    rset, report = fn(path, strict=strict, label_range=label_range, **format_options)
    report.check_counts()
    return rset, report


def load_ranking(
    path: str | Path, format: str | None = None, *, label_range: tuple[float, float] | None = None, **format_options
) -> RankingSet:
    """Read a ranking file for training or evaluation: the first bad record raises ``DataError``.

    Args:
        path: a ``.jsonl`` / ``.parquet`` / LibSVM (LETOR) file.
        format: the format name, or None to detect it.
        label_range: ``(lo, hi)``; a label outside it raises.
        **format_options: options of that format's reader.

    Returns:
        The RankingSet, with at least one query.

    Raises:
        DataError: on any bad record, or when the file holds no query.
        ConfigError: for a format option the reader does not take.

    Example:
        >>> train = load_ranking("data/train.parquet")  # doctest: +SKIP
        >>> train.summary()  # doctest: +SKIP
    """
    rset, _ = read_ranking(path, format, strict=True, label_range=label_range, **format_options)
    if rset.n_queries == 0:
        raise DataError("no queries in the file", path=path, hint="check that it is the right file and format")
    return rset


def output_format(path: str | Path, format: str | None = None) -> str:
    """The ranking format to write ``path`` in: ``format`` if given, else from the extension."""
    fmt = (format or _EXTENSIONS.get(Path(path).suffix.lower()) or "").lower()
    if fmt not in RANKING_FORMATS:
        raise DataError(
            f"cannot write ranking data as {fmt!r}" if fmt else "cannot tell the output format from the extension",
            path=path,
            hint=f"pass a format, one of {', '.join(RANKING_FORMATS)}, or use a known extension",
        )
    return fmt


def write_ranking(rset: RankingSet, path: str | Path, format: str | None = None, **format_options) -> Path:
    """Write ``rset`` as a ranking file, atomically.

    JSONL and Parquet keep every modality by name; LibSVM flattens them (and the query features)
    into one feature vector per line (``RankingSet.feature_matrix`` order), so names are lost.

    Args:
        rset: the data; NaN / inf labels, scores or features are refused (readers would reject them).
        path: destination file.
        format: ``"jsonl"``, ``"parquet"`` or ``"libsvm"``; None picks it from the extension.
        **format_options: options of that format's writer.

    Returns:
        The path written.

    Raises:
        DataError: when the format cannot be told or does not hold ranking data, or the data holds
            non-finite values.
        ConfigError: for a format option the writer does not take.
    """
    path = Path(path)
    fmt = output_format(path, format)
    module, _, writer = RANKING_FORMATS[fmt]
    fn = _function(module, writer, fmt)
    _check_options(fn, fmt, format_options)
    return fn(rset, path, **format_options)


# -- interaction data ----------------------------------------------------------------------------
def _interaction_format(path: str | Path, format: str | None) -> str:
    fmt = resolve_format(path, format)
    if fmt == "parquet" and format is not None:  # asked for interactions in a Parquet file: the table reader
        return "table"
    if fmt not in INTERACTION_FORMATS:
        raise DataError(
            f"{fmt!r} holds ranking queries, not interactions", path=path,
            hint="use read_ranking for query/candidate data, or " + FORMAT_HINT,
        )
    return fmt


def load_interaction_data(path: str | Path, format: str | None = None, *, strict: bool = False,
                          **format_options) -> "InteractionData":
    """Read recommendation data in any interaction format into ``InteractionData``.

    Args:
        path: a file or folder (see :func:`detect_format`).
        format: ``recbole``, ``movielens``, ``mmrec``, ``sasrec``, ``table`` (``csv``, ``tsv``);
            None detects it.
        strict: raise on the first bad record instead of quarantining it.
        **format_options: options of that format's reader (e.g. ``user_ids="line"`` for sasrec);
            an unknown one is a ConfigError.

    Returns:
        The events, item features, the data's own split labels (when it ships one), the report,
        and the files read / not read.

    Raises:
        DataError: when the path is missing or unreadable, its format holds ranking queries, no
            record is valid, or (strict) on the first bad record.

    Example:
        >>> data = load_interaction_data("ratings.csv")  # doctest: +SKIP
        >>> data.interactions.order, data.split_labels is None  # doctest: +SKIP
    """
    fmt = _interaction_format(path, format)
    module, reader, _ = INTERACTION_FORMATS[fmt]
    fn = _function(module, reader, fmt)
    _check_options(fn, fmt, format_options)
    return fn(path, strict=strict, **format_options)


def read_interactions(
    path: str | Path, format: str | None = None, *, strict: bool = False, **format_options
) -> tuple[Interactions, ItemFeatures | None, ReadReport]:
    """Read recommendation data: RecBole atomic files, MovieLens, MMRec, SASRec text or a table.

    Args:
        path: a ``.inter`` file or a folder (``*.inter``; ``*_feat.npy`` makes it MMRec;
            ``u.data`` / ``ratings.dat`` make it MovieLens), a SASRec ``.txt``, a CSV/Parquet table.
        format: a name of ``INTERACTION_FORMATS``; None detects it.
        strict: raise on the first bad record instead of quarantining it.
        **format_options: options of that format's reader.

    Returns:
        ``(interactions, item_features or None, report)``; :func:`load_interaction_data` gives
        the data's own split and the files read as well.

    Raises:
        DataError: when the path is missing or unreadable, its format holds ranking queries, no
            record is valid, or (strict) on the first bad record.

    Example:
        >>> inter, items, report = read_interactions("../shared/data/ml-100k")  # doctest: +SKIP
        >>> len(inter), inter.n_users, report.records_quarantined  # doctest: +SKIP
    """
    data = load_interaction_data(path, format, strict=strict, **format_options)
    return data.interactions, data.items, data.report


def interaction_output_format(path: str | Path, format: str | None = None) -> str:
    """The interaction format to write ``path`` in: ``format`` if given, else from the name
    (``.csv``/``.tsv``/``.parquet`` table, ``.txt`` sasrec, ``.inter`` recbole, ``u.data`` /
    ``ratings.dat`` movielens). A folder needs ``format``."""
    if format is not None:
        name = FORMAT_ALIASES.get(format.lower(), format.lower())
        if name == "parquet":
            return "table"
        if name not in INTERACTION_FORMATS:
            raise DataError(f"cannot write interactions as {format!r}", path=path,
                            hint=f"use one of {', '.join(INTERACTION_FORMATS)} (csv and tsv mean table)")
        return name
    p = Path(path)
    by_name = {"u.data": "movielens", "ratings.dat": "movielens"}.get(p.name)
    by_suffix = {".csv": "table", ".tsv": "table", ".parquet": "table", ".pq": "table", ".txt": "sasrec",
                 ".inter": "recbole"}.get(p.suffix.lower())
    if by_name or by_suffix:
        return by_name or by_suffix
    raise DataError("cannot tell the output format from the name", path=path,
                    hint=f"pass --to, one of {', '.join(INTERACTION_FORMATS)} (a folder needs recbole, mmrec or movielens)")


def write_interactions(data: "InteractionData", path: str | Path, format: str | None = None) -> "WriteResult":
    """Write interaction data in any interaction format (atomically, file by file).

    Args:
        data: what :func:`load_interaction_data` returned (or one built by hand).
        path: destination: a file for ``table`` / ``sasrec`` / ``movielens``, a folder for
            ``recbole`` / ``mmrec`` (a ``.inter`` path means its folder) / ``movielens``.
        format: the format name, or None to pick it from ``path``.

    Returns:
        ``WriteResult``: the files written and, one sentence each, what the format could not hold
        (e.g. ratings in SASRec text).

    Raises:
        DataError: when the format cannot hold the data at all (MovieLens without timestamps) or
            an id cannot be written in it.
    """
    fmt = interaction_output_format(path, format)
    path = Path(path)
    if fmt in ("recbole", "mmrec") and path.suffix.lower() == ".inter":
        path = path.parent
    module, _, writer = INTERACTION_FORMATS[fmt]
    return _function(module, writer, fmt)(data, path)


# -- helpers shared by the readers and writers ---------------------------------------------------
class BadRecord(Exception):
    """Raised inside a reader for one bad record; the reader hands it to ``ReadReport.bad``."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


FLOAT32_MAX = float(np.finfo(np.float32).max)


def fits_float32(value: float) -> bool:
    """Features are stored as float32: a finite float64 beyond its range would become inf."""
    return abs(value) <= FLOAT32_MAX


def read_bytes(path: str | Path) -> bytes:
    """The whole file, or DataError (never OSError) when it cannot be read."""
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, expected a file", path=path, hint="pass the data file itself")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror or e}", path=path, hint="check the path and its permissions") from None


def iter_lines(data: bytes) -> Iterator[tuple[int, str | None, bytes]]:
    """(1-based line number, decoded text or None if not UTF-8, raw bytes) for each non-blank line.

    A leading UTF-8 byte-order mark (common in files saved on Windows) is dropped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        yield i, text, raw


def raw_text(raw: bytes) -> str:
    """A line as text for the quarantine file (undecodable bytes replaced, never an error)."""
    return raw.decode("utf-8", errors="replace").rstrip("\r")


def read_json_lines(path: str | Path, report: ReadReport, accept: Callable[[int, object], None],
                    loads: Callable[[str], object] | None = None) -> None:
    """Hand each non-blank line of the JSONL file ``path``, parsed, to ``accept(line_no, obj)``.

    One loop for every JSONL reader, so that each keeps the same promise: a line that is not UTF-8,
    is not JSON, or that ``accept`` rejects with ``BadRecord`` is quarantined in ``report`` with its
    line number and reason, and every line is counted (records in = read + quarantined). ``loads``
    defaults to ``json.loads``; readers of machine-written logs pass pydantic-core's faster parser."""
    import json

    loads = loads or json.loads
    for no, text, raw in iter_lines(read_bytes(path)):
        report.records_in += 1
        try:
            if text is None:
                raise BadRecord("line is not UTF-8 text", "save the file as UTF-8")
            try:
                obj = loads(text)
            except (ValueError, RecursionError) as e:
                raise BadRecord(f"not valid JSON ({str(e)[:80]})", "write one JSON object per line") from None
            accept(no, obj)
        except BadRecord as bad:
            report.bad(no, bad.message, bad.hint, raw_text(raw))
            continue
        report.records_read += 1


def short_floats(values: np.ndarray) -> list[float]:
    """float32 values as the shortest Python floats that read back to the same float32.

    ``str(np.float32)`` is the shortest round-tripping decimal, so ``0.007477`` is written as
    ``0.007477`` (not ``0.007476999890059233``) and reading it back gives the identical float32."""
    return [float(t) for t in short_float_texts(values)]


def short_float_texts(values: np.ndarray) -> list[str]:
    """Shortest decimal text of each float32 value (flattened), e.g. ``'0.007477'``."""
    return [str(v) for v in np.asarray(values, dtype=np.float32).ravel()]


def require_finite(rset: RankingSet, path: str | Path) -> None:
    """Writers refuse what their own readers would quarantine: NaN/inf labels, scores, features."""
    arrays = {"labels": rset.labels, "baseline_scores": rset.baseline_scores,
              **{f"modality {k!r}": v for k, v in rset.features.items()},
              **{f"query feature {k!r}": v for k, v in rset.query_features.items()}}
    for what, arr in arrays.items():
        if arr is not None and arr.size and not np.all(np.isfinite(arr)):
            raise DataError(f"{what} holds NaN or infinite values", path=path,
                            hint="fix or drop them before writing; readers reject them")


def format_label(x: float) -> str:
    """Graded labels as integers when integral (``2``, not ``2.0``); otherwise repr."""
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def label_value(x: float) -> int | float:
    """Return a label as a JSON number: an ``int`` when integral (``2``, not ``2.0``), else the float.

    The ``2**53`` bound keeps the int exact (larger floats are not exactly integers in general).
    :func:`format_label` is the text counterpart.

    Args:
        x: the label.

    Returns:
        ``int`` or ``float``.
    """
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def parse_label_range(text: str | None) -> tuple[float, float] | None:
    """``"0,4"`` -> ``(0.0, 4.0)``; ConfigError-like DataError on anything else."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise DataError(f"bad label range {text!r}", hint="write it as LO,HI, e.g. 0,4") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise DataError(f"bad label range {text!r}", hint="LO and HI must be finite with LO <= HI, e.g. 0,4")
    return lo, hi


class SchemaTracker:
    """Remembers which modalities / query features / baseline scores the first good record had,
    so that a later record that lacks one (or adds one) is caught at its own line."""

    def __init__(self) -> None:
        self.schema: tuple | None = None

    def problem(self, modalities, query_features, has_baseline: bool) -> tuple[str, str] | None:
        """Compare one record's schema with the first accepted record's.

        Names are compared as sorted sets, so their order within a record does not matter. Before any
        record is accepted every schema is fine.

        Args:
            modalities: the record's candidate modality names.
            query_features: the record's query feature names.
            has_baseline: whether the record carries a baseline score.

        Returns:
            None when the schema matches, else ``(message, hint)`` for the first difference (modalities,
            then query features, then baseline scores), ready for ``BadRecord(message, hint)``.
        """
        schema = (tuple(sorted(modalities)), tuple(sorted(query_features)), bool(has_baseline))
        if self.schema is None or self.schema == schema:
            return None
        want_m, want_q, want_b = self.schema
        if schema[0] != want_m:
            return (f"modalities {list(schema[0])} differ from earlier records {list(want_m)}",
                    "give every candidate the same modalities")
        if schema[1] != want_q:
            return (f"query features {list(schema[1])} differ from earlier records {list(want_q)}",
                    "give every query the same query features")
        return ("baseline scores present in some records but not others",
                "give every candidate a baseline score, or none")

    def accept(self, modalities, query_features, has_baseline: bool) -> None:
        """Record a good record's schema as the reference, if none is set yet (later calls are no-ops).

        Readers call it only after a record passed all checks, so one bad first record cannot make
        every good record after it look wrong.

        Args:
            modalities: the record's candidate modality names.
            query_features: the record's query feature names.
            has_baseline: whether the record carries a baseline score.
        """
        if self.schema is None:
            self.schema = (tuple(sorted(modalities)), tuple(sorted(query_features)), bool(has_baseline))


def empty_ranking_set() -> RankingSet:
    """Return a RankingSet with no queries, no candidates and no modalities.

    Readers return it when every record was quarantined, so callers still get a valid set.
    """
    return RankingSet(query_ids=[], offsets=[0], candidate_ids=[], labels=[])
