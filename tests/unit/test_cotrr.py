"""CoTRR: learns a known label function, configures itself from the data, stores without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError, DataError
from mmrank.metrics import evaluate
from mmrank.models.baselines import HeuristicBaseline
from mmrank.models.cotrr import CoTRR
from conftest import make_toy_ranking_set
from mmrank.models.tokens import LETOR46_GROUPS, token_layout
from rerank_support import known_function_set

FAST = {"max_epochs": 25, "patience": 25, "lr": 3e-3, "batch_queries": 8, "progress": False, "threads": 1}


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    train, valid, test = known_function_set(60, seed=1), known_function_set(15, seed=2), known_function_set(20, seed=3)
    model = CoTRR(d_model=32, n_heads=4, n_layers=1, mlp_hidden=32, dropout=0.0).fit(train, valid, FAST)
    return model, test


def test_learns_a_known_function_of_one_modality_and_heuristic_does_not(trained):
    model, test = trained
    cotrr = evaluate(test, model.score(test), ["ndcg@10"])["ndcg@10"]
    heuristic = evaluate(test, HeuristicBaseline().fit(test).score(test), ["ndcg@10"])["ndcg@10"]
    print(f"held-out nDCG@10: CoTRR {cotrr:.4f}, heuristic {heuristic:.4f}")
    assert cotrr >= 0.95
    assert heuristic < 0.95


def test_attention_share_covers_every_modality_and_sums_to_one(trained):
    model, test = trained
    share = model.attention_share(test)
    assert set(share) == {"image", "text", "meta", "query.text"}
    assert sum(share.values()) == pytest.approx(1.0, abs=1e-6)


def test_mc_dropout_gives_spread_only_with_dropout(trained):
    model, test = trained
    mean, std = model.score_with_uncertainty(test, n_passes=4)
    assert np.allclose(mean, model.score(test), atol=1e-5) and np.all(std < 1e-5)  # dropout 0: no spread
    noisy = CoTRR(d_model=16, n_heads=2, dropout=0.3).prepare(test)
    mean, std = noisy.score_with_uncertainty(test, n_passes=6, seed=1)
    assert std.mean() > 0 and mean.shape == (test.n_candidates,)
    again = noisy.score_with_uncertainty(test, n_passes=6, seed=1)
    assert np.array_equal(again[1], std)  # pure for a given seed


def test_score_is_pure_and_padding_free(trained):
    model, test = trained
    a = model.score(test)
    # Scoring queries one at a time (no padding) gives the same scores as a padded batch.
    one_by_one = np.concatenate([model.score(test.subset([i])) for i in range(test.n_queries)])
    assert np.allclose(a, one_by_one, atol=1e-5)
    assert np.array_equal(a, model.score(test))


def test_save_load_roundtrip_and_checksum(tmp_path, trained):
    model, test = trained
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["kind"] == "cotrr" and meta["input_dims"]["features.image"] == 8
    again = CoTRR.load(tmp_path)
    assert np.array_equal(again.score(test), model.score(test))
    raw = bytearray((tmp_path / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum"):
        CoTRR.load(tmp_path)


def test_wrong_modality_dims_name_both(trained):
    model, test = trained
    bad = test.with_features({**test.features, "image": test.features["image"][:, :5]})
    with pytest.raises(DataError, match=r"features.image.*5.*8"):
        model.score(bad)
    with pytest.raises(DataError, match="lacks"):
        model.score(test.with_features({k: v for k, v in test.features.items() if k != "meta"}))


def test_letor_features_become_field_tokens():
    rset = RankingSet(query_ids=["q"], offsets=[0, 2], candidate_ids=["a", "b"], labels=[0, 1],
                      features={"letor": np.zeros((2, 46))})
    layout = token_layout(rset, "auto", None, True)
    assert [t.name for t in layout] == ["letor.body", "letor.anchor", "letor.title", "letor.url", "letor.whole", "letor.link"]
    assert sorted(c for t in layout for c in t.columns) == list(range(46))
    assert LETOR46_GROUPS["body"][:3] == [0, 5, 10]
    assert len(token_layout(rset, "none", None, True)) == 1


def test_list_context_lets_scores_depend_on_the_other_candidates():
    rset = known_function_set(2, per_query=5)
    torch.manual_seed(0)
    model = CoTRR(d_model=16, n_heads=2, list_context=True, dropout=0.0).prepare(rset)
    full = model.score(rset)[:4]
    fewer = model.score(rset.subset([0]).__class__(
        query_ids=["x"], offsets=[0, 4], candidate_ids=list("abcd"), labels=[0] * 4,
        features={k: v[:4] for k, v in rset.features.items()},
        query_features={k: v[:1] for k, v in rset.query_features.items()}))
    assert not np.allclose(full, fewer, atol=1e-6)  # dropping candidate 5 moved the others
    plain = CoTRR(d_model=16, n_heads=2, list_context=False, dropout=0.0).prepare(rset)
    assert plain.network_.context is None


def test_bad_params_fail_before_training():
    with pytest.raises(ConfigError, match="d_modl.*unknown key"):
        CoTRR(d_modl=3)
    with pytest.raises(ConfigError, match="dropout"):
        CoTRR(dropout="lots")
    with pytest.raises(ConfigError, match="divisible"):
        CoTRR(d_model=30, n_heads=8).prepare(known_function_set(2))


def test_default_size_is_seed_scale():
    # Seed-like layout: image 512, text 384, meta 16. The token stack alone is the seed's ~1.3M;
    # the list-context block (on by default, chosen on MQ2008) adds one more attention block.
    rset = RankingSet(query_ids=["q"], offsets=[0, 2], candidate_ids=["a", "b"], labels=[0, 1],
                      features={"image": np.zeros((2, 512)), "text": np.zeros((2, 384)), "meta": np.zeros((2, 16))})
    assert 1.2e6 < CoTRR(list_context=False).prepare(rset).n_parameters() < 1.45e6
    assert 1.7e6 < CoTRR().prepare(rset).n_parameters() < 2.0e6


def test_explicit_token_groups_that_skip_columns_still_score_the_training_data(tmp_path):
    from mmrank.runs import load_model

    rset = make_toy_ranking_set(n_queries=6, per_query=5, dims={"t": 4})
    model = CoTRR(d_model=8, n_heads=2, n_layers=1, mlp_hidden=8, token_groups={"t": {"a": [0, 1]}})
    model.prepare(rset)
    assert model.input_dims() == {"features.t": 4}
    scores = model.score(rset)  # used to refuse: "data modality dims {'features.t': 4} differ from ... 2"
    model.save(tmp_path)
    np.testing.assert_array_equal(load_model(tmp_path).score(rset), scores)


def test_ohsumed_width_letor_gets_three_field_tokens_and_the_layout_is_said():
    rng = np.random.default_rng(0)
    n = 20
    rset = RankingSet(query_ids=["a", "b"], offsets=[0, 10, 20], candidate_ids=[str(i) for i in range(n)],
                      labels=rng.integers(0, 3, n), features={"letor": rng.normal(size=(n, 45))})
    model = CoTRR(d_model=8, n_heads=2, n_layers=1, mlp_hidden=8).prepare(rset)
    assert [t.name for t in model.layout_] == ["letor.title", "letor.abstract", "letor.title_abstract"]
    assert [len(t.columns) for t in model.layout_] == [15, 15, 15]
    assert sorted(c for t in model.layout_ for c in t.columns) == list(range(45))
    assert model.layout_note_.startswith("3 tokens (LETOR 3.0 OHSUMED fields)")
    mq = RankingSet(query_ids=["a", "b"], offsets=[0, 10, 20], candidate_ids=[str(i) for i in range(n)],
                    labels=rng.integers(0, 3, n), features={"letor": rng.normal(size=(n, 46))})
    assert CoTRR(d_model=8, n_heads=2).prepare(mq).layout_note_.startswith("6 tokens (LETOR 4.0 fields)")


def test_an_input_that_cannot_be_split_gets_a_one_line_notice():
    rset = make_toy_ranking_set(n_queries=3, per_query=4, dims={"features": 300})
    note = CoTRR(d_model=8, n_heads=2).prepare(rset).layout_note_
    assert note.startswith("notice: 1 token (features, 300 columns)") and "\n" not in note
