"""Item sequences for sequential recommendation: dense ids, per-user histories, batches.

Item ids become dense integers ``1..n`` with ``0`` reserved for padding; user ids become
``0..u-1``. Both vocabularies are built from the *training* data (plus, for items, an optional
catalogue such as the ``.item`` file, so that items nobody interacted with in training can
still be ranked — from content alone — instead of being silently absent). Any other id met
later raises ``UnknownIdError`` naming the id and the file it came from: the seeds indexed an
embedding table with such ids and died with a bare ``IndexError``.

Histories are stored CSR-style (``indptr (U+1,)``, ``items (n,)``) in time order; padded
``(B, L)`` views are made per batch and never stored. Held-out targets are CSR too (``Targets``):
leave-one-out gives each user at most one per stage, a data set's own split (MMRec's
``x_label``) or target files may give several.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from mmrank.data.model import Interactions, hash_ids
from mmrank.errors import UnknownIdError

PAD = 0


@dataclass
class IdVocab:
    """Raw string ids <-> dense integers. ``offset`` is the first dense id (1 for items, 0 for users)."""

    ids: np.ndarray  # (n,) raw ids in dense order
    offset: int
    kind: str  # "item" or "user", for error messages

    def __post_init__(self) -> None:
        self.ids = np.asarray([str(i) for i in self.ids], dtype=object)
        self._index = {raw: k + self.offset for k, raw in enumerate(self.ids)}
        if len(self._index) != len(self.ids):
            raise ValueError(f"duplicate {self.kind} ids in vocabulary")

    @classmethod
    def build(cls, raw_ids: Iterable, kind: str, offset: int) -> "IdVocab":
        """Vocabulary in order of first appearance (stable, so dense ids do not depend on sorting)."""
        seen: dict[str, None] = {}
        for r in raw_ids:
            seen.setdefault(str(r), None)
        return cls(np.array(list(seen), dtype=object), offset, kind)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw) -> bool:
        return str(raw) in self._index

    def encode(self, raw_ids: Iterable, source: str = "<input>") -> np.ndarray:
        """Dense ids of ``raw_ids``; the first unknown one raises ``UnknownIdError``."""
        out = []
        for r in raw_ids:
            k = self._index.get(str(r))
            if k is None:
                raise UnknownIdError(
                    f"unknown {self.kind} id {str(r)!r}: not in the training data",
                    path=source,
                    hint=("evaluate only items seen in training, or add the item to the catalogue "
                          "(.item file) and retrain") if self.kind == "item" else
                    "use a user id that has training interactions, or retrain with this user's events",
                )
            out.append(k)
        return np.asarray(out, dtype=np.int64)

    def decode(self, dense: Iterable[int]) -> np.ndarray:
        """Raw ids of dense indices (the inverse of ``encode``)."""
        return self.ids[np.asarray(list(dense), dtype=np.int64) - self.offset]

    def fingerprint(self) -> str:
        """A hash of the ids in order: two vocabularies with one fingerprint encode alike."""
        return hash_ids(self.ids)


@dataclass
class Histories:
    """Per-user item sequences in time order, CSR: user ``u`` owns ``items[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray  # (U+1,) int64
    items: np.ndarray  # (n,) int64 dense item ids (>= 1)
    times: np.ndarray | None = None  # (n,) timestamps of the events, when known

    @property
    def n_users(self) -> int:
        """Number of users (rows of the CSR)."""
        return len(self.indptr) - 1

    def of(self, user: int) -> np.ndarray:
        """Dense item ids of one user's history, oldest first (a view, not a copy)."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def lengths(self) -> np.ndarray:
        """History length of every user, ``(n_users,)`` int."""
        return np.diff(self.indptr)

    def append(self, extra: np.ndarray) -> "Histories":
        """Histories with one more item per user (``extra[u]``; 0 = nothing to add)."""
        return self.extend(Targets.from_single(extra))

    def extend(self, extra: "Targets") -> "Histories":
        """Histories with each user's ``extra`` items appended after its own, in their order."""
        if extra.n_users != self.n_users:
            raise ValueError(f"{extra.n_users} users of extra items for {self.n_users} histories")
        own, more = self.lengths(), extra.counts()
        indptr = np.concatenate([[0], np.cumsum(own + more)]).astype(np.int64)
        items = np.empty(indptr[-1], dtype=np.int64)
        # positions of the old items and of the appended ones inside the new CSR
        old_pos = np.repeat(indptr[:-1] - self.indptr[:-1], own) + np.arange(len(self.items))
        new_pos = np.repeat(indptr[:-1] + own - extra.indptr[:-1], more) + np.arange(len(extra.items))
        items[old_pos] = self.items
        items[new_pos] = extra.items
        return Histories(indptr, items)


@dataclass
class Targets:
    """Held-out items per user, CSR: user ``u``'s targets are ``items[indptr[u]:indptr[u+1]]``
    (dense item ids >= 1, in event order; empty for a user without targets in this stage)."""

    indptr: np.ndarray  # (U+1,) int64
    items: np.ndarray  # (m,) int64

    @classmethod
    def from_single(cls, targets: np.ndarray) -> "Targets":
        """One target per user from a ``(U,)`` array (0 = no target)."""
        targets = np.asarray(targets, dtype=np.int64)
        has = targets > 0
        return cls(np.concatenate([[0], np.cumsum(has)]).astype(np.int64), targets[has])

    @classmethod
    def from_pairs(cls, users: np.ndarray, items: np.ndarray, n_users: int) -> "Targets":
        """Targets from parallel (dense user, dense item) arrays, kept in input order per user."""
        users = np.asarray(users, dtype=np.int64)
        order = np.argsort(users, kind="stable")
        counts = np.bincount(users, minlength=n_users)
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), np.asarray(items, dtype=np.int64)[order])

    @property
    def n_users(self) -> int:
        """Number of users (rows of the CSR)."""
        return len(self.indptr) - 1

    def counts(self) -> np.ndarray:
        """Number of targets of every user, ``(n_users,)``."""
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        """Dense target items of one user (a view)."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def first(self) -> np.ndarray:
        """``(n_users,)`` each user's first target, 0 for a user without one."""
        out = np.zeros(self.n_users, dtype=np.int64)
        has = self.counts() > 0
        out[has] = self.items[self.indptr[:-1][has]]
        return out

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """One row per target: ``(dense user, dense item)`` arrays, users ascending."""
        return np.repeat(np.arange(self.n_users), self.counts()), self.items


