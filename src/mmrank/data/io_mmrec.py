"""MMRec's layout (github.com/enoche/MMRec): one folder with a ``*.inter`` file and ``*_feat.npy``.

``<name>.inter`` is tab-separated with a header, normally ``userID itemID rating timestamp
x_label``; names are matched case-insensitively against ``interaction_table.USER_NAMES``,
``ITEM_NAMES``, ... (a RecBole-style ``:type`` suffix is ignored), and only the user and item
columns are required. ``x_label`` says which split a row belongs to: 0 train, 1 valid, 2 test;
any other value is a bad record. ``read_mmrec_data`` returns it as ``split_labels``,
``read_mmrec_split`` as an ``InteractionSplit``; ``read_mmrec`` just reads (and still validates
the column when present). Without a timestamp column the events have ``order == "row"``: MMRec's
own data sets carry no usable time, and their split is ``x_label``.

Every ``<modality>_feat.npy`` (``text_feat.npy``, ``image_feat.npy``, ``audio_feat.npy``, ...) is
one modality named by the file stem without ``_feat``; row i holds item id i (MMRec ids are
dense and 0-based), so all feature files must have the same number of rows and an interaction
whose item id is not a row number (``0`` .. ``rows-1``, written without leading zeros) is a bad
record. A feature file that is unreadable, not 2-D numeric, or holds NaN/inf or values beyond
float32 is a DataError (the whole modality would be wrong, not one record). Without feature files
the item features are None.

``i_id_mapping.csv`` / ``u_id_mapping.csv`` (MMRec's preprocessing writes them: a header, tab-
or comma-separated, one column ``itemID`` / ``userID`` with the dense id and one with the raw id,
e.g. ``asin``) translate the dense ids back to the raw ones: events and feature rows then carry
the raw ids. An id the mapping lacks, or a mapping that repeats an id, is a DataError. Other files
of the folder (``user_graph_dict.npy``, a ``.npy`` not named ``*_feat.npy``, ...) are not read;
``files_not_read`` lists them with the reason.
Line rules (duplicates, blank lines, missing timestamp): see ``interaction_table``.

``write_mmrec(data, folder)`` writes ``<folder name>.inter`` (``userID itemID [rating]
[timestamp|position] [x_label]``), one ``<modality>_feat.npy`` per item modality, and the two
mapping files when the ids are not already dense row numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.data.formats import FLOAT32_MAX, read_bytes
from mmrank.data.interaction_data import (
    InteractionData,
    WriteResult,
    check_writable,
    dropped_columns,
    not_read_files,
    tab_separated_events,
)
from mmrank.data.interaction_table import (
    SPLIT_LABEL_CHECK,
    SPLIT_LABEL_NAMES,
    SPLIT_PARTS,  # noqa: F401  (re-exported: MMRec's x_label names)
    ParsedInteractions,
    column_name,
    header_layout,
    parse_interactions,
    resolve_file,
    split_header,
)
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.data.splits import InteractionSplit
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

FEATURE_SUFFIX = "_feat.npy"
ITEM_MAPPING, USER_MAPPING = "i_id_mapping.csv", "u_id_mapping.csv"
MMREC_COLUMNS = {"user": "userID", "item": "itemID", "rating": "rating", "timestamp": "timestamp",
                 "position": "position", "x_label": "x_label"}
HEADER_HINT = "MMRec headers read 'userID<TAB>itemID<TAB>rating<TAB>timestamp<TAB>x_label'"


def load_feature_file(path: Path) -> np.ndarray:
    """One ``(n_items, d)`` modality matrix, or a DataError saying what is wrong with the file."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises many types for a damaged file; all mean "not a usable .npy"
        raise DataError(f"not a readable .npy array ({type(e).__name__}: {str(e)[:200]})", path=path,
                        hint="write it with numpy.save(path, array) from a 2-D float array") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive loads as NpzFile
        close = getattr(arr, "close", None)
        if close:
            close()
        raise DataError("holds an archive, not one array", path=path, hint="save one 2-D array per *_feat.npy file")
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise DataError(f"expected a 2-D numeric array, found shape {arr.shape} dtype {arr.dtype}", path=path,
                        hint="save a (n_items, dim) float array")
    # Modalities are stored as float32: a float64 value beyond its range would become inf there.
    finite = np.isfinite(arr).all(axis=1) & (np.abs(arr) <= FLOAT32_MAX).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"row {row} (item {row}) holds NaN, inf or a value beyond float32",
                        path=path, hint="replace them with finite float32 numbers")
    return arr


