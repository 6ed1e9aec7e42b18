"""Every registered model kind, checked against its task's contract (``mmrank.models.contracts``).

Modelled on scikit-learn's ``parametrize_with_checks`` and RecBole's ``test_model_auto.py``: one
parametrised test per (kind, check), over the registry itself, so a kind added to the registry is
checked without anyone writing a test for it, and a kind that breaks the contract (e.g. loses
``save``) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.data.model import Interactions, RankingSet
from mmrank.data.splits import leave_one_out
from mmrank.errors import MmrankError
from mmrank.models.contracts import missing_members
from mmrank.models.registry import MODELS, build_ranker, model_class
from mmrank.runs import load_model
from mmrank.sequential.data import make_split

SMALL_PARAMS = {
    "cotrr": dict(d_model=8, n_heads=2, n_layers=1, mlp_hidden=8),
    "fusion": dict(d_model=8, n_heads=2, n_layers=1, mlp_hidden=8),
    "lambdamart": dict(n_estimators=5, num_threads=1, min_data_in_leaf=2),
    "sasrec": dict(hidden=8, layers=1, heads=1, max_len=10),
    "sasrec_moe": dict(hidden=8, layers=1, heads=1, max_len=10, n_experts=2),
    "sasrec_content": dict(hidden=8, layers=1, heads=1, max_len=10, gate_init=0.5),
}
NEURAL_FIT = dict(settings={"max_epochs": 1, "progress": False, "threads": 1, "batch_queries": 4})
SEQUENTIAL_FIT = dict(epochs=1, batch_size=16, progress=False)


def ranking_set(n_queries: int, seed: int) -> RankingSet:
    rng = np.random.default_rng(seed)
    n = n_queries * 6
    return RankingSet(query_ids=[f"q{seed}_{i}" for i in range(n_queries)], offsets=np.arange(0, n + 1, 6),
                      candidate_ids=[f"c{seed}_{j}" for j in range(n)], labels=rng.integers(0, 3, n),
                      features={"image": rng.normal(size=(n, 4)), "text": rng.normal(size=(n, 3))},
                      baseline_scores=rng.normal(size=n))


def sequence_split():
    rng = np.random.default_rng(0)
    users, items, times = [], [], []
    for u in range(30):
        for t in range(int(rng.integers(5, 9))):
            users.append(f"u{u}")
            items.append(f"i{int(rng.integers(1, 21))}")
            times.append(100 * u + t)
    inter = Interactions(users, items, times)
    loo = leave_one_out(inter)
    return make_split(inter, loo.parts["train"], loo.parts["valid"], loo.parts["test"],
                      catalogue=[f"i{k}" for k in range(1, 21)], source="contract.inter")


def fitted(kind: str):
    """(model, data to score) for a kind, fitted on tiny data."""
    torch.manual_seed(0)
    model = build_ranker(kind, SMALL_PARAMS.get(kind, {}))
    if MODELS[kind].task == "rerank":
        train, valid, test = ranking_set(12, 1), ranking_set(4, 2), ranking_set(4, 3)
        out = model.fit(train, valid, **NEURAL_FIT) if hasattr(model, "network_kwargs") else model.fit(train, valid)
        return model, out, test
    split = sequence_split()
    if hasattr(model, "set_item_features"):  # the content-aware kinds
        rng = np.random.default_rng(0)
        model.set_item_features({"text": rng.normal(size=(split.n_items + 1, 5)).astype(np.float32)},
                                {"text": np.ones(split.n_items + 1, dtype=bool)})
    out = model.fit(split, **SEQUENTIAL_FIT) if hasattr(model, "loss_fn") else model.fit(split)  # learned vs counted
    return model, out, split


def scores_of(model, data):
    if isinstance(data, RankingSet):
        return np.asarray(model.score(data))
    histories = data.history_for("test")
    return model.score_users(torch.arange(len(data.users)), histories).detach().numpy()


KINDS = sorted(MODELS)


@pytest.mark.parametrize("kind", KINDS)
def test_class_has_every_member_of_its_contract(kind):
    assert missing_members(model_class(kind), MODELS[kind].task) == []
    assert model_class(kind).kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_fit_returns_self_and_scores_deterministically(kind):
    model, out, data = fitted(kind)
    assert out is model
    first, second = scores_of(model, data), scores_of(model, data)
    assert np.isfinite(first[..., 1:] if first.ndim == 2 else first).all()
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kind", KINDS)
def test_save_then_load_scores_identically(kind, tmp_path):
    model, _, data = fitted(kind)
    model.save(tmp_path)
    again = load_model(tmp_path)  # the one loader for any run directory
    assert type(again) is type(model)
    assert again.get_params() == model.get_params()
    np.testing.assert_array_equal(scores_of(again, data), scores_of(model, data))


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_parameter_raises_the_projects_error(kind):
    with pytest.raises(MmrankError):
        build_ranker(kind, {"no_such_parameter": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_raises_the_projects_error(kind):
    model, _, data = fitted(kind)
    if isinstance(data, RankingSet):
        bad = RankingSet(query_ids=["x"], offsets=[0, 2], candidate_ids=["a", "b"], labels=[0, 1],
                         features={"other": np.zeros((2, 7))})
    else:  # a candidate item the model never saw
        bad = RankingSet(query_ids=["u1"], offsets=[0, 1], candidate_ids=["never-seen-item"], labels=[1],
                         query_texts=["i1 i2"])
    with pytest.raises(MmrankError):
        model.score(bad)
