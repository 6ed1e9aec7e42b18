"""Cold-start split, warm/cold metrics and the ID-only fallbacks (mmrank.sequential.coldstart)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.errors import ConfigError
from mmrank.sequential.baselines import PopularityRanker
from mmrank.sequential.coldstart import (
    cold_mask,
    cold_start_rows,
    cold_start_split,
    content_matrix,
    id_fallback,
    warm_cold_breakdown,
)
from mmrank.sequential.evaluation import evaluate_stage, seen_csr
from mmrank.sequential.sasrec import SASRecRanker
from sequence_support import chain_features, chain_interactions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def chain():
    inter = chain_interactions(n_users=300)
    split, rows = cold_start_split(inter, fraction=0.25, seed=3)
    return inter, split, rows


def test_no_cold_target_was_ever_seen_in_training(chain):
    inter, split, rows = chain
    items = np.asarray(inter.item_ids).astype(str)
    trained = set(items[rows.train])
    assert not trained & set(rows.cold_items), "a held-out item has a training event"
    assert set(items[rows.held_out]) <= set(rows.cold_items)
    for stage in ("valid", "test"):
        users = np.flatnonzero(split.target_for(stage) > 0)
        cold = cold_mask(split, stage, users)
        assert 0 < cold.sum() < len(users), "the generated set should give both warm and cold targets"
        cold_targets = split.items.decode(split.target_for(stage)[users[cold]])
        warm_targets = split.items.decode(split.target_for(stage)[users[~cold]])
        assert not set(cold_targets) & trained
        assert set(warm_targets) <= trained
    assert set(rows.cold_items) <= set(items[np.concatenate([rows.valid, rows.test])])
    # The training histories hold no held-out item at all.
    assert not split.cold_items[split.train.items].any()


def test_every_event_is_accounted_for_and_held_out_events_count_as_seen(chain):
    inter, split, rows = chain
    assert len(rows.train) + len(rows.valid) + len(rows.test) + len(rows.held_out) + rows.events_dropped == len(inter)
    assert len(rows.held_out) > 0
    indptr, indices = seen_csr(split.history_for("valid"), split.seen_extra)
    for u in range(split.users.__len__()):
        seen = set(indices[indptr[u] + 1:indptr[u + 1]].tolist())
        assert set(split.seen_extra.of(u).tolist()) <= seen
        assert set(split.train.of(u).tolist()) <= seen


def test_split_is_seeded_and_fraction_is_checked():
    inter = chain_interactions(n_users=100)
    a, b = cold_start_rows(inter, 0.2, seed=1), cold_start_rows(inter, 0.2, seed=1)
    assert np.array_equal(a.train, b.train) and set(a.cold_items) == set(b.cold_items)
    assert set(cold_start_rows(inter, 0.2, seed=2).cold_items) != set(a.cold_items)
    with pytest.raises(ConfigError):
        cold_start_rows(inter, 1.5)


def test_warm_and_cold_metrics_add_up_to_overall(chain):
    _, split, _ = chain
    ranker = PopularityRanker().fit(split)
    # Popularity ties cold items (no training events); break ties so the metrics vary per user.
    ranker.item_scores_ = ranker.item_scores_ + np.random.default_rng(0).random(len(ranker.item_scores_))
    per_user = evaluate_stage(ranker, split, "test", (5, 10))
    cold = cold_mask(split, "test", per_user["users"])
    out = warm_cold_breakdown(per_user, cold)
    n, nw, nc = out["users"]["overall"], out["users"]["warm"], out["users"]["cold"]
    assert n == nw + nc == len(per_user["users"]) and nc == int(cold.sum())
    for metric in ("ndcg@10", "hr@10", "mrr@5"):
        assert out["overall"][metric] == pytest.approx((nw * out["warm"][metric] + nc * out["cold"][metric]) / n, abs=1e-12)
        assert out["cold"][metric] == pytest.approx(float(per_user[metric][cold].mean()))


def test_fallbacks_replace_only_the_cold_rows(chain):
    _, split, _ = chain
    torch.manual_seed(0)
    ranker = SASRecRanker(hidden=8, layers=1, heads=1, max_len=8).build(split)
    table = ranker.net_.item_emb.weight.detach().clone()
    cold = torch.from_numpy(split.cold_items)
    feats, masks = chain_features(split.items.ids)
    content = content_matrix(feats, masks)
    for kind in ("popularity", "content_nearest"):
        new = id_fallback(ranker, kind, split, content).net_.item_emb.weight.detach()
        assert torch.equal(new[~cold], table[~cold]), kind
        assert not torch.allclose(new[cold], table[cold]), kind
    assert torch.equal(ranker.net_.item_emb.weight, table), "the fallback must not change the original"
    # popularity: every cold row is (up to the 1e-4 tie-break noise) the popularity-weighted mean warm row.
    pop = id_fallback(ranker, "popularity", split).net_.item_emb.weight.detach()[cold]
    counts = torch.from_numpy(np.bincount(split.train.items, minlength=split.n_items + 1)).double()
    mean = (counts[:, None] * table.double()).sum(0) / counts.sum()
    assert torch.allclose(pop.double(), mean.expand_as(pop), atol=1e-3 * float(mean.norm()))
    # content_nearest keeps the scale of the rows it averages (a plain mean would shrink them).
    near = id_fallback(ranker, "content_nearest", split, content).net_.item_emb.weight.detach()[cold].norm(dim=1)
    warm_norms = table[~cold][1:].norm(dim=1)
    assert float(near.min()) >= 0.9 * float(warm_norms.min()) and float(near.max()) <= 1.1 * float(warm_norms.max())
    assert id_fallback(ranker, "untrained", split) is ranker
    with pytest.raises(ConfigError):
        id_fallback(ranker, "content_nearest", split, None)


class _Fixed:
    """Scores every user with the same item vector (a known ranking)."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def score_users(self, users, histories):
        """The fixed scores for every user."""
        return self.scores.expand(len(users), -1).clone()


