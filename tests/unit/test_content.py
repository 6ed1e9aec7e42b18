"""Content-aware SASRec (sasrec_content): wins on cold items where IDs cannot, starts as the
ID-only model, exposes the audit hooks, warm-starts from an ID-only run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.errors import DataError
from mmrank.sequential.coldstart import cold_mask, cold_start_split, id_fallback, warm_cold_breakdown
from mmrank.sequential.content import SASRecContentNet, SASRecContentRanker
from mmrank.sequential.evaluation import evaluate_stage
from mmrank.sequential.sasrec import SASRecNet, SASRecRanker
from sequence_support import chain_features, chain_interactions

torch.set_num_threads(1)
FIT = dict(epochs=12, batch_size=64, lr=0.005, patience=12, progress=False)
SMALL = dict(hidden=32, layers=1, heads=1, max_len=10, dropout=0.1)


def hr10(ranker, split, stage="test") -> dict:
    per_user = evaluate_stage(ranker, split, stage, (10,))
    out = warm_cold_breakdown(per_user, cold_mask(split, stage, per_user["users"]))
    return {g: out[g]["hr@10"] for g in ("overall", "warm", "cold")}


@pytest.fixture(scope="module")
def chain():
    split, _ = cold_start_split(chain_interactions(n_users=400), fraction=0.2, seed=0)
    return split, chain_features(split.items.ids)


def test_content_model_ranks_cold_items_where_id_only_cannot(chain):
    """Item content fully determines the next item: the content-aware model puts cold targets in
    its top 10 (HR@10 >= 0.9); ID-only SASRec, with or without the popularity fallback, cannot."""
    split, (feats, masks) = chain
    torch.manual_seed(0)
    content = SASRecContentRanker(**SMALL, id_dropout=0.5, modality_dropout=0.0)
    content.set_item_features(feats, masks).fit(split, **FIT)
    torch.manual_seed(0)
    id_only = SASRecRanker(**SMALL).fit(split, **FIT)
    got = hr10(content, split)
    assert got["cold"] >= 0.9, got
    assert got["warm"] >= 0.9, got
    for fallback in ("untrained", "popularity"):
        assert hr10(id_fallback(id_only, fallback, split), split)["cold"] <= 0.2, fallback
    assert hr10(id_only, split)["warm"] >= 0.8  # IDs do know the warm transitions
    assert content.content_gate_norm() > 0.01  # the gate opened: content is used


def test_closed_gate_is_the_id_only_model(chain):
    """gate_init 0: with the ID-only net's weights, every warm item scores exactly as in SASRec."""
    split, (feats, masks) = chain
    torch.manual_seed(0)
    sasrec = SASRecNet(split.n_items, 16, 1, 1, 10, 0.0)
    net = SASRecContentNet(split.n_items, {m: torch.from_numpy(v) for m, v in feats.items()},
                           torch.from_numpy(np.stack([masks[m] for m in sorted(feats)], 1)),
                           torch.from_numpy(split.cold_items), 16, 1, 1, 10, 0.0, gate_init=0.0)
    net.load_state_dict(sasrec.state_dict(), strict=False)
    sasrec.eval(), net.eval()
    warm_ids = torch.from_numpy(np.flatnonzero(~split.cold_items[1:]) + 1)
    seq = warm_ids[torch.randint(0, len(warm_ids), (5, 10))]  # histories of warm items only
    warm = torch.from_numpy(~split.cold_items)
    with torch.no_grad():
        a, b = sasrec.score_sequences(seq), net.score_sequences(seq)
    assert torch.allclose(a[:, warm], b[:, warm], atol=1e-5)
    assert torch.all(b[:, torch.from_numpy(split.cold_items)] == 0)  # closed gate: cold items have nothing


def test_ablation_modality_share_and_moe_expert_usage(chain):
    split, (feats, masks) = chain
    torch.manual_seed(0)
    model = SASRecContentRanker(**SMALL, adapter="moe", n_experts=2, gate_init=1.0)
    model.set_item_features(feats, masks).build(split)
    share = model.modality_share()
    assert set(share) == {"image", "text"} and sum(share.values()) == pytest.approx(1.0)
    usage = model.expert_usage()
    assert set(usage) == {"image", "text"} and all(len(u) == 2 for u in usage.values())
    users = torch.arange(5)
    with model.scoring_session():
        full = model.score_users(users, split.history_for("test")).clone()
        model.set_ablation({"text"})
        ablated = model.score_users(users, split.history_for("test")).clone()
        model.set_ablation(set())
    assert not torch.allclose(full[:, 1:], ablated[:, 1:])
    with pytest.raises(ValueError):
        model.set_ablation({"audio"})
    assert not hasattr(SASRecContentRanker(**SMALL), "expert_usage")  # whitening adapter: no experts


