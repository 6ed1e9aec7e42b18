"""Lightning training: exact resume, early stopping, pickle-free checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmrank.errors import DataError
from mmrank.models.cotrr import CoTRR
from mmrank.train.checkpoint_io import load_state, save_state
from mmrank.train.fit import fit_ranker
from rerank_support import known_function_set

SMALL = dict(d_model=16, n_heads=2, n_layers=1, mlp_hidden=16, dropout=0.2)
BASE = {"progress": False, "threads": 1, "deterministic": True, "patience": 10, "batch_queries": 4}


@pytest.fixture(scope="module")
def data():
    return known_function_set(16, per_query=8, seed=1), known_function_set(6, per_query=8, seed=2)


def test_resume_continues_exactly(tmp_path, data):
    train, valid = data
    straight = CoTRR(**SMALL)
    fit_ranker(straight, train, valid, {**BASE, "max_epochs": 4}, log_dir=tmp_path / "a")
    first = CoTRR(**SMALL)
    fit_ranker(first, train, valid, {**BASE, "max_epochs": 2}, log_dir=tmp_path / "b")
    resumed = CoTRR(**SMALL)
    fit_ranker(resumed, train, valid, {**BASE, "max_epochs": 4}, log_dir=tmp_path / "b", resume=True)
    assert [h["val_ndcg@10"] for h in resumed.history_] == [h["val_ndcg@10"] for h in straight.history_]
    assert len(resumed.history_) == 4
    assert np.array_equal(resumed.score(valid), straight.score(valid))
    assert (tmp_path / "b" / "csv" / "resume-0" / "metrics.csv").is_file()


def test_resume_without_checkpoint_is_a_data_error(tmp_path, data):
    with pytest.raises(DataError, match="nothing to resume"):
        fit_ranker(CoTRR(**SMALL), *data, {**BASE, "max_epochs": 1}, log_dir=tmp_path, resume=True)


def test_early_stopping_on_a_flat_validation_curve(tmp_path, data):
    model = CoTRR(**SMALL)
    # lr 0: validation nDCG never improves, so training stops after `patience` epochs without gain.
    fit_ranker(model, *data, {**BASE, "lr": 1e-12, "max_epochs": 20, "patience": 2}, log_dir=tmp_path)
    assert len(model.history_) == 3


def test_checkpoints_are_safetensors_not_pickle(tmp_path, data):
    fit_ranker(CoTRR(**SMALL), *data, {**BASE, "max_epochs": 1}, log_dir=tmp_path)
    raw = (tmp_path / "checkpoints" / "last.ckpt").read_bytes()
    assert raw[:1] != b"\x80" and b"mmrank_checkpoint_tree" in raw[:100000]
    state = load_state(tmp_path / "checkpoints" / "last.ckpt")
    assert state["epoch"] == 0 and any(k.startswith("net.") for k in state["state_dict"])


def test_state_codec_round_trips_awkward_values(tmp_path):
    value = {"t": torch.arange(3.0), "a": np.array([1, 2], dtype=np.uint32), 3: ("x", 2.5, None),
             "nested": [{"inf": math.inf}, (True, [1, 2])]}
    save_state(value, tmp_path / "s.ckpt")
    back = load_state(tmp_path / "s.ckpt")
    assert torch.equal(back["t"], value["t"]) and np.array_equal(back["a"], value["a"])
    assert back[3] == ("x", 2.5, None) and back["nested"] == [{"inf": math.inf}, (True, [1, 2])]
    with pytest.raises(TypeError, match="pickle"):
        save_state({"f": object()}, tmp_path / "bad.ckpt")
    (tmp_path / "x.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not an mmrank training checkpoint"):
        load_state(tmp_path / "x.ckpt")
