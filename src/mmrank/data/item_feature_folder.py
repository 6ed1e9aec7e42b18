"""The item-feature folder the multimodal recommender reads (``data.item_features``), for any data.

Layout: ``items.safetensors`` (one float32 ``(n_items, d)`` matrix per modality plus a uint8
``mask.<modality>``: 1 where the item has a real value) and ``items.json`` (``item_ids`` in row
order, ``titles`` or null, ``dims``, ``missing`` ids per modality, ``sources`` and ``encoders``:
where each modality came from). ``mmrank data features --dataset ml100k`` writes one for
MovieLens-100K; ``mmrank data item-features`` (``build_item_feature_folder``) writes one from

* per-modality matrices: ``.npy`` files whose row r is the item ``ids[r]`` (``ids`` from a file:
  one id per line, or a two-column mapping such as MMRec's ``i_id_mapping.csv`` with the row in
  ``itemID``/``row``/``index``; without one, row r is item ``r``: MMRec's convention), or
  Parquet/CSV tables with an item-id column and either one list column or several numeric
  columns (the vector);
* an MMRec folder: every ``<modality>_feat.npy`` (with ``i_id_mapping.csv`` when present, as
  ``read_mmrec`` reads it);
* raw text or images encoded by ``mmrank.features`` (``features/item_encoding.py``).

Modalities are merged over the union of their item ids; an item a modality lacks gets a zero,
masked row. Matrices must be 2-D, numeric and finite within float32, and ids unique: anything
else is a ``DataError`` naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.data.interaction_table import ITEM_NAMES, column_name, find_column
from mmrank.data.model import ItemFeatures
from mmrank.errors import DataError

TENSORS, META = "items.safetensors", "items.json"
ROW_NAMES = ("itemid", "row", "index", "idx")
# Files other builders put beside the two (not part of the folder's item features).
KNOWN_EXTRAS = {"features_report.json": "the feature build report", "rerank/": "the ML-100K reranking task"}


@dataclass
class Modality:
    """One modality's matrix ``(n, d)`` for ``item_ids (n,)``, the rows with a value (``mask``),
    and where it came from (``source``: a file, an encoder id)."""

    name: str
    item_ids: np.ndarray
    matrix: np.ndarray
    source: str
    mask: np.ndarray | None = None
    encoder: str | None = None

    def __post_init__(self) -> None:
        self.item_ids = np.asarray([str(i) for i in self.item_ids], dtype=object)
        self.matrix = checked_matrix(self.matrix, self.source)
        if len(self.item_ids) != len(self.matrix):
            raise DataError(f"{len(self.item_ids)} item ids for {len(self.matrix)} rows of {self.name!r}",
                            path=self.source, hint="give exactly one id per row (--ids FILE)")
        _require_unique(self.item_ids, self.source)
        self.mask = np.ones(len(self.matrix), dtype=bool) if self.mask is None else np.asarray(self.mask, dtype=bool)


@dataclass
class ItemFolderSpec:
    """What goes into a folder: the modalities, optional titles ``{item id: title}``, extra info."""

    modalities: list[Modality]
    titles: dict[str, str] | None = None
    info: dict = field(default_factory=dict)


def checked_matrix(arr, source: str | Path) -> np.ndarray:
    """``arr`` as float32 when it is 2-D, numeric and finite within float32; else a DataError."""
    from mmrank.data.formats import FLOAT32_MAX

    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.dtype.kind not in "biuf":
        raise DataError(f"expected a 2-D numeric matrix, found shape {arr.shape} dtype {arr.dtype}", path=source,
                        hint="save one (n_items, dim) float array per modality")
    bad = ~(np.isfinite(arr).all(axis=1) & (np.abs(arr) <= FLOAT32_MAX).all(axis=1))
    if bad.any():
        raise DataError(f"row {int(np.argmax(bad))} holds NaN, inf or a value beyond float32", path=source,
                        hint="replace them with finite numbers (or leave the item out of this modality)")
    return arr.astype(np.float32, copy=False)


def _require_unique(ids: np.ndarray, source) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"item id {uniq[counts > 1][0]!r} has {counts[counts > 1][0]} rows", path=source,
                        hint="give every item one row per modality")


# -- sources ---------------------------------------------------------------------------------------
def read_row_ids(path: str | Path) -> np.ndarray:
    """Item ids in row order from ``path``: one id per line, or a table with a header holding a
    row column (``itemID``, ``row``, ``index``) and an id column (MMRec's ``i_id_mapping.csv``)."""
    from mmrank.data.formats import read_bytes

    path = Path(path)
    lines = [ln.rstrip("\r") for ln in read_bytes(path).decode("utf-8", errors="replace").split("\n") if ln.strip()]
    if not lines:
        raise DataError("no ids in the file", path=path, hint="write one item id per line, in row order")
    sep = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if sep is None:
        return np.array([ln.strip() for ln in lines], dtype=object)
    names = [column_name(f) for f in lines[0].split(sep)]
    row_col = find_column(names, ROW_NAMES)
    if len(names) != 2 or row_col is None:
        raise DataError(f"expected one id per line, or two columns one of which is the row ({', '.join(ROW_NAMES)}); "
                        f"header {lines[0][:200]!r}", path=path, line=1, hint="e.g. MMRec's i_id_mapping.csv: asin<TAB>itemID")
    ids: dict[int, str] = {}
    for k, line in enumerate(lines[1:], start=2):
        fields = [f.strip() for f in line.split(sep)]
        try:
            row = int(fields[row_col])
            ids.setdefault(row, fields[1 - row_col])
        except (ValueError, IndexError):
            raise DataError(f"expected '<id>{sep}<row number>', found {line[:200]!r}", path=path, line=k,
                            hint="fix the line") from None
    if sorted(ids) != list(range(len(ids))):
        raise DataError(f"rows {min(ids)}..{max(ids)} are not 0..{len(ids) - 1} each once", path=path,
                        hint="the mapping must give an id to every row of the matrices")
    return np.array([ids[r] for r in range(len(ids))], dtype=object)


def npy_modality(name: str, path: str | Path, ids: np.ndarray | None = None) -> Modality:
    """A modality from a ``.npy`` matrix; row r is item ``ids[r]`` (default: ``str(r)``)."""
    from mmrank.data.io_mmrec import load_feature_file

    path = Path(path)
    mat = load_feature_file(path)
    row_ids = np.array([str(r) for r in range(len(mat))], dtype=object) if ids is None else ids
    return Modality(name, row_ids, mat, str(path))


def table_modality(name: str, path: str | Path) -> Modality:
    """A modality from a Parquet / CSV table: an item-id column plus one list column (the vector)
    or several numeric columns (in table order)."""
    import pandas as pd

    path = Path(path)
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, sep=None, engine="python")
    except Exception as e:  # pandas/pyarrow raise many types for a damaged file
        raise DataError(f"cannot read the table ({type(e).__name__}: {str(e)[:200]})", path=path,
                        hint="write it with pandas (to_parquet / to_csv)") from None
    names = [column_name(str(c)) for c in df.columns]
    id_col = find_column(names, ITEM_NAMES + ("id",))
    if id_col is None:
        raise DataError(f"no item-id column among {list(df.columns)[:20]}", path=path,
                        hint="name it item_id (or itemID, asin, id)")
    rest = [c for k, c in enumerate(df.columns) if k != id_col]
    lists = [c for c in rest if df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], (list, np.ndarray))]
    if len(lists) == 1:
        try:
            mat = np.stack([np.asarray(v, dtype=np.float64) for v in df[lists[0]]])
        except (ValueError, TypeError):
            raise DataError(f"column {lists[0]!r} holds vectors of different lengths or non-numbers", path=path,
                            hint="give every item a vector of the same length") from None
    else:
        numeric = [c for c in rest if df[c].dtype.kind in "biuf"]
        if not numeric or len(numeric) != len(rest):
            raise DataError(f"expected one list column or only numeric columns beside the id, found {rest[:10]}",
                            path=path, hint="drop the other columns")
        mat = df[numeric].to_numpy(dtype=np.float64)
    return Modality(name, df.iloc[:, id_col].astype(str).to_numpy(dtype=object), mat, str(path))