def test_save_load_and_warm_start_from_an_id_only_run(chain, tmp_path):
    split, (feats, masks) = chain
    torch.manual_seed(0)
    id_only = SASRecRanker(hidden=16, layers=1, heads=1, max_len=10).build(split)
    id_only.save(tmp_path / "id")
    model = SASRecContentRanker(hidden=16, layers=1, heads=1, max_len=10, gate_init=0.3, init_from=str(tmp_path / "id"))
    model.set_item_features(feats, masks).build(split)
    assert model.warm_started_
    assert torch.equal(model.net_.item_emb.weight, id_only.net_.item_emb.weight)
    model.save(tmp_path / "content")
    loaded = SASRecContentRanker.load(tmp_path / "content")
    users = torch.arange(7)
    hist = split.history_for("test")
    assert torch.equal(model.score_users(users, hist), loaded.score_users(users, hist))
    other, _ = cold_start_split(chain_interactions(n_users=400), fraction=0.2, seed=5)
    stranger = SASRecContentRanker(hidden=16, layers=1, heads=1, max_len=10, init_from=str(tmp_path / "id"))
    with pytest.raises(DataError):
        stranger.set_item_features(*chain_features(other.items.ids)).build(other)


def test_warm_started_content_trains_content_only_and_keeps_the_id_start_as_a_candidate(chain, tmp_path):
    split, (feats, masks) = chain
    torch.manual_seed(0)
    SASRecRanker(**SMALL).fit(split, **dict(FIT, epochs=3)).save(tmp_path / "id")
    torch.manual_seed(0)
    model = SASRecContentRanker(**SMALL, id_dropout=0.5, init_from=str(tmp_path / "id"))
    model.set_item_features(feats, masks).build(split)
    before = {k: v.clone() for k, v in model.net_.state_dict().items()}
    model.fit(split, **dict(FIT, epochs=3))
    after = model.net_.state_dict()
    assert model.history_[0]["epoch"] == 0 and model.history_[0]["train_loss"] is None  # the ID-only start
    frozen = [k for k in before if k.startswith(("item_emb.", "pos_emb.", "encoder.", "final_norm."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    best = max(r["valid_ndcg@10"] for r in model.history_)
    assert best >= model.history_[0]["valid_ndcg@10"]
    # Cold items were trained from content (the stand-in projection moved off zero).
    assert float(after["cold_head.weight"].abs().sum()) > 0 or best == model.history_[0]["valid_ndcg@10"]


def test_cold_items_are_no_training_negatives(chain):
    split, (feats, masks) = chain
    torch.manual_seed(0)
    model = SASRecContentRanker(**SMALL, gate_init=1.0).set_item_features(feats, masks).build(split)
    h = torch.randn(4, SMALL["hidden"])
    cold = torch.from_numpy(split.cold_items)
    model.net_.train()
    with model.net_.item_side_cache():
        assert torch.isinf(model.net_.logits(h)[:, cold]).all()
        cand = torch.nonzero(cold).flatten()[:3].expand(4, 3)
        assert torch.isinf(model.net_.logits(h, cand)).all()
    model.net_.eval()
    with torch.no_grad(), model.net_.item_side_cache():
        assert torch.isfinite(model.net_.logits(h)[:, cold]).all()  # scored at evaluation


def test_alignment_pulls_the_stand_in_towards_the_warm_vectors(chain):
    split, (feats, masks) = chain
    torch.manual_seed(0)
    model = SASRecContentRanker(**SMALL, align_weight=2.0, id_dropout=0.0).set_item_features(feats, masks).build(split)
    net = model.net_.train()
    with net.item_side_cache():
        net.item_table()
        start = float(net.aux_loss())
    assert start == pytest.approx(2.0)  # P starts at zero: the relative distance is exactly 1
    opt = torch.optim.Adam([p for n, p in net.named_parameters() if n.startswith(("cold_head", "adapter"))], lr=0.01)
    for _ in range(50):
        opt.zero_grad()
        with net.item_side_cache():
            net.item_table()
            loss = net.aux_loss()
        loss.backward()
        opt.step()
    assert float(loss) < 0.85 * start  # random ID rows are only partly explained by 26 content dims
    net.eval()
    with torch.no_grad(), net.item_side_cache():
        net.item_table()
        assert float(net.aux_loss()) == 0.0  # no alignment term at evaluation
