"""A sequential data set as the recommenders read it: events in any interaction format (plus
optional target files), split by a protocol (``mmrank.sequential.protocols``: leave-one-out in
time or sequence order, the data's own split, explicit target files, random), the item catalogue,
fingerprints; item modality matrices aligned with the split's dense ids; and a split re-encoded
into a trained model's own ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrank.data.formats import load_interaction_data
from mmrank.data.interaction_data import InteractionData, id_codes
from mmrank.data.item_feature_folder import load_item_features
from mmrank.data.model import ORDERS, TIME, Interactions, ItemFeatures
from mmrank.data.splits import InteractionSplit
from mmrank.errors import ConfigError, DataError
from mmrank.sequential.config import SequentialData
from mmrank.sequential.data import SequenceSplit, Targets, make_split
from mmrank.sequential.protocols import SplitInput, SplitProtocol, split_events


@dataclass
class SequenceData:
    """Everything a sequential run reads: the split, the catalogue (titles), the split's
    protocol and fingerprint, the events (all of them, and per part) and where they came from."""

    split: SequenceSplit
    catalogue: ItemFeatures | None
    split_fingerprint: dict
    data_fingerprint: str
    inter_path: str
    interactions: Interactions
    parts: dict[str, Interactions]
    protocol: SplitProtocol
    notices: list[str]
    files_not_read: dict[str, str]

    @property
    def loo_fingerprint(self) -> dict:
        """The split's fingerprint (the name predates the other protocols)."""
        return self.split_fingerprint

    def events(self, part: str) -> Interactions:
        """The events of one part of the split (``train``, ``valid``, ``test``)."""
        return self.parts[part]


def _read(path: str, fmt: str | None, options: dict) -> InteractionData:
    data = load_interaction_data(path, fmt, strict=False, **options)
    if data.report.problems:
        first = data.report.problems[0].format()
        raise DataError(f"{len(data.report.problems)} bad record(s) in the dataset, first: {first}",
                        path=data.report.path, hint="run `mmrank data validate` and fix or drop them")
    return data


def concat_events(parts: list[Interactions]) -> Interactions:
    """The events of several files, one after another. Real times stay; without times in every
    part the result has the weakest order of the parts (sequence, else row), each part's
    positions shifted after the previous part's, so a later file's events come later."""
    order = TIME if all(p.order == TIME for p in parts) else max((p.order for p in parts), key=ORDERS.index)
    times, shift = [], 0.0
    for p in parts:
        t = p.timestamps if order == TIME else p.timestamps - (p.timestamps.min() if len(p) else 0) + shift
        shift = (t.max() + 1) if len(p) else shift
        times.append(t)
    rated = all(p.ratings is not None for p in parts)
    return Interactions(np.concatenate([p.user_ids for p in parts]), np.concatenate([p.item_ids for p in parts]),
                        np.concatenate(times), np.concatenate([p.ratings for p in parts]) if rated else None, order)


def _split_input(cfg: SequentialData, main: InteractionData) -> SplitInput:
    """The events and given labels a protocol chooses from (target files appended to the data's)."""
    if cfg.test_targets is None:
        given_by = None if main.split_labels is None else "own split"
        return SplitInput(main.interactions, main.split_labels, cfg.split_seed, main.path, given_by)
    if main.split_labels is not None:
        raise ConfigError(f"data.path {main.path} has its own split (x_label) and data.test_targets is set — "
                          "use one: drop the target files (data.split: given) or the split column")
    files = [cfg.valid_targets, cfg.test_targets] if cfg.valid_targets else [cfg.test_targets]
    extra = [_read(f, cfg.targets_format, {}).interactions for f in files]
    labels = [np.zeros(len(main.interactions), dtype=np.int64)]
    labels += [np.full(len(e), part, dtype=np.int64) for e, part in zip(extra, [1, 2] if cfg.valid_targets else [2])]
    return SplitInput(concat_events([main.interactions, *extra]), np.concatenate(labels), cfg.split_seed,
                      main.path, "target files")