def mmrec_modalities(folder: str | Path) -> list[Modality]:
    """Every ``<modality>_feat.npy`` of an MMRec folder, ids mapped as ``read_mmrec`` maps them."""
    from mmrank.data.io_mmrec import FEATURE_SUFFIX, ITEM_MAPPING, read_id_mapping

    folder = Path(folder)
    files = sorted(folder.glob(f"*{FEATURE_SUFFIX}"))
    if not files:
        raise DataError(f"no *{FEATURE_SUFFIX} file in this folder", path=folder,
                        hint="point --mmrec at a folder holding text_feat.npy, image_feat.npy, ...")
    mapping = read_id_mapping(folder / ITEM_MAPPING, "itemID") if (folder / ITEM_MAPPING).is_file() else None
    out = []
    for f in files:
        m = npy_modality(f.name[: -len(FEATURE_SUFFIX)], f)
        if mapping is not None:
            missing = [i for i in m.item_ids if i not in mapping]
            if missing:
                raise DataError(f"no entry for row {missing[0]!r}", path=folder / ITEM_MAPPING,
                                hint="the mapping must cover every row of the *_feat.npy files")
            m.item_ids = np.array([mapping[i] for i in m.item_ids], dtype=object)
        out.append(m)
    return out


def read_titles(path: str | Path, id_column: str | None = None, title_column: str = "title") -> dict[str, str]:
    """``{item id: title}`` from a CSV / Parquet / JSONL table with an id and a title column."""
    df = read_item_table(path)
    ids = table_column(df, id_column, ITEM_NAMES + ("id",), path, "item-id")
    titles = table_column(df, title_column, (title_column.lower(), "title", "name"), path, "title")
    return {str(i): ("" if t is None or t != t else str(t)) for i, t in zip(ids, titles)}


