"""MMRec's layout (github.com/enoche/MMRec): one folder with a ``*.inter`` file and ``*_feat.npy``.

``<name>.inter`` is tab-separated with a header, normally ``userID itemID rating timestamp
x_label``; names are matched case-insensitively against ``USER_NAMES``, ``ITEM_NAMES``, ... (a
RecBole-style ``:type`` suffix is ignored), and only the user and item columns are required.
``x_label`` says which split a row belongs to: 0 train, 1 valid, 2 test; any other value is a
bad record. ``read_mmrec_split`` returns that split as an ``InteractionSplit``; ``read_mmrec``
just reads (and still validates the column when present).

Every ``<modality>_feat.npy`` (``text_feat.npy``, ``image_feat.npy``, ...) is one modality named
by the file stem without ``_feat``; row i holds item id i (MMRec ids are dense and 0-based),
so all feature files must have the same number of rows and an interaction whose item id is not
a row number (``0`` .. ``rows-1``, written without leading zeros) is a bad record. A feature
file that is unreadable, not 2-D numeric, or holds NaN/inf or values beyond float32 is a
DataError (the whole modality would be wrong, not one record). Without feature files the item
features are None.
Line rules (duplicates, blank lines, missing timestamp): see ``interaction_table``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrank.data.formats import FLOAT32_MAX, read_bytes
from mmrank.data.interaction_table import (
    ColumnLayout,
    ParsedInteractions,
    parse_interactions,
    resolve_file,
    split_header,
)
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.data.splits import InteractionSplit
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

USER_NAMES = ("userid", "user_id", "user", "uid", "reviewerid")
ITEM_NAMES = ("itemid", "item_id", "item", "iid", "asin")
RATING_NAMES = ("rating", "overall", "score")
TIME_NAMES = ("timestamp", "time", "unixreviewtime", "ts")
SPLIT_LABEL_NAMES = ("x_label", "split", "split_label")
SPLIT_PARTS = ("train", "valid", "test")  # x_label 0, 1, 2


def _find(names: list[str], aliases: tuple[str, ...]) -> int | None:
    for a in aliases:
        if a in names:
            return names.index(a)
    return None


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
    files = sorted(folder.glob("*_feat.npy"))
    if not files:
        return None
    mats = {f.name[: -len("_feat.npy")]: load_feature_file(f) for f in files}
    rows = {name: m.shape[0] for name, m in mats.items()}
    if len(set(rows.values())) != 1:
        raise DataError(f"feature files disagree on the number of items: {rows}", path=folder,
                        hint="row i of every *_feat.npy must be item i")
    n = next(iter(rows.values()))
    return ItemFeatures(item_ids=np.array([str(i) for i in range(n)], dtype=object), features=mats)


def _read(path: str | Path, strict: bool, rating_range) -> tuple[ParsedInteractions, ItemFeatures | None, ReadReport, int]:
    """Parsed rows, item features, report and the header's line number."""
    inter_path = resolve_file(path, ".inter", "an MMRec <name>.inter file and *_feat.npy files")
    items = _read_features(inter_path.parent)
    report = ReadReport(str(inter_path), strict=strict)
    lineno, header, body, first = split_header(read_bytes(inter_path), inter_path)
    names = [h.strip().split(":")[0].lower() for h in header.split("\t")]
    user, item = _find(names, USER_NAMES), _find(names, ITEM_NAMES)
    if user is None or item is None:
        raise DataError(
            f"header has no {'user' if user is None else 'item'} column (header: {header[:300]!r})",
            path=inter_path, line=lineno, hint="MMRec headers read 'userID<TAB>itemID<TAB>rating<TAB>timestamp<TAB>x_label'",
        )
    split_col = _find(names, SPLIT_LABEL_NAMES)
    layout = ColumnLayout(
        n_fields=len(names), user=user, item=item,
        rating=_find(names, RATING_NAMES), timestamp=_find(names, TIME_NAMES),
        int_columns={} if split_col is None else {"x_label": split_col},
    )
    item_check = None
    if items is not None:
        n_items = len(items)

        def item_check(item_id: str) -> str | None:
            if item_id.isascii() and item_id.isdigit() and item_id == str(int(item_id)) and int(item_id) < n_items:
                return None
            return f"item id {item_id!r} is not a row number 0..{n_items - 1} of the *_feat.npy files"

    parsed = parse_interactions(
        body, first_lineno=first, layout=layout, sep="\t", report=report, rating_range=rating_range,
        item_id_check=item_check, int_column_check={"x_label": lambda v: 0 <= v < len(SPLIT_PARTS)},
    )
    report.check_counts()
    return parsed, items, report, lineno


def read_mmrec(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, ReadReport]:
    """Read an MMRec dataset folder (or its ``.inter`` file). See the module docstring."""
    parsed, items, report, _ = _read(path, strict, rating_range)
    return parsed.interactions, items, report


def read_mmrec_split(
    path: str | Path, *, strict: bool = False, rating_range: tuple[float, float] | None = None
) -> tuple[Interactions, ItemFeatures | None, InteractionSplit, ReadReport]:
    """``read_mmrec`` plus the file's own split (``x_label`` 0/1/2 -> train/valid/test)."""
    parsed, items, report, header_lineno = _read(path, strict, rating_range)
    if "x_label" not in parsed.int_columns:
        raise DataError(f"no split column (one of {', '.join(SPLIT_LABEL_NAMES)}) in the header", path=report.path,
                        line=header_lineno, hint="add MMRec's x_label column (0 train, 1 valid, 2 test) or make a split with mmrank.data.splits")
    split = InteractionSplit.from_labels(parsed.interactions, parsed.int_columns["x_label"], "mmrec_x_label",
                                         {"source": Path(report.path).name})
    return parsed.interactions, items, split, report