def _read_features(folder: Path) -> ItemFeatures | None:
    files = sorted(folder.glob(f"*{FEATURE_SUFFIX}"))
    if not files:
        return None
    mats = {f.name[: -len(FEATURE_SUFFIX)]: load_feature_file(f) for f in files}
    rows = {name: m.shape[0] for name, m in mats.items()}
    if len(set(rows.values())) != 1:
        raise DataError(f"feature files disagree on the number of items: {rows}", path=folder,
                        hint="row i of every *_feat.npy must be item i")
    n = next(iter(rows.values()))
    return ItemFeatures(item_ids=np.array([str(i) for i in range(n)], dtype=object), features=mats)


def read_id_mapping(path: Path, dense_name: str) -> dict[str, str]:
    """``{dense id: raw id}`` from an MMRec mapping file (header; the ``dense_name`` column, e.g.
    ``itemID``, and one other column with the raw id; tab- or comma-separated)."""
    lineno, header, body, first = split_header(read_bytes(path), path)
    sep = "\t" if "\t" in header else ","
    names = [column_name(h) for h in header.split(sep)]
    if len(names) != 2 or dense_name.lower() not in names:
        raise DataError(f"expected two columns, one named {dense_name} (header: {header[:200]!r})", path=path,
                        line=lineno, hint=f"write '<raw id column>{sep}{dense_name}' as MMRec's preprocessing does")
    dense_col = names.index(dense_name.lower())
    out: dict[str, str] = {}
    raw_seen: set[str] = set()
    for k, line in enumerate(body.decode("utf-8", errors="replace").split("\n")):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.rstrip("\r").split(sep)]
        if len(fields) != 2 or not all(fields):
            raise DataError(f"expected 2 non-empty fields, found {fields!r}", path=path, line=first + k,
                            hint="one '<raw id> <dense id>' pair per line")
        dense, raw = fields[dense_col], fields[1 - dense_col]
        if dense in out or raw in raw_seen:
            raise DataError(f"id {dense if dense in out else raw!r} appears twice", path=path, line=first + k,
                            hint="each dense id maps to one raw id and back")
        out[dense] = raw
        raw_seen.add(raw)
    return out


def _map_ids(ids: np.ndarray, mapping: dict[str, str], path: Path) -> np.ndarray:
    uniq, inverse = np.unique(ids, return_inverse=True)
    missing = [u for u in uniq if u not in mapping]
    if missing:
        raise DataError(f"no entry for id {missing[0]!r} ({len(missing)} ids missing)", path=path,
                        hint="the mapping must list every dense id of the .inter and *_feat.npy files")
    return np.array([mapping[u] for u in uniq], dtype=object)[inverse]


def _why_not_read(p: Path) -> str:
    if p.suffix == ".npy":
        return f"a .npy file not named <modality>{FEATURE_SUFFIX}: rename it to read it as an item modality"
    if p.suffix == ".inter":
        return "another .inter file: point data.path at it to read it"
    return f"not an MMRec file mmrank reads (*.inter, *{FEATURE_SUFFIX}, {ITEM_MAPPING}, {USER_MAPPING})"


def _read(path: str | Path, strict: bool, rating_range) -> tuple[ParsedInteractions, ItemFeatures | None, ReadReport, int, list[Path]]:
    """Parsed rows, item features, report, the header's line number and the files read."""
    inter_path = resolve_file(path, ".inter", "an MMRec <name>.inter file and *_feat.npy files")
    folder = inter_path.parent
    items = _read_features(folder)
    report = ReadReport(str(inter_path), strict=strict)
    lineno, header, body, first = split_header(read_bytes(inter_path), inter_path)
    layout = header_layout(header, "\t", inter_path, lineno, HEADER_HINT)
    item_check = None
    if items is not None:
        n_items = len(items)

        def item_check(item_id: str) -> str | None:
            if item_id.isascii() and item_id.isdigit() and item_id == str(int(item_id)) and int(item_id) < n_items:
                return None
            return f"item id {item_id!r} is not a row number 0..{n_items - 1} of the *_feat.npy files"

    parsed = parse_interactions(
        body, first_lineno=first, layout=layout, sep="\t", report=report, rating_range=rating_range,
        item_id_check=item_check, int_column_check=SPLIT_LABEL_CHECK,
    )
    report.check_counts()
    read = [inter_path] + sorted(folder.glob(f"*{FEATURE_SUFFIX}"))
    inter = parsed.interactions
    for name, dense_name, attr in ((USER_MAPPING, "userID", "user_ids"), (ITEM_MAPPING, "itemID", "item_ids")):
        if (folder / name).is_file():
            mapping = read_id_mapping(folder / name, dense_name)
            setattr(inter, attr, _map_ids(getattr(inter, attr), mapping, folder / name))
            if attr == "item_ids" and items is not None:
                items.item_ids = _map_ids(items.item_ids, mapping, folder / name)
            read.append(folder / name)
    return parsed, items, report, lineno, read