def read_item_table(path: str | Path):
    """A CSV / TSV / Parquet / JSONL item table as a pandas DataFrame (DataError when unreadable)."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pd.read_json(path, lines=suffix != ".json", dtype=False)
        return pd.read_csv(path, sep=None, engine="python", dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises many types for a damaged file
        raise DataError(f"cannot read the item table ({type(e).__name__}: {str(e)[:200]})", path=path,
                        hint="write it as CSV with a header, Parquet or JSON lines") from None


def table_column(df, name: str | None, aliases: tuple[str, ...], path, what: str) -> np.ndarray:
    """The values of column ``name`` (or the first of ``aliases``), case-insensitive; DataError naming the columns."""
    names = [column_name(str(c)) for c in df.columns]
    k = find_column(names, (name.lower(),) if name else aliases)
    if k is None:
        raise DataError(f"no {what} column {name or aliases[0]!r} among {list(df.columns)[:20]}", path=path,
                        hint=f"name the {what} column, e.g. --{what.replace('-', '')}-column NAME")
    return df.iloc[:, k].to_numpy(dtype=object)


# -- build, save, load -------------------------------------------------------------------------------
def merge_modalities(spec: ItemFolderSpec) -> ItemFeatures:
    """One ``ItemFeatures`` over the union of the modalities' ids (first-seen order; titles' ids
    after them); an item a modality lacks gets a zero row with mask False."""
    names = [m.name for m in spec.modalities]
    if len(set(names)) != len(names):
        raise DataError(f"modality names repeat: {names}", hint="give every modality its own name")
    ids = list(dict.fromkeys([i for m in spec.modalities for i in m.item_ids] + list(spec.titles or {})))
    row = {i: r for r, i in enumerate(ids)}
    features, masks = {}, {}
    for m in spec.modalities:
        rows = np.array([row[i] for i in m.item_ids], dtype=np.int64)
        mat = np.zeros((len(ids), m.matrix.shape[1]), dtype=np.float32)
        mask = np.zeros(len(ids), dtype=bool)
        mat[rows] = np.where(m.mask[:, None], m.matrix, 0.0)
        mask[rows] = m.mask
        features[m.name], masks[m.name] = mat, mask
    titles = None if spec.titles is None else [spec.titles.get(i, "") for i in ids]
    return ItemFeatures(ids, features, masks, titles)


def build_item_feature_folder(spec: ItemFolderSpec, out_dir: str | Path) -> tuple[ItemFeatures, dict]:
    """Merge ``spec`` and write the folder; returns the features and the ``items.json`` info."""
    if not spec.modalities:
        raise DataError("no modality given", path=out_dir, hint="pass --modality NAME=FILE, --mmrec FOLDER, --text-column or --images")
    items = merge_modalities(spec)
    info = {**spec.info, "sources": {m.name: m.source for m in spec.modalities},
            "encoders": {m.name: m.encoder or f"file:{Path(m.source).name}" for m in spec.modalities}}
    save_item_features(items, out_dir, info)
    return items, info


def save_item_features(items: ItemFeatures, out_dir: str | Path, info: dict) -> Path:
    """``items.safetensors`` + ``items.json`` in ``out_dir`` (atomic writes)."""
    from safetensors.numpy import save

    out_dir = Path(out_dir)
    tensors = {name: np.ascontiguousarray(m, dtype=np.float32) for name, m in items.features.items()}
    tensors.update({f"mask.{name}": items.masks[name].astype(np.uint8) for name in items.features})
    atomic_write_bytes(out_dir / TENSORS, save(tensors))
    meta = dict(info)
    meta.update({
        "item_ids": [str(i) for i in items.item_ids],
        "titles": None if items.titles is None else [str(t) for t in items.titles],
        "dims": items.modality_dims,
        "missing": {name: [str(i) for i in items.item_ids[~m]] for name, m in items.masks.items()},
    })
    atomic_write_text(out_dir / META, json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return out_dir / TENSORS


def load_item_features(out_dir: str | Path) -> tuple[ItemFeatures, dict]:
    """Read what ``save_item_features`` wrote."""
    from safetensors.numpy import load_file

    out_dir = Path(out_dir)
    for name in (TENSORS, META):
        if not (out_dir / name).is_file():
            raise DataError(f"{name} not found", path=out_dir / name,
                            hint="build the folder with `mmrank data item-features OUT ...` "
                                 "(or `mmrank data features --dataset ml100k` for MovieLens-100K)")
    tensors = load_file(str(out_dir / TENSORS))
    info = json.loads((out_dir / META).read_text())
    names = [k for k in tensors if not k.startswith("mask.")]
    items = ItemFeatures(
        item_ids=info["item_ids"],
        features={k: tensors[k] for k in names},
        masks={k: tensors[f"mask.{k}"].astype(bool) for k in names},
        titles=info.get("titles"),
    )
    return items, info


def is_item_feature_folder(path: str | Path) -> bool:
    """True for a folder holding ``items.safetensors`` and ``items.json``."""
    p = Path(path)
    return p.is_dir() and (p / TENSORS).is_file() and (p / META).is_file()


def describe_item_feature_folder(path: str | Path) -> dict:
    """Items, titles, each modality's dim / coverage / source, and files the folder holds beside
    its own two (listed with why they are not item features, never skipped without a word)."""
    items, info = load_item_features(path)
    n = len(items)
    out = {
        "kind": "item_features",
        "items": n,
        "titles": items.titles is not None,
        "modalities": {k: {"dim": d, "items_with_value": int(items.masks[k].sum()), "items": n,
                           "source": (info.get("sources") or {}).get(k) or (info.get("encoders") or {}).get(k)}
                       for k, d in items.modality_dims.items()},
    }
    others = {}
    for p in sorted(Path(path).iterdir()):
        key = p.name + ("/" if p.is_dir() else "")
        if p.name in (TENSORS, META) or p.name.startswith("."):
            continue
        others[key] = KNOWN_EXTRAS.get(key, "not part of the item-feature folder: the recommenders do not read it")
    if others:
        out["files_not_read"] = others
    return out