def build_histories(
    interactions: Interactions, users: IdVocab, items: IdVocab, source: str = "<input>"
) -> Histories:
    """Histories of every user in ``users`` (users absent from ``interactions`` get none).

    Order within a user: timestamp, then input row (stable), the order RecBole's TO split uses.
    ``times`` are kept only when they are real times (``interactions.order == "time"``), so that
    nothing reads row numbers or positions as time (``most_recent`` then refuses the data)."""
    u = users.encode(interactions.user_ids, source)
    i = items.encode(interactions.item_ids, source)
    order = np.lexsort((np.arange(len(u)), interactions.timestamps, u))
    counts = np.bincount(u, minlength=len(users))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Histories(indptr, i[order], interactions.timestamps[order] if interactions.timed else None)


def pad_left(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """``(B, max_len)`` int64, each sequence's last ``max_len`` items right-aligned, 0 = padding.

    Right alignment puts every user's most recent item in the last column, so the state that
    predicts the next item is always ``h[:, -1]``."""
    out = np.zeros((len(seqs), max_len), dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[-max_len:]
        if len(s):
            out[r, max_len - len(s) :] = s
    return out


def training_batch(histories: Histories, users: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets for every position of each user's sequence at once.

    ``inputs[b, t]`` predicts ``targets[b, t]``; both ``(B, max_len)``, 0 where padded. One
    sequence per user per batch (SASRec's training scheme), not one sample per prefix."""
    inputs = pad_left([histories.of(u)[:-1] for u in users], max_len)
    targets = pad_left([histories.of(u)[1:] for u in users], max_len)
    return inputs, targets


@dataclass
class SequenceSplit:
    """Training histories plus the held-out targets of each user, per stage.

    ``valid_targets`` / ``test_targets`` hold each user's targets (``Targets``, CSR: none, one
    for leave-one-out, possibly several for a data set's own split); the constructor also takes
    ``(U,)`` arrays (0 = none). For validation the model reads ``train``; for test it reads
    ``train`` plus the user's validation targets."""

    users: IdVocab
    items: IdVocab
    train: Histories
    valid_targets: Targets
    test_targets: Targets
    cold_items: np.ndarray  # (n_items+1,) bool: True for catalogue items with no training interaction
    # Events the model never reads but that count as seen in evaluation (masked like the history):
    # the cold-start split's held-out training events (mmrank.sequential.coldstart). None: no such events.
    seen_extra: Histories | None = None

    def __post_init__(self) -> None:
        for name in ("valid_targets", "test_targets"):
            value = getattr(self, name)
            if not isinstance(value, Targets):
                setattr(self, name, Targets.from_single(value))

    @property
    def n_items(self) -> int:
        """Number of catalogue items (dense item ids run 1..n_items; 0 is padding)."""
        return len(self.items)

    @property
    def valid_target(self) -> np.ndarray:
        """``(U,)`` each user's (first) validation target, 0 for none."""
        return self.valid_targets.first()

    @property
    def test_target(self) -> np.ndarray:
        """``(U,)`` each user's (first) test target, 0 for none."""
        return self.test_targets.first()

    def history_for(self, stage: str) -> Histories:
        """The histories a model may read when predicting ``stage``'s targets: training events
        for ``valid``; training events plus each user's valid targets for ``test``.
        """
        if stage == "valid":
            return self.train
        if stage == "test":
            return self.train.extend(self.valid_targets)
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def full_history(self) -> Histories:
        """Everything each user has seen: training events, then valid, then test targets."""
        return self.history_for("test").extend(self.test_targets)

    def targets_for(self, stage: str) -> Targets:
        """Every target of ``stage`` (``valid`` or ``test``), CSR per user."""
        if stage not in ("valid", "test"):
            raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")
        return self.valid_targets if stage == "valid" else self.test_targets

    def target_for(self, stage: str) -> np.ndarray:
        """Dense (first) target item per user for ``stage``; 0 where a user has none."""
        return self.targets_for(stage).first()


def make_split(
    interactions: Interactions,
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    test_rows: np.ndarray,
    catalogue: Iterable | None = None,
    source: str = "<input>",
) -> SequenceSplit:
    """Vocabularies from the training rows (+ catalogue items), histories and held-out targets.

    A validation or test row whose user or item the vocabularies do not know raises
    ``UnknownIdError`` naming ``source``. A user may have several rows in one part: they are all
    targets of that stage, in (timestamp, row) order."""
    train = interactions.take(np.asarray(train_rows, dtype=np.int64)).sorted()
    users = IdVocab.build(train.user_ids, "user", offset=0)
    trained_items = IdVocab.build(train.item_ids, "item", offset=1)
    all_items = list(trained_items.ids) + ([str(c) for c in catalogue] if catalogue is not None else [])
    items = IdVocab.build(all_items, "item", offset=1)
    histories = build_histories(train, users, items, source)
    cold = np.zeros(len(items) + 1, dtype=bool)
    cold[len(trained_items) + 1 :] = True  # catalogue-only items come after the trained ones

    def targets(rows: np.ndarray) -> Targets:
        part = interactions.take(np.asarray(rows, dtype=np.int64))
        order = np.lexsort((np.arange(len(part)), part.timestamps))
        part = part.take(order)
        return Targets.from_pairs(users.encode(part.user_ids, source), items.encode(part.item_ids, source), len(users))

    return SequenceSplit(users, items, histories, targets(valid_rows), targets(test_rows), cold)
