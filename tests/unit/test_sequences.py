"""Dense item ids (0 = padding) from training data, clear errors for unknown ids, batching."""

from __future__ import annotations

import numpy as np
import pytest

from mmrank.data.model import Interactions
from mmrank.sequential.data import IdVocab, Histories, make_split, pad_left, training_batch
from mmrank.data.splits import leave_one_out
from mmrank.errors import UnknownIdError


def tiny() -> Interactions:
    # user a: x(1) y(2) z(3) w(4); user b: y(1) x(2) v(3); rows deliberately out of time order
    return Interactions(["a", "b", "a", "a", "b", "a", "b"],
                        ["y", "y", "x", "z", "x", "w", "v"],
                        [2, 1, 1, 3, 2, 4, 3])


def split_of(inter, catalogue=None):
    loo = leave_one_out(inter)
    return make_split(inter, loo.parts["train"], loo.parts["valid"], loo.parts["test"],
                      catalogue=catalogue, source="tiny.inter")


def test_dense_ids_start_at_one_and_follow_training_data():
    s = split_of(tiny(), catalogue=["v", "w", "z", "x", "y"])
    # Trained items first (a's x, y; b's y), then the catalogue's other items in its order.
    assert list(s.items.ids) == ["x", "y", "v", "w", "z"]
    assert list(s.users.ids) == ["a", "b"]
    assert s.items.encode(["x", "y"]).tolist() == [1, 2]
    assert s.train.of(0).tolist() == [1, 2] and s.train.of(1).tolist() == [2]


def test_unknown_item_in_evaluation_data_names_id_and_file():
    with pytest.raises(UnknownIdError) as e:
        split_of(tiny())  # a's valid item z and test item w never occur in training
        raise AssertionError("unreachable")
    msg = str(e.value)
    assert "tiny.inter" in msg and ("'z'" in msg or "'x'" in msg or "'w'" in msg or "'v'" in msg)


def test_catalogue_items_are_known_and_marked_cold():
    s = split_of(tiny(), catalogue=["x", "y", "z", "w", "v"])
    assert len(s.items) == 5
    assert s.cold_items.tolist() == [False, False, False, True, True, True]
    # valid: a -> z, b -> x; test: a -> w, b -> v
    assert s.items.decode(s.valid_target).tolist() == ["z", "x"]
    assert s.items.decode(s.test_target).tolist() == ["w", "v"]
    test_hist = s.history_for("test")
    assert s.items.decode(test_hist.of(0)).tolist() == ["x", "y", "z"]


def test_unknown_id_error_message_is_actionable():
    vocab = IdVocab.build(["i1", "i2"], "item", offset=1)
    with pytest.raises(UnknownIdError, match=r"eval\.inter: unknown item id 'i9'.*retrain"):
        vocab.encode(["i1", "i9"], "eval.inter")


def test_pad_left_right_aligns_and_cuts_to_the_most_recent():
    out = pad_left([np.array([1, 2, 3]), np.array([4]), np.array([], dtype=np.int64)], 2)
    assert out.tolist() == [[2, 3], [0, 4], [0, 0]]


def test_training_batch_pairs_every_position_with_its_next_item():
    h = Histories(np.array([0, 4, 6]), np.array([5, 6, 7, 8, 9, 10]))
    inputs, targets = training_batch(h, np.array([0, 1]), 4)
    assert inputs.tolist() == [[0, 5, 6, 7], [0, 0, 0, 9]]
    assert targets.tolist() == [[0, 6, 7, 8], [0, 0, 0, 10]]


def _write_recbole(folder, rows, items):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                      + "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows))
    (folder / "toy.item").write_text("item_id:token\tmovie_title:token_seq\n"
                                     + "".join(f"{i}\tTitle {i}\n" for i in items))


def test_evaluating_a_run_on_data_with_an_unknown_item_names_it_and_the_file(tmp_path):
    from mmrank.config import config_from_dict
    from mmrank.sequential.run import evaluate_sequential, train_sequential

    rows = [(u, i, t) for u in ("a", "b", "c") for t, i in enumerate(["1", "2", "3", "4"])]
    _write_recbole(tmp_path / "d1", rows, ["1", "2", "3", "4"])
    cfg = config_from_dict({"task": "sequential", "data": {"path": str(tmp_path / "d1")},
                            "model": {"kind": "popularity"}, "evaluate": {"sampled_negatives": 0}})
    metrics = train_sequential(cfg, tmp_path / "run")
    assert metrics["test"]["users"] == 3
    assert evaluate_sequential(tmp_path / "run")["test"]["ndcg@10"] == metrics["test"]["ndcg@10"]
    # Same users, but user c's last event is an item the run has never seen.
    _write_recbole(tmp_path / "d2", rows[:-1] + [("c", "99", 3)], ["1", "2", "3", "4", "99"])
    with pytest.raises(UnknownIdError, match=r"toy\.inter: unknown item id '99'"):
        evaluate_sequential(tmp_path / "run", tmp_path / "d2")