def read_mmrec(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, ReadReport]:
    """Read an MMRec dataset folder (or its ``.inter`` file). See the module docstring."""
    parsed, items, report, _, _ = _read(path, strict, rating_range)
    return parsed.interactions, items, report


def read_mmrec_data(path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
                    ) -> InteractionData:
    """``read_mmrec`` as ``InteractionData``: with ``x_label`` as the split labels and the
    folder's files that were not read."""
    parsed, items, report, _, read = _read(path, strict, rating_range)
    folder = Path(report.path).parent
    return InteractionData(parsed.interactions, items, report, "mmrec", parsed.int_columns.get("x_label"),
                           [str(p) for p in read], not_read_files(folder, read, _why_not_read))


def read_mmrec_split(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, InteractionSplit, ReadReport]:
    """``read_mmrec`` plus the file's own split (``x_label`` 0/1/2 -> train/valid/test)."""
    parsed, items, report, header_lineno, _ = _read(path, strict, rating_range)
    if "x_label" not in parsed.int_columns:
        raise DataError(f"no split column (one of {', '.join(SPLIT_LABEL_NAMES)}) in the header", path=report.path,
                        line=header_lineno, hint="add MMRec's x_label column (0 train, 1 valid, 2 test) or make a split with mmrank.data.splits")
    split = InteractionSplit.from_labels(parsed.interactions, parsed.int_columns["x_label"], "mmrec_x_label",
                                         {"source": Path(report.path).name})
    return parsed.interactions, items, split, report


def _dense(ids: np.ndarray, first: list[str] | None = None) -> tuple[dict[str, str] | None, np.ndarray, int]:
    """(raw -> dense mapping or None when the ids already are 0..n-1 row numbers, dense ids,
    number of dense ids); ``first`` lists ids that take the first dense numbers (feature rows)."""
    order = list(dict.fromkeys((first or []) + list(dict.fromkeys(ids.tolist()))))
    if all(v.isdigit() and v == str(int(v)) for v in order) and sorted(int(v) for v in order) == list(range(len(order))) \
            and (first is None or first == [str(k) for k in range(len(first))]):
        return None, ids, len(order)
    mapping = {raw: str(k) for k, raw in enumerate(order)}
    return mapping, np.array([mapping[v] for v in ids.tolist()], dtype=object), len(order)


def write_mmrec(data: InteractionData, folder: str | Path) -> WriteResult:
    """Write an MMRec folder (see the module docstring)."""
    folder = Path(folder)
    inter = data.interactions
    items = data.items if data.items is not None and data.items.features else None
    check_writable({"user id": inter.user_ids, "item id": inter.item_ids}, "MMRec", folder)
    user_map, users, _ = _dense(inter.user_ids)
    item_map, item_ids, n_rows = _dense(inter.item_ids, None if items is None else [str(i) for i in items.item_ids])
    folder.mkdir(parents=True, exist_ok=True)
    files = [atomic_write_text(folder / f"{folder.name}.inter", tab_separated_events(data, users, item_ids, MMREC_COLUMNS))]
    dropped: list[str] = []
    if items is not None:
        for name, mat in items.features.items():
            full = np.zeros((n_rows, mat.shape[1]), dtype=np.float32)
            full[: len(items)] = np.where(items.masks[name][:, None], mat, 0.0)
            buf = _npy_bytes(full)
            files.append(atomic_write_bytes(folder / f"{name}{FEATURE_SUFFIX}", buf))
            if (~items.masks[name]).any():
                dropped.append(f"the mask of {name!r}: {int((~items.masks[name]).sum())} items without a value are zero rows")
        if n_rows > len(items):
            dropped.append(f"{n_rows - len(items)} items of the events have no feature row: written as zero rows")
    for mapping, name, dense_name in ((user_map, USER_MAPPING, "userID"), (item_map, ITEM_MAPPING, "itemID")):
        if mapping is not None:
            raw_name = "user_id" if dense_name == "userID" else "item_id"
            rows = "".join(f"{raw}\t{dense}\n" for raw, dense in mapping.items())
            files.append(atomic_write_text(folder / name, f"{raw_name}\t{dense_name}\n" + rows))
    if data.items is not None and data.items.titles is not None:
        dropped.append("titles: MMRec has no title file")
    return WriteResult(files, dropped + dropped_columns(data, "MMRec", ratings=True, time=True, split=True, items=True))


def _npy_bytes(matrix: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, matrix, allow_pickle=False)
    return buf.getvalue()