def test_evaluation_masks_the_held_out_events(chain):
    _, split, _ = chain
    # Distinct scores, held-out items on top: the rank of each target is known by brute force over
    # the items the user has not seen (history + held-out events + padding masked, target never).
    scores = np.random.default_rng(0).random(split.n_items + 1)
    scores[np.unique(split.seen_extra.items)] += 10.0
    per_user = evaluate_stage(_Fixed(scores), split, "test", (10,))
    users, target = per_user["users"], split.target_for("test")[per_user["users"]]
    expected, unmasked = [], []
    for u, t in zip(users, target):
        seen = set(split.history_for("test").of(u).tolist()) | set(split.seen_extra.of(u).tolist()) | {0}
        above = [i for i in range(split.n_items + 1) if i != t and scores[i] > scores[t]]
        expected.append(1 + sum(i not in seen for i in above))
        unmasked.append(1 + sum(i not in seen or i in split.seen_extra.of(u) for i in above))
    assert np.array_equal(per_user["rank"], np.array(expected, dtype=float))
    assert not np.array_equal(per_user["rank"], np.array(unmasked, dtype=float)), "held-out events should matter here"


def test_cold_start_and_folds_refuse_a_split_other_than_leave_one_out():
    from types import SimpleNamespace

    from mmrank.sequential.config import ColdStart, Folds, SequentialData
    from mmrank.sequential.folds import evaluation_split

    seq = SimpleNamespace(protocol=SimpleNamespace(name="random"))
    for extra in ({"cold_start": ColdStart()}, {"folds": Folds()}):
        with pytest.raises(ConfigError, match="leave_one_out"):
            evaluation_split(seq, SequentialData(path="x", **extra))
    plain = SequentialData(path="x")
    assert evaluation_split(seq, plain) is seq
