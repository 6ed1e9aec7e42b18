"""SASRec-style text: each line ``user item [item ...]``, whitespace-separated, no header.

This is the format the SASRec, BERT4Rec, gSASRec and S3-Rec repositories ship: either one event
per line (``<user> <item>``, each user's lines in time order) or one line per user with the whole
sequence (``<user> <item1> <item2> ...``). Both read the same way: a line's items are appended to
its user's sequence, in file order, so a user may span several lines. With the reader option
``user_ids="line"`` a line holds items only and its user is the line's 1-based number among the
non-blank lines (files that leave the user id out).

The files hold no times and no ratings: the events come out with ``order == "sequence"`` (each
user's order is the file's, ``timestamps`` are positions) and no ratings. A line whose user id
has no item after it is a bad record, as is a line that is not UTF-8.

The writer writes one line per user (``<user> <item> <item> ...``), users in order of first
appearance, each user's events in their order (time, position or row); ids holding whitespace
cannot be written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.data.formats import read_bytes
from mmrank.data.interaction_data import InteractionData, WriteResult, check_writable, dropped_columns, user_order
from mmrank.data.interaction_table import MAX_RAW_CHARS, data_lines, text_lines
from mmrank.data.model import SEQUENCE, Interactions
from mmrank.data.validate import ReadReport
from mmrank.errors import ConfigError, DataError

USER_ID_MODES = ("first", "line")


def read_sasrec_data(path: str | Path, *, strict: bool = False, user_ids: str = "first") -> InteractionData:
    """Read a SASRec-style text file (see the module docstring).

    Args:
        path: the text file.
        strict: raise on the first bad line instead of quarantining it.
        user_ids: ``"first"`` (the first token of a line is its user) or ``"line"`` (the line
            number is the user, every token an item).
    """
    if user_ids not in USER_ID_MODES:
        raise ConfigError(f"user_ids={user_ids!r} — use one of {USER_ID_MODES}")
    path = Path(path)
    report = ReadReport(str(path), strict=strict)
    users: list[str] = []
    items: list[str] = []
    n_lines = 0
    for lineno, text in data_lines(text_lines(read_bytes(path)), report):
        report.records_in += 1
        n_lines += 1
        tokens = text.split()
        user, line_items = (str(n_lines), tokens) if user_ids == "line" else (tokens[0], tokens[1:])
        if not line_items:
            report.bad(lineno, f"user {user!r} has no item on this line",
                       "write '<user> <item> [<item> ...]' (or read with user_ids=line)", text[:MAX_RAW_CHARS])
            continue
        report.records_read += 1
        users.extend([user] * len(line_items))
        items.extend(line_items)
    report.check_counts()
    if not users:
        raise DataError("no line with a user and an item", path=path, hint="write '<user> <item> [<item> ...]' per line")
    inter = Interactions(np.array(users, dtype=object), np.array(items, dtype=object),
                         np.arange(len(users), dtype=np.float64), None, order=SEQUENCE)
    return InteractionData(inter, None, report, "sasrec", files_read=[str(path)])


def write_sasrec(data: InteractionData, path: str | Path) -> WriteResult:
    """One line ``<user> <item> <item> ...`` per user (see the module docstring)."""
    path = Path(path)
    inter = data.interactions
    check_writable({"user id": inter.user_ids, "item id": inter.item_ids}, "SASRec text", path, whitespace=True)
    order = user_order(inter)
    users, items = inter.user_ids[order], inter.item_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    lines = [f"{users[s]} {' '.join(items[s:e])}\n" for s, e in zip(starts, ends)]
    atomic_write_text(path, "".join(lines))
    dropped = dropped_columns(data, "SASRec text", ratings=False, time=False, split=False, items=False)
    return WriteResult([path], dropped)
