"""The fused inference path scores what the network's own forward scores, for every architecture
switch, keeps up with weight changes, and the ranking-agreement check catches a changed order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.data.model import RankingSet
from mmrank.models.cotrr import CoTRR
from mmrank.models.fusion import FusionV2
from mmrank.models.fused_scoring import FusedScorer, ranking_agreement
from conftest import make_toy_ranking_set


def ragged_set(seed: int = 0) -> RankingSet:
    """Queries of 1 to 30 candidates (and one empty query), three modalities and a query feature."""
    rng = np.random.default_rng(seed)
    sizes = [1, 30, 7, 0, 12, 25, 3, 18]
    n = sum(sizes)
    return RankingSet(query_ids=[f"q{i}" for i in range(len(sizes))], offsets=np.concatenate([[0], np.cumsum(sizes)]),
                      candidate_ids=[f"c{i}" for i in range(n)], labels=rng.integers(0, 3, n),
                      features={"image": rng.normal(2.0, 3.0, (n, 10)).astype(np.float32),
                                "text": rng.normal(size=(n, 6)).astype(np.float32),
                                "meta": rng.normal(size=(n, 1)).astype(np.float32)},
                      query_features={"text": rng.normal(size=(len(sizes), 6)).astype(np.float32)})


ARCHITECTURES = [
    dict(d_model=32, n_heads=4, n_layers=2, list_context=True),
    dict(d_model=32, n_heads=4, n_layers=2, list_context=False),
    dict(d_model=16, n_heads=2, n_layers=0, ffn_mult=0, list_context=True),
    dict(d_model=16, n_heads=1, n_layers=1, ffn_mult=3, use_query_features=False, modalities=["text"]),  # one token
]


@pytest.mark.parametrize("params", ARCHITECTURES)
def test_fused_scores_equal_the_module_forward(params):
    torch.manual_seed(0)
    data = ragged_set()
    model = CoTRR(**params, dropout=0.3).prepare(data)  # dropout must not matter: both are eval
    with torch.no_grad():  # non-trivial norms and temperature, so no folded term can hide
        for p in model.network_.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    fused, module = model.score(data), model.score_module(data)
    assert fused.dtype == np.float64 and fused.shape == (data.n_candidates,)
    np.testing.assert_allclose(fused, module, rtol=1e-5, atol=1e-5)


def test_v2_fusion_scores_on_the_same_path_with_training_heads_present():
    torch.manual_seed(1)
    data = ragged_set(1)
    model = FusionV2(d_model=32, n_heads=4, n_layers=3, reconstruction_weight=0.1, adversarial_weight=0.1,
                     entropy_weight=0.1, modality_dropout=0.2).prepare(data)
    np.testing.assert_allclose(model.score(data), model.score_module(data), rtol=1e-5, atol=1e-5)


def test_chunking_and_worker_threads_do_not_change_scores():
    torch.manual_seed(2)
    data = make_toy_ranking_set(n_queries=30, per_query=9)
    model = CoTRR(d_model=32, n_heads=4).prepare(data)
    x = model.input_matrix(data)
    whole = FusedScorer(model.network_, chunk_candidates=10_000).score(x, data.offsets)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # chunks spread over two single-threaded workers
        small = FusedScorer(model.network_, chunk_candidates=20).score(x, data.offsets)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(small, whole, rtol=1e-6, atol=1e-6)
    assert torch.get_num_threads() == threads  # the caller's thread setting is left alone


def test_a_weight_change_is_seen_by_the_next_score():
    torch.manual_seed(3)
    data = make_toy_ranking_set(n_queries=5, per_query=6)
    model = CoTRR(d_model=16, n_heads=2).prepare(data)
    before = model.score(data)
    with torch.no_grad():
        model.network_.head[3].bias.add_(1.0)  # in place, as an optimiser step is
    after = model.score(data)
    np.testing.assert_allclose(after, model.score_module(data), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(after - before, 1.0 / model.network_.log_temperature.exp().item(), rtol=1e-4)


def test_bf16_is_opt_in_and_close_to_fp32():
    torch.manual_seed(4)
    data = ragged_set(4)
    assert CoTRR().params.score_precision == "fp32"
    model = CoTRR(d_model=32, n_heads=4).prepare(data)
    fp32 = model.score(data)
    model.params.score_precision = "bf16"
    bf16 = model.score(data)
    assert not np.array_equal(bf16, fp32)  # really another precision
    assert np.abs(bf16 - fp32).max() < 0.05 * (np.abs(fp32).max() + 1)
    with pytest.raises(ValueError, match="precision"):
        FusedScorer(model.network_, precision="fp8")


def test_ranking_agreement_counts_identical_orders_and_catches_a_swap():
    rng = np.random.default_rng(5)
    offsets = np.array([0, 15, 30, 40])
    labels = rng.integers(0, 3, 40).astype(float)
    scores = rng.normal(size=40)
    same = ranking_agreement(scores, scores.copy(), offsets, labels)
    assert same == {"queries": 3, "identical_top_k": 3, "share_identical": 1.0, "max_abs_ndcg_diff": 0.0}
    swapped = scores.copy()
    order = np.argsort(-scores[15:30], kind="stable") + 15
    first, second = order[0], order[1]
    labels[first], labels[second] = 2.0, 0.0  # the swap costs nDCG
    swapped[first], swapped[second] = scores[second], scores[first]  # swap ranks 1 and 2 of query 2
    r = ranking_agreement(scores, swapped, offsets, labels)
    assert r["identical_top_k"] == 2 and r["share_identical"] == pytest.approx(2 / 3)
    assert r["max_abs_ndcg_diff"] > 0.05
    # a change below rank 10 leaves the top-10 order alone
    low = scores.copy()
    low[order[-1]] -= 5.0
    assert ranking_agreement(scores, low, offsets, labels)["identical_top_k"] == 3


@pytest.mark.parametrize("list_context", [True, False])
def test_onnxruntime_and_torch_engines_score_alike_and_rank_alike(list_context):
    torch.manual_seed(6)
    data = ragged_set(6)
    model = CoTRR(d_model=32, n_heads=4, list_context=list_context).prepare(data)
    with torch.no_grad():
        for p in model.network_.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = model.input_matrix(data)
    ort_scores = FusedScorer(model.network_, engine="onnxruntime").score(x, data.offsets)
    torch_scores = FusedScorer(model.network_, engine="torch").score(x, data.offsets)
    np.testing.assert_allclose(ort_scores, torch_scores, rtol=1e-5, atol=1e-5)
    agreement = ranking_agreement(torch_scores, ort_scores, data.offsets, data.labels, k=10)
    assert agreement["identical_top_k"] == agreement["queries"] and agreement["max_abs_ndcg_diff"] < 1e-6
    # one query alone (the serving case: one chunk, the caller's threads) scores as inside a batch
    one = FusedScorer(model.network_, engine="onnxruntime").score(x[1:31], np.array([0, 30]))
    np.testing.assert_allclose(one, ort_scores[1:31], rtol=1e-5, atol=1e-6)


def test_engine_choice_default_fallback_and_errors():
    torch.manual_seed(7)
    data = ragged_set(7)
    model = CoTRR(d_model=16, n_heads=2).prepare(data)
    assert model.params.score_engine == "auto"
    assert model.fused_scorer().engine == "onnxruntime"  # fp32 default
    assert model.fused_scorer("bf16").engine == "torch"  # ONNX Runtime has no bf16 CPU matmul
    model.params.score_engine = "torch"
    assert model.fused_scorer().engine == "torch"
    with pytest.raises(ValueError, match="engine"):
        FusedScorer(model.network_, engine="tvm")
    with pytest.raises(ValueError, match="fp32 only"):
        FusedScorer(model.network_, precision="bf16", engine="onnxruntime")


def test_a_scored_model_can_be_copied_and_pickled():
    import copy
    import pickle

    torch.manual_seed(8)
    data = ragged_set(8)
    model = CoTRR(d_model=16, n_heads=2).prepare(data)
    before = model.score(data)  # an ONNX Runtime session now lives in the model's scorer cache
    np.testing.assert_array_equal(copy.deepcopy(model).score(data), before)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).score(data), before)


def test_near_tie_queries_flags_close_leading_scores_only():
    from mmrank.models.fused_scoring import near_tie_queries

    scores = np.array([3.0, 2.0, 1.0,  # clear gaps
                       0.5, 0.500001, 0.1,  # a near-tie at the top
                       9.0, 5.0, 1.0, 1.0 + 1e-9])  # a tie only below depth 2
    offsets = np.array([0, 3, 6, 10])
    assert near_tie_queries(scores, offsets, depth=10).tolist() == [1, 2]
    assert near_tie_queries(scores, offsets, depth=1).tolist() == [1]  # positions 1-2 of query 2 are apart
    assert near_tie_queries(scores, offsets, tolerance=1e-7).tolist() == [2]
    # the tolerance scales with the query's largest score (at least 1)
    assert near_tie_queries(np.array([1000.0, 1000.01]), np.array([0, 2])).tolist() == [0]
    assert near_tie_queries(np.array([1.0, 1.01]), np.array([0, 2])).tolist() == []


def test_queries_with_near_ties_are_scored_by_the_module_forward():
    torch.manual_seed(9)
    data = ragged_set(9)
    model = CoTRR(d_model=16, n_heads=2, list_context=True).prepare(data)
    best = 1 + int(np.argmax(model.score(data)[1:31]))  # query 1 holds rows 1-30
    for k in data.features:  # two copies of query 1's best candidate: an exact tie at the top
        data.features[k][[r for r in (1, 2, 3) if r != best][:2]] = data.features[k][best]
    scores = model.score(data)
    np.testing.assert_array_equal(scores[1:31], model.score_module(data.subset([1])))  # the module's own bits
    model.params.score_tie_tolerance = 0.0  # off: the fast path's scores stand
    fast = model.score(data)
    assert not np.array_equal(fast[1:31], scores[1:31])
    np.testing.assert_allclose(fast, scores, rtol=1e-5, atol=1e-5)
