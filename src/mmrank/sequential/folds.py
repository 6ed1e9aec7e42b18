"""User folds for k-fold evaluation of sequential recommenders (``data.folds: {k, fold, seed}``).

Leave-one-out in time per user as always (last event → test, second last → valid). The users that
have valid/test targets are dealt into ``k`` folds by a seeded permutation (fold sizes differ by at
most one). In fold ``f`` only the users of fold ``f`` are evaluated; every other user's valid and
test events join the training events, so each fold trains on everything but its own users' last
two events. Over the ``k`` folds every user is evaluated exactly once, by a model that never
trained on that user's held-out events — per-user metrics of all folds can be pooled and paired.

``evaluation_split(seq, data_cfg)`` applies the config's choice: plain leave-one-out, the
cold-start split (``mmrank.sequential.coldstart``) or a user fold.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmrank.data.model import hash_ids
from mmrank.data.splits import leave_one_out
from mmrank.errors import ConfigError
from mmrank.sequential.data import make_split


def fold_of_users(user_ids, k: int, seed: int) -> dict[str, int]:
    """Raw user id -> fold in ``0..k-1``: a seeded permutation of the distinct ids (sorted first, so
    the assignment does not depend on row order) dealt round-robin."""
    users = np.array(sorted({str(u) for u in user_ids}), dtype=object)
    order = np.random.default_rng(seed).permutation(len(users))
    return {str(users[j]): int(r % k) for r, j in enumerate(order)}


def user_fold_data(seq, k: int, fold: int, seed: int = 0):
    """A ``SequenceData`` whose evaluated users are fold ``fold`` of ``k`` (module docstring)."""
    if k < 2 or not 0 <= fold < k:
        raise ConfigError(f"data.folds: k={k}, fold={fold} — need k >= 2 and 0 <= fold < k")
    inter = seq.interactions
    loo = leave_one_out(inter)
    users = np.asarray(inter.user_ids).astype(str)
    held = np.concatenate([loo.parts["valid"], loo.parts["test"]])
    folds = fold_of_users(users[held], k, seed)
    in_fold = np.array([folds.get(u, -1) == fold for u in users], dtype=bool)
    valid = loo.parts["valid"][in_fold[loo.parts["valid"]]]
    test = loo.parts["test"][in_fold[loo.parts["test"]]]
    train = np.sort(np.concatenate([loo.parts["train"], held[~in_fold[held]]]))
    # Every evaluated item is ranked, even one no training event of this fold holds (a cold target).
    catalogue = list(seq.catalogue.item_ids if seq.catalogue is not None else [])
    catalogue += [str(i) for i in np.asarray(inter.item_ids)[np.concatenate([valid, test])]]
    split = make_split(inter, train, valid, test, catalogue=catalogue, source=seq.inter_path)
    fp = {name: hash_ids(rows) for name, rows in (("train", train), ("valid", valid), ("test", test))}
    fp["combined"] = hash_ids([f"data:{seq.data_fingerprint}", f"k:{k}", f"fold:{fold}", f"seed:{seed}"]
                              + [f"{n}:{h}" for n, h in fp.items()])
    parts = {"train": inter.take(train), "valid": inter.take(valid), "test": inter.take(test)}
    protocol = dataclasses.replace(
        seq.protocol, name="user_folds", params={**seq.protocol.params, "k": k, "fold": fold, "seed": seed},
        description=f"{seq.protocol.description}; user fold {fold} of {k} (seed {seed}) evaluated, the other "
                    "users' valid/test events train")
    return dataclasses.replace(seq, split=split, parts=parts, protocol=protocol,
                               split_fingerprint={"method": "user_folds", "k": k, "fold": fold, "seed": seed, **fp})


def evaluation_split(seq, data_cfg):
    """``seq`` re-split as ``data_cfg`` (a config's ``data`` section) asks: ``cold_start`` → the
    cold-start split, ``folds`` → one user fold, neither → leave-one-out as loaded."""
    from mmrank.sequential.coldstart import cold_start_data

    cold, folds = getattr(data_cfg, "cold_start", None), getattr(data_cfg, "folds", None)
    if cold is not None and folds is not None:
        raise ConfigError("data.cold_start and data.folds: choose one evaluation split")
    name = "data.cold_start" if cold is not None else "data.folds"
    if (cold is not None or folds is not None) and seq.protocol.name != "leave_one_out":
        # both re-split the events by leave-one-out in time; on another protocol they would
        # silently replace the split the config asked for
        raise ConfigError(f"{name}: built on the leave_one_out split, and data.split resolved to "
                          f"{seq.protocol.name} — set data.split: leave_one_out (needs timestamps or a sequence "
                          f"order), or drop {name}")
    if cold is not None:
        return cold_start_data(seq, cold.fraction, cold.seed)
    if folds is not None:
        return user_fold_data(seq, folds.k, folds.fold, folds.seed)
    return seq


__all__ = ["evaluation_split", "fold_of_users", "user_fold_data"]
