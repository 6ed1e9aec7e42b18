"""What an interaction reader hands on: the events, the item features, the data's own split and
which files of a folder it read and which it did not (and why).

Every interaction format module (``io_recbole``, ``io_mmrec``, ``io_movielens``, ``io_sasrec``,
``io_table``) has a ``read_<format>_data(path, *, strict) -> InteractionData`` and a
``write_<format>(data, path) -> WriteResult``; ``mmrank.data.formats`` dispatches to them.
Nothing read is dropped silently: a file a reader leaves aside is listed in ``files_not_read``
with the reason, and a writer lists what its format cannot hold in ``WriteResult.dropped``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrank.data.model import ROW, Interactions, ItemFeatures
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

PART_NAMES = ("train", "valid", "test")  # split label 0, 1, 2


@dataclass
class InteractionData:
    """The events (``interactions``), optional item features and titles (``items``), the data's
    own split when the file ships one (``split_labels (n,)``: 0 train, 1 valid, 2 test, e.g.
    MMRec's ``x_label``), the read report, and the files of a folder read / left aside."""

    interactions: Interactions
    items: ItemFeatures | None
    report: ReadReport
    format: str
    split_labels: np.ndarray | None = None
    files_read: list[str] = field(default_factory=list)
    files_not_read: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split_labels is not None:
            self.split_labels = np.asarray(self.split_labels, dtype=np.int64)
            if self.split_labels.shape != (len(self.interactions),):
                raise DataError(f"{self.split_labels.shape} split labels for {len(self.interactions)} interactions")

    @property
    def path(self) -> str:
        """The main file read (the report's path)."""
        return self.report.path

    def take(self, rows: np.ndarray) -> "InteractionData":
        """The same data restricted to ``rows`` of the events (items, report and files unchanged)."""
        return InteractionData(self.interactions.take(rows), self.items, self.report, self.format,
                               None if self.split_labels is None else self.split_labels[rows],
                               list(self.files_read), dict(self.files_not_read))


@dataclass
class WriteResult:
    """What a writer wrote (``files``) and what its format could not hold (``dropped``: one
    sentence each, e.g. "ratings: SASRec text has no rating column")."""

    files: list[Path]
    dropped: list[str] = field(default_factory=list)


def not_read_files(folder: Path, read: list[Path], reason_of) -> dict[str, str]:
    """``{file name: why it was not read}`` for every visible file in ``folder`` that is not in
    ``read``; ``reason_of(path) -> str`` says why (hidden files and quarantine files are skipped)."""
    read_set = {Path(p).resolve() for p in read}
    out: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name.endswith(".quarantine.jsonl") or p.resolve() in read_set:
            continue
        out[p.name + ("/" if p.is_dir() else "")] = reason_of(p)
    return out


def id_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes (n,), distinct ids)``: each id's number in order of first appearance (a hash
    table, so a million string ids take ~0.1 s where ``np.unique``/``np.isin`` on objects sort
    or compare for seconds)."""
    import pandas as pd

    codes, uniques = pd.factorize(np.asarray(ids, dtype=object))
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def user_order(interactions: Interactions) -> np.ndarray:
    """Row order that groups each user's events (users in order of first appearance) and puts
    them in their order (timestamp or position, then row): how sequence formats write them."""
    codes, _ = id_codes(interactions.user_ids)
    return np.lexsort((np.arange(len(interactions)), interactions.timestamps, codes))


def dropped_columns(data: InteractionData, fmt: str, *, ratings: bool, time: bool, split: bool,
                    items: bool) -> list[str]:
    """Sentences naming what ``data`` holds that a format without ratings / times / a split
    column / item features cannot keep (arguments: whether the format keeps each)."""
    out = []
    inter = data.interactions
    if not ratings and inter.ratings is not None:
        out.append(f"ratings: {fmt} has no rating column")
    if not time and inter.timed:
        out.append(f"timestamps: {fmt} keeps each user's order of events, not their times")
    if not split and data.split_labels is not None:
        out.append(f"the data's own split (x_label): {fmt} has no split column")
    if not items and data.items is not None and (data.items.features or data.items.titles is not None):
        out.append(f"item features and titles: the {fmt} output holds none")
    return out


def check_writable(columns: dict[str, np.ndarray], fmt: str, path: Path, *, whitespace: bool = False,
                   empty_ok: bool = False) -> None:
    """DataError naming the first value a text format cannot hold: an empty one (unless
    ``empty_ok``), or one with a tab or line break (``whitespace``: any whitespace, for
    space-separated formats)."""
    for what, col in columns.items():
        for v in np.unique(np.asarray(col, dtype=object).astype(str)):
            if (not v.strip() and not empty_ok) or any((c.isspace() if whitespace else c in "\t\n\r") for c in v):
                kind = "whitespace" if whitespace else "a tab or line break"
                raise DataError(f"{what} {v!r} is empty or holds {kind}: {fmt} cannot hold it", path=path,
                                hint="clean those values first, or convert to csv (which quotes them)")


def tab_separated_events(data: InteractionData, users: np.ndarray, items: np.ndarray, names: dict[str, str]) -> str:
    """The events as tab-separated text with a header: the user and item columns, then the rating,
    the time (or position, for data ordered without times) and the split column when the data has
    them. ``names`` maps ``user``, ``item``, ``rating``, ``timestamp``, ``position``, ``x_label`` to
    the format's header fields (e.g. RecBole's ``rating:float``)."""
    from mmrank.data.io_table import number_text

    inter = data.interactions
    header, cols = [names["user"], names["item"]], [users.tolist(), items.tolist()]
    if inter.ratings is not None:
        header.append(names["rating"])
        cols.append(number_text(inter.ratings))
    if inter.order != ROW:
        header.append(names["timestamp"] if inter.timed else names["position"])
        cols.append(number_text(inter.timestamps))
    if data.split_labels is not None:
        header.append(names["x_label"])
        cols.append([str(v) for v in data.split_labels.tolist()])
    return "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in zip(*cols))
