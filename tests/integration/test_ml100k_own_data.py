"""Known answers on real data (ML-100K): the same split reached through other formats and
protocols gives the same held-out items and the same metrics, and the raw MovieLens files read
like RecBole's."""

from __future__ import annotations

import numpy as np
import pytest

from mmrank.config import config_from_dict
from mmrank.data.formats import load_interaction_data, write_interactions
from mmrank.data.interaction_data import InteractionData
from mmrank.data.model import Interactions
from mmrank.sequential.dataset import load_sequence_data
from mmrank.sequential.run import train_sequential


def _popularity(path, **data):
    return config_from_dict({"task": "sequential", "data": {"path": str(path), **data}, "model": {"kind": "popularity"},
                             "train": {"progress": False}, "evaluate": {"sampled_negatives": 0}})


def _targets(seq) -> dict[str, str]:
    s = seq.split
    return {s.users.ids[u]: s.items.ids[t - 1] for u, t in enumerate(s.test_target) if t}


def test_sasrec_text_of_ml100k_holds_out_what_leave_one_out_in_time_holds_out(data_dir, tmp_path):
    """Written as SASRec text (each user's events in time order, times dropped), ML-100K's
    leave-one-out in sequence order picks exactly the test and valid items leave-one-out in time does."""
    timed = load_sequence_data(_popularity(data_dir / "ml-100k").data)
    write_interactions(load_interaction_data(data_dir / "ml-100k"), tmp_path / "ml100k.txt", "sasrec")
    seq = load_sequence_data(_popularity(tmp_path / "ml100k.txt").data)
    assert seq.protocol.name == "leave_one_out" and "sequence order" in seq.protocol.description
    assert len(_targets(timed)) == 943 and _targets(seq) == _targets(timed)


def test_ml100k_as_mmrec_without_time_and_as_target_files_reproduce_the_split_and_metrics(data_dir, tmp_path):
    """The leave-one-out split of ML-100K written (1) as an MMRec folder whose x_label is that
    split and which has no timestamps, (2) as a training file plus valid/test target files: both
    train on the very same parts, and popularity scores the same numbers as on the original."""
    data = load_interaction_data(data_dir / "ml-100k")
    timed = load_sequence_data(_popularity(data_dir / "ml-100k").data)
    labels = np.zeros(len(data.interactions), dtype=np.int64)
    hashes = {(u, i, t): k for k, (u, i, t) in enumerate(zip(data.interactions.user_ids, data.interactions.item_ids,
                                                                data.interactions.timestamps))}
    for stage, code in (("valid", 1), ("test", 2)):
        part = timed.parts[stage]
        labels[[hashes[key] for key in zip(part.user_ids, part.item_ids, part.timestamps)]] = code
    untimed = Interactions(data.interactions.user_ids, data.interactions.item_ids,
                           np.arange(len(labels), dtype=np.float64), data.interactions.ratings, order="row")
    write_interactions(InteractionData(untimed, None, data.report, "mmrec", labels), tmp_path / "ml_mmrec", "mmrec")
    for stage, code in (("train", 0), ("valid", 1), ("test", 2)):
        write_interactions(InteractionData(untimed.take(labels == code), None, data.report, "table"),
                           tmp_path / f"{stage}.csv", "table")
    given = _popularity(tmp_path / "ml_mmrec")
    targets = _popularity(tmp_path / "train.csv", valid_targets=str(tmp_path / "valid.csv"),
                          test_targets=str(tmp_path / "test.csv"))
    original = train_sequential(_popularity(data_dir / "ml-100k"), tmp_path / "run_loo")
    for cfg, name in ((given, "given"), (targets, "targets")):
        seq = load_sequence_data(cfg.data)
        assert seq.protocol.name == name and seq.protocol.time_checks is False
        assert _targets(seq) == _targets(timed)
        metrics = train_sequential(cfg, tmp_path / f"run_{name}")
        for stage in ("valid", "test"):
            assert metrics[stage]["ndcg@10"] == original[stage]["ndcg@10"]
            assert metrics[stage]["users"] == original[stage]["users"] == 943


def test_raw_movielens_files_read_like_recbole_atomic_files(data_dir):
    raw = data_dir / "ml-100k" / "raw"
    if not (raw / "u.data").is_file():
        pytest.skip(f"{raw}/u.data not present")
    a, b = load_interaction_data(raw), load_interaction_data(data_dir / "ml-100k")
    key = lambda d: sorted(zip(d.interactions.user_ids, d.interactions.item_ids, d.interactions.timestamps))  # noqa: E731
    assert a.format == "movielens" and key(a) == key(b) and len(key(a)) == 100_000
    assert "u.user" in a.files_not_read or not (raw / "u.user").exists()
