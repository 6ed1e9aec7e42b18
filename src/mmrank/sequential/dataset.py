"""A sequential data set as the recommenders read it: a RecBole folder → events, the
leave-one-out split (last event → test, second last → valid, per user, in time), the item
catalogue, fingerprints; item modality matrices aligned with the split's dense ids; and a split
re-encoded into a trained model's own ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrank.data.io_recbole import read_recbole
from mmrank.data.ml100k_items import load_item_features
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.data.splits import leave_one_out
from mmrank.errors import ConfigError, DataError
from mmrank.sequential.data import SequenceSplit, make_split


@dataclass
class SequenceData:
    """Everything a sequential run reads: the events, the split, the catalogue (titles) and the
    LOO split's fingerprint."""

    split: SequenceSplit
    catalogue: ItemFeatures | None
    loo_fingerprint: dict
    data_fingerprint: str
    inter_path: str
    interactions: Interactions
    parts: dict[str, Interactions]

    def events(self, part: str) -> Interactions:
        """The events of one part of the split (``train``, ``valid``, ``test``)."""
        return self.parts[part]


def load_sequence_data(path: str | Path) -> SequenceData:
    """RecBole folder -> leave-one-out ``SequenceSplit`` (catalogue = the ``.item`` file's items)."""
    interactions, catalogue, report = read_recbole(path, strict=False)
    if report.problems:
        first = report.problems[0].format()
        raise DataError(f"{len(report.problems)} bad record(s) in the dataset, first: {first}",
                        path=report.path, hint="run `mmrank data validate` and fix or drop them")
    loo = leave_one_out(interactions)
    split = make_split(interactions, loo.parts["train"], loo.parts["valid"], loo.parts["test"],
                       catalogue=None if catalogue is None else catalogue.item_ids, source=report.path)
    parts = {name: interactions.take(rows) for name, rows in loo.parts.items()}
    return SequenceData(split, catalogue, loo.fingerprint, interactions.fingerprint(), report.path, interactions, parts)


def aligned_item_features(folder: str | Path, split: SequenceSplit, modalities: list[str] | None
                          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Item modality matrices ``(n_items+1, d)`` in dense-id order (row 0 = padding, masked).

    An item of the split without a feature row gets a zero, masked row (content tower skips it)."""
    items, _ = load_item_features(folder)
    names = sorted(items.features) if modalities is None else list(modalities)
    missing = set(names) - set(items.features)
    if missing:
        raise ConfigError(f"data.modalities: {sorted(missing)} not in {folder} — "
                          f"available: {sorted(items.features)}")
    row = items.row_of()
    rows = np.array([row.get(str(i), -1) for i in split.items.ids])
    feats, masks = {}, {}
    for m in names:
        mat = np.zeros((split.n_items + 1, items.features[m].shape[1]), dtype=np.float32)
        mask = np.zeros(split.n_items + 1, dtype=bool)
        have = rows >= 0
        mat[1:][have] = items.features[m][rows[have]]
        mask[1:][have] = items.masks[m][rows[have]]
        feats[m], masks[m] = mat, mask
    return feats, masks


def split_for(ranker, seq: SequenceData) -> SequenceSplit:
    """The data's leave-one-out split in the ranker's own dense ids (re-encoded through its
    vocabularies when the data's differ; an id the model never saw raises ``UnknownIdError``)."""
    split = seq.split
    if list(split.items.ids) != list(ranker.items_.ids) or list(split.users.ids) != list(ranker.users_.ids):
        split = _reencode(seq, ranker)
    return split


def _reencode(seq: SequenceData, ranker) -> SequenceSplit:
    from mmrank.sequential.data import build_histories

    s = seq.split
    src = seq.inter_path
    users_raw = s.users.ids
    uidx = ranker.users_.encode(users_raw, src)
    train_pairs = [(users_raw[u], s.items.ids[i - 1]) for u in range(s.train.n_users) for i in s.train.of(u)]
    inter = Interactions([p[0] for p in train_pairs], [p[1] for p in train_pairs],
                         np.arange(len(train_pairs), dtype=np.float64))
    hist = build_histories(inter, ranker.users_, ranker.items_, src)

    def remap(targets: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ranker.users_), dtype=np.int64)
        have = targets > 0
        out[uidx[have]] = ranker.items_.encode(s.items.ids[targets[have] - 1], src)
        return out

    return SequenceSplit(ranker.users_, ranker.items_, hist, remap(s.valid_target), remap(s.test_target),
                         ranker.cold_items_)
