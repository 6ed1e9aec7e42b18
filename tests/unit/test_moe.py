"""Hierarchical multimodal MoE: routing, balancing, masking, ablation, cold-start from content."""

from __future__ import annotations

import numpy as np
import torch

from mmrank.data.model import Interactions
from mmrank.sequential.data import make_split
from mmrank.data.splits import leave_one_out
from mmrank.sequential.moe import (HierarchicalMoE, ModalityExperts, SASRecMoERanker, load_balancing_loss,
                               masked_softmax)

torch.set_num_threads(1)


def test_load_balancing_loss_is_one_when_balanced_and_k_when_collapsed():
    # Each expert is the top choice of a third of the items, with near-uniform probabilities.
    balanced = torch.tensor([[0.34, 0.33, 0.33], [0.33, 0.34, 0.33], [0.33, 0.33, 0.34]]).repeat(2, 1)
    assert abs(float(load_balancing_loss(balanced)) - 1.0) < 1e-2
    collapsed = torch.tensor([[1.0, 0.0, 0.0]]).repeat(6, 1)
    assert float(load_balancing_loss(collapsed)) == 3.0


def test_masked_softmax_ignores_missing_modalities_and_handles_none():
    w = masked_softmax(torch.tensor([[5.0, 1.0], [0.0, 0.0]]), torch.tensor([[False, True], [False, False]]))
    assert torch.allclose(w, torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_experts_mix_with_router_probabilities():
    torch.manual_seed(0)
    tower = ModalityExperts(5, 4, n_experts=3, dropout=0.0)
    out, probs = tower(torch.randn(7, 5))
    assert out.shape == (7, 4) and probs.shape == (7, 3)
    assert torch.allclose(probs.sum(1), torch.ones(7))


def test_missing_modality_gets_zero_gate_weight():
    torch.manual_seed(0)
    moe = HierarchicalMoE({"text": 4, "image": 3}, hidden=8)
    per_mod, logits, _ = moe({"text": torch.randn(5, 4), "image": torch.randn(5, 3)},
                             torch.tensor([[True, True]] * 4 + [[False, True]]))
    w = masked_softmax(logits, torch.tensor([[True, True]] * 4 + [[False, True]]))
    assert moe.modalities == ["image", "text"]
    assert float(w[4, 0]) == 0.0 and bool(torch.all(per_mod[4, 0] == 0))


def grouped_data(n_groups=6, per_group=8, n_users=180, seed=0):
    """Users read items of one group only; item features say the group (one-hot 'text') plus
    noise ('image'). The last item of each group is in the catalogue but never read (cold)."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        g = u % n_groups
        for t in range(12):
            users.append(f"u{u}")
            items.append(f"g{g}_{int(rng.integers(0, per_group - 1))}")  # never the last one
            times.append(t)
    inter = Interactions(users, items, times)
    catalogue = [f"g{g}_{k}" for g in range(n_groups) for k in range(per_group)]
    return inter, catalogue, n_groups


def loo_rows(inter):
    loo = leave_one_out(inter)
    return loo.parts["train"], loo.parts["valid"], loo.parts["test"]


def test_cold_items_are_scored_from_content():
    inter, catalogue, n_groups = grouped_data()
    split = make_split(inter, *loo_rows(inter), catalogue=catalogue, source="grouped.inter")
    rng = np.random.default_rng(1)
    group_of = np.array([-1] + [int(str(i)[1:].split("_")[0]) for i in split.items.ids])
    text = np.zeros((split.n_items + 1, n_groups), dtype=np.float32)
    text[np.arange(1, split.n_items + 1), group_of[1:]] = 1.0
    image = rng.normal(size=(split.n_items + 1, 3)).astype(np.float32)
    mask = np.ones(split.n_items + 1, dtype=bool)
    mask[0] = False
    ranker = SASRecMoERanker(hidden=16, layers=1, heads=1, max_len=12, dropout=0.0, n_experts=2)
    ranker.set_item_features({"text": text, "image": image}, {"text": mask, "image": mask})
    ranker.fit(split, epochs=15, batch_size=64, lr=5e-3, patience=15)
    cold = np.flatnonzero(split.cold_items)
    assert len(cold) == n_groups
    hist = split.history_for("test")
    scores = ranker.score_users(torch.arange(hist.n_users), hist).numpy()
    # Each user's group, read off the first item of their history.
    user_group = group_of[[hist.of(u)[0] for u in range(hist.n_users)]]
    own = scores[np.arange(hist.n_users)[:, None], cold[None, :]]
    same = group_of[cold][None, :] == user_group[:, None]
    # The cold item of the user's own group outscores the other groups' cold items.
    assert (own[same] > own[~same].reshape(hist.n_users, -1).max(1)).mean() > 0.9

    usage = ranker.expert_usage()
    assert set(usage) == {"text", "image"} and all(len(v) == 2 for v in usage.values())
    assert all(abs(sum(v) - 1) < 1e-5 for v in usage.values())
    share = ranker.modality_share()
    assert abs(sum(share.values()) - 1) < 1e-5
    # Ablating the informative modality destroys the cold-start signal.
    ranker.set_ablation({"text"})
    ablated = ranker.score_users(torch.arange(hist.n_users), hist).numpy()
    own_ablated = ablated[np.arange(hist.n_users)[:, None], cold[None, :]]
    assert (own_ablated[same] > own_ablated[~same].reshape(hist.n_users, -1).max(1)).mean() < 0.6
    ranker.set_ablation(set())


def test_moe_save_load_round_trip(tmp_path):
    inter, catalogue, n_groups = grouped_data(n_users=30)
    split = make_split(inter, *loo_rows(inter), catalogue=catalogue)
    feats = {"text": np.random.default_rng(0).normal(size=(split.n_items + 1, 4)).astype(np.float32)}
    ranker = SASRecMoERanker(hidden=8, layers=1, heads=1, max_len=12, user_gate=True)
    ranker.set_item_features(feats, {"text": np.ones(split.n_items + 1, bool)}).build(split)
    ranker.save(tmp_path)
    again = SASRecMoERanker.load(tmp_path)
    hist = split.history_for("test")
    assert torch.equal(ranker.score_users(torch.arange(4), hist), again.score_users(torch.arange(4), hist))
    assert again.modalities == ["text"]


def test_one_evaluation_computes_the_content_tower_once_and_scores_as_chunk_by_chunk():
    from mmrank.sequential.evaluation import evaluate_stage

    inter, catalogue, _ = grouped_data(n_users=60)
    split = make_split(inter, *loo_rows(inter), catalogue=catalogue)
    feats = {"text": np.random.default_rng(0).normal(size=(split.n_items + 1, 4)).astype(np.float32)}
    ranker = SASRecMoERanker(hidden=8, layers=1, heads=1, max_len=12)
    ranker.set_item_features(feats, {"text": np.ones(split.n_items + 1, bool)}).build(split)
    calls = []
    content = ranker.net_._content
    ranker.net_._content = lambda: calls.append(1) or content()
    per_user = evaluate_stage(ranker, split, "test", chunk_size=8)  # 8 chunks of users
    assert len(calls) == 1
    hist = split.history_for("test")
    separate = evaluate_stage(ranker, split, "test", chunk_size=60)
    assert np.array_equal(per_user["ndcg@10"], separate["ndcg@10"]) and len(calls) == 2
    # Outside a session every call computes the item side afresh (weights may have changed).
    ranker.score_users(torch.arange(4), hist)
    ranker.score_users(torch.arange(4), hist)
    assert len(calls) == 4