def load_sequence_data(data: SequentialData | str | Path, path: str | Path | None = None) -> SequenceData:
    """Read, split and encode a sequential data set.

    Args:
        data: the config's ``data`` section (or just a path: every other key at its default).
        path: read this data instead of ``data.path`` (same format options and split rule).

    Returns:
        The ``SequenceData``; ``notices`` hold what the user should be told (e.g. a random split
        chosen because the data has no timestamps, evaluation events left out).

    Raises:
        DataError: a bad record in the data, or nothing to evaluate.
        ConfigError: a split the data cannot support (leave-one-out without any order, ``given``
            without a split column).
    """
    cfg = data if isinstance(data, SequentialData) else SequentialData(path=str(data))
    if path is not None:
        cfg = cfg.model_copy(update={"path": str(path)})
    main = _read(cfg.path, cfg.format, cfg.format_options)
    inp = _split_input(cfg, main)
    labels, protocol, notice = split_events(cfg.split, inp)
    events = inp.events
    notices = [notice] if notice else []
    labels, dropped = _drop_users_without_training(events, labels)
    if any(dropped.values()):
        protocol.params["left_out_without_training_events"] = dropped
        notices.append(f"left out {dropped['valid']} valid and {dropped['test']} test events of users with no "
                       "training event (a sequential model needs a history)")
    repeated = _held_out_pairs_in_training(events, labels)
    if repeated:
        protocol.params["held_out_pairs_also_in_training"] = repeated
        notices.append(f"{repeated} held-out (user, item) pairs also occur among the training events: repeat "
                       "consumption, or a leak when the held-out events were left in the training data "
                       "(target files: data.path must hold the training events only)")
    if not (labels == 2).any():
        raise DataError(f"the {protocol.name} split leaves no test event", path=main.path,
                        hint="users need at least 3 events (leave-one-out), or give test events")
    # Every item the data knows is in the catalogue (its item file, then every event's item), so a
    # held-out item nobody trained on is still ranked (as a cold item) instead of breaking the run.
    known = [] if main.items is None else [str(i) for i in main.items.item_ids]
    catalogue_ids = list(dict.fromkeys(known + events.item_ids.tolist()))
    parts_rows = {name: np.flatnonzero(labels == k) for k, name in enumerate(("train", "valid", "test"))}
    split = make_split(events, parts_rows["train"], parts_rows["valid"], parts_rows["test"],
                       catalogue=catalogue_ids, source=main.path)
    data_fp = events.fingerprint()
    fingerprint = InteractionSplit(protocol.name, parts_rows, dict(protocol.params), data_fp).fingerprint
    parts = {name: events.take(rows) for name, rows in parts_rows.items()}
    return SequenceData(split, main.items, fingerprint, data_fp, main.path, events, parts, protocol, notices,
                        dict(main.files_not_read))


def _drop_users_without_training(events: Interactions, labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Labels with the evaluation events of users who have no training event set to -1 (left
    out), and how many per stage."""
    codes, uniques = id_codes(events.user_ids)
    trained = np.zeros(len(uniques), dtype=bool)
    trained[codes[labels == 0]] = True
    orphan = (labels > 0) & ~trained[codes]
    counts = {"valid": int((orphan & (labels == 1)).sum()), "test": int((orphan & (labels == 2)).sum())}
    out = labels.copy()
    out[orphan] = -1
    return out, counts


def _held_out_pairs_in_training(events: Interactions, labels: np.ndarray) -> int:
    """How many valid/test events repeat a (user, item) pair of the training events."""
    users, _ = id_codes(events.user_ids)
    items, item_ids = id_codes(events.item_ids)
    pairs = users * max(len(item_ids), 1) + items
    return int(np.isin(pairs[labels > 0], pairs[labels == 0]).sum())


def aligned_item_features(folder: str | Path, split: SequenceSplit, modalities: list[str] | None
                          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Item modality matrices ``(n_items+1, d)`` in dense-id order (row 0 = padding, masked).

    An item of the split without a feature row gets a zero, masked row (content tower skips it).
    A modality that covers none of the split's items is a ConfigError: the ids of the folder and
    of the data do not match (e.g. MMRec row numbers against raw ids), and the model would
    silently train on nothing."""
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
        if not mask.any():
            raise ConfigError(f"data.item_features: modality {m!r} of {folder} has a value for none of the data's "
                              f"{split.n_items} items (data ids look like {list(split.items.ids[:3])}, the folder's like "
                              f"{list(items.item_ids[:3])}) — build the folder with the data's item ids "
                              "(`mmrank data item-features --ids FILE`)")
        feats[m], masks[m] = mat, mask
    return feats, masks


def split_for(ranker, seq: SequenceData) -> SequenceSplit:
    """The data's split in the ranker's own dense ids (re-encoded through its vocabularies when
    the data's differ; an id the model never saw raises ``UnknownIdError``)."""
    split = seq.split
    if list(split.items.ids) != list(ranker.items_.ids) or list(split.users.ids) != list(ranker.users_.ids):
        split = _reencode(seq, ranker)
    return split


def _reencode(seq: SequenceData, ranker) -> SequenceSplit:
    from mmrank.sequential.data import Histories

    s = seq.split
    src = seq.inter_path
    uidx = ranker.users_.encode(s.users.ids, src)
    items = ranker.items_.encode(s.items.ids, src)  # dense item d of the data -> items[d - 1] in the model
    lookup = np.concatenate([[0], items])
    # the model's users in its own order; a user the data lacks gets an empty history
    lens = np.zeros(len(ranker.users_), dtype=np.int64)
    lens[uidx] = s.train.lengths()
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    hist = np.empty(indptr[-1], dtype=np.int64)
    for u_data, u_model in enumerate(uidx):
        hist[indptr[u_model]:indptr[u_model + 1]] = lookup[s.train.of(u_data)]

    def remap(t: Targets) -> Targets:
        users, its = t.rows()
        return Targets.from_pairs(uidx[users], lookup[its], len(ranker.users_))

    return SequenceSplit(ranker.users_, ranker.items_, Histories(indptr, hist), remap(s.valid_targets),
                         remap(s.test_targets), ranker.cold_items_)
