"""Full-ranking and sampled evaluation of recommenders: exact ranks, masking, ties, chunking."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mmrank.errors import ConfigError, DataError
from mmrank.sequential.full_ranking import full_ranking_metrics, sampled_ranking_metrics
from mmrank.sequential.full_ranking import metrics_from_rank_counts

torch.set_num_threads(1)


def csr(lists):
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
    indices = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0)
    return indptr, indices.astype(np.int64)


class MatrixScorer:
    """score_users over a fixed matrix; remembers the chunk sizes it was asked for."""

    def __init__(self, matrix):
        self.matrix = torch.as_tensor(matrix, dtype=torch.float32)
        self.calls: list[int] = []

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        assert users.dtype == torch.long
        self.calls.append(len(users))
        return self.matrix[users]


# Two users, five items.
# user 0: target 2 (score 0.5); seen {1} (0.9, masked); competitors 0:0.1, 3:0.5 (tie), 4:0.2
# user 1: all scores 1.0; target 0 is also in its seen list (repeat): must not be masked
MATRIX = [[0.1, 0.9, 0.5, 0.5, 0.2], [1.0, 1.0, 1.0, 1.0, 1.0]]
TARGETS = [2, 0]
SEEN = csr([[1], [0]])


def test_exact_rank_on_a_tiny_case_pessimistic_ties():
    got = full_ranking_metrics(MatrixScorer(MATRIX), 2, TARGETS, *SEEN, ks=(1, 2, 5))
    np.testing.assert_array_equal(got["rank"], [2, 5])
    np.testing.assert_allclose(got["ndcg@2"], [1 / math.log2(3), 0.0])
    np.testing.assert_allclose(got["ndcg@5"], [1 / math.log2(3), 1 / math.log2(6)])
    np.testing.assert_array_equal(got["hr@1"], [0, 0])
    np.testing.assert_array_equal(got["hr@5"], [1, 1])
    np.testing.assert_allclose(got["mrr@5"], [0.5, 0.2])


def test_optimistic_ties_and_the_constant_model_trap():
    got = full_ranking_metrics(MatrixScorer(MATRIX), 2, TARGETS, *SEEN, ks=(1,), ties="optimistic")
    np.testing.assert_array_equal(got["rank"], [1, 1])
    # pessimistic default: a model scoring everything alike must not look perfect
    assert full_ranking_metrics(MatrixScorer(MATRIX), 2, TARGETS, *SEEN, ks=(1,))["hr@1"][1] == 0.0


def test_mean_ties_equal_the_average_over_every_tie_order():
    higher, tied = np.array([0, 2, 7]), np.array([3, 0, 4])
    ks = (1, 3, 10)
    got = metrics_from_rank_counts(higher, tied, ks, "mean")
    for u in range(3):
        ranks = [higher[u] + 1 + j for j in range(tied[u] + 1)]  # equally likely positions
        for k in ks:
            assert got[f"hr@{k}"][u] == pytest.approx(np.mean([r <= k for r in ranks]))
            assert got[f"ndcg@{k}"][u] == pytest.approx(np.mean([(r <= k) / math.log2(r + 1) for r in ranks]))
            assert got[f"mrr@{k}"][u] == pytest.approx(np.mean([(r <= k) / r for r in ranks]))


def test_mean_ties_match_brute_force_random_permutations_on_tiny_matrix():
    # user 1 has 4 tied competitors: enumerate all orders of the 5 tied items
    got = full_ranking_metrics(MatrixScorer(MATRIX), 2, TARGETS, *SEEN, ks=(2,), ties="mean")
    hr = [perm.index(0) < 2 for perm in itertools.permutations(range(5))]
    assert got["hr@2"][1] == pytest.approx(np.mean(hr))


def test_seen_items_never_outrank_the_target():
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 50
    matrix = rng.normal(size=(n_users, n_items))
    targets = rng.integers(0, n_items, n_users)
    # seen items get the highest scores of all: unmasked they would take the whole top-k
    seen = [rng.choice(np.setdiff1d(np.arange(n_items), [t]), 10, replace=False) for t in targets]
    for u, items in enumerate(seen):
        matrix[u, items] = 100.0 + rng.random(10)
    got = full_ranking_metrics(MatrixScorer(matrix), n_users, targets, *csr(seen), ks=(10,))
    # reference: rank among unseen items only
    for u in range(n_users):
        unseen = np.setdiff1d(np.arange(n_items), seen[u])
        expected = 1 + np.sum(matrix[u, unseen] > matrix[u, targets[u]])
        assert got["rank"][u] == expected
    assert got["rank"].max() <= n_items - 10


@pytest.mark.parametrize("fn", [full_ranking_metrics, sampled_ranking_metrics])
def test_chunk_size_and_worker_threads_do_not_change_results(fn):
    rng = np.random.default_rng(1)
    n_users, n_items = 23, 40
    matrix = np.round(rng.normal(size=(n_users, n_items)), 1)  # rounding makes ties
    targets = rng.integers(0, n_items, n_users)
    seen = csr([rng.choice(n_items, rng.integers(0, 8), replace=False) for _ in range(n_users)])
    kw = {"n_negatives": 10, "seed": 3} if fn is sampled_ranking_metrics else {}
    results = [fn(MatrixScorer(matrix), n_users, targets, *seen, ks=(1, 5), chunk_size=c, workers=w, **kw)
               for c, w in ((1, 1), (7, 1), (n_users, 1), (3, 3))]  # (3, 3): chunks in three threads at once
    assert len(np.unique(results[0]["rank"])) > 5  # a real spread of ranks
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for name in results[0]:
            np.testing.assert_array_equal(other[name], results[0][name], err_msg=name)


def test_memory_is_bounded_by_chunk_size():
    scorer = MatrixScorer(np.zeros((100, 5)))
    full_ranking_metrics(scorer, 100, np.zeros(100, dtype=int), *csr([[]] * 100), chunk_size=16)
    assert max(scorer.calls) == 16
    assert scorer.calls == [16] * 6 + [4]
    assert sum(scorer.calls) == 100


def test_caller_scores_are_not_modified():
    matrix = torch.tensor(MATRIX)
    before = matrix.clone()
    view = lambda u: matrix[int(u[0]): int(u[-1]) + 1]  # a view, not a copy, of the caller's tensor
    full_ranking_metrics(view, 2, TARGETS, *SEEN)
    sampled_ranking_metrics(view, 2, TARGETS, *SEEN, n_negatives=2)
    assert torch.equal(matrix, before)


def test_sampled_negatives_are_unseen_and_never_the_target():
    n_users, n_items = 12, 30
    rng = np.random.default_rng(2)
    targets = rng.integers(0, n_items, n_users)
    seen = [rng.choice(np.setdiff1d(np.arange(n_items), [t]), 8, replace=False) for t in targets]
    matrix = np.zeros((n_users, n_items))
    for u, items in enumerate(seen):
        matrix[u, items] = 10.0          # any seen item drawn as a negative would outrank the target
        matrix[u, targets[u]] = 1.0      # every unseen item scores 0 < 1
    got = sampled_ranking_metrics(MatrixScorer(matrix), n_users, targets, *csr(seen), ks=(1,),
                                  n_negatives=15)
    np.testing.assert_array_equal(got["rank"], np.ones(n_users))


def test_sampled_with_all_unseen_items_equals_full_ranking():
    rng = np.random.default_rng(4)
    n_users, n_items = 9, 25
    matrix = rng.normal(size=(n_users, n_items))
    targets = rng.integers(0, n_items, n_users)
    seen = csr([rng.choice(n_items, 5, replace=False) for _ in range(n_users)])
    full = full_ranking_metrics(MatrixScorer(matrix), n_users, targets, *seen, ks=(3, 10))
    sampled = sampled_ranking_metrics(MatrixScorer(matrix), n_users, targets, *seen, ks=(3, 10),
                                      n_negatives=1000)
    for name in full:
        np.testing.assert_array_equal(sampled[name], full[name], err_msg=name)


def test_sampled_is_reproducible_by_seed_and_easier_than_full():
    rng = np.random.default_rng(5)
    n_users, n_items = 50, 400
    matrix = rng.normal(size=(n_users, n_items))
    targets = rng.integers(0, n_items, n_users)
    seen = csr([[]] * n_users)
    run = lambda seed: sampled_ranking_metrics(MatrixScorer(matrix), n_users, targets, *seen,
                                               ks=(10,), n_negatives=20, seed=seed)
    np.testing.assert_array_equal(run(0)["rank"], run(0)["rank"])
    assert not np.array_equal(run(0)["rank"], run(1)["rank"])
    full = full_ranking_metrics(MatrixScorer(matrix), n_users, targets, *seen, ks=(10,))
    # ranking among 20 negatives can only improve the target's rank
    assert np.all(run(0)["rank"] <= full["rank"])
    assert run(0)["rank"].max() <= 21


def test_bad_inputs_are_reported():
    scorer = MatrixScorer(MATRIX)
    with pytest.raises(DataError, match="targets"):
        full_ranking_metrics(scorer, 2, [2], *SEEN)
    with pytest.raises(DataError, match="out of range"):
        full_ranking_metrics(scorer, 2, [2, 9], *SEEN)
    with pytest.raises(DataError, match="seen item index"):
        full_ranking_metrics(scorer, 2, TARGETS, *csr([[7], []]))
    with pytest.raises(DataError, match="seen_indptr"):
        full_ranking_metrics(scorer, 2, TARGETS, np.array([0, 1]), np.array([1]))
    with pytest.raises(DataError, match="NaN"):
        full_ranking_metrics(MatrixScorer([[np.nan, 0.0]]), 1, [0], *csr([[]]))
    with pytest.raises(ConfigError, match="ties"):
        full_ranking_metrics(scorer, 2, TARGETS, *SEEN, ties="random")
    with pytest.raises(ConfigError, match="chunk_size"):
        full_ranking_metrics(scorer, 2, TARGETS, *SEEN, chunk_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_gives_the_same_as_cpu():
    rng = np.random.default_rng(6)
    matrix = np.round(rng.normal(size=(20, 60)), 1)
    targets = rng.integers(0, 60, 20)
    seen = csr([rng.choice(60, 6, replace=False) for _ in range(20)])
    cpu = full_ranking_metrics(MatrixScorer(matrix), 20, targets, *seen, chunk_size=8)
    gpu_matrix = torch.as_tensor(matrix, dtype=torch.float32, device="cuda")
    gpu = full_ranking_metrics(lambda u: gpu_matrix[u], 20, targets, *seen, chunk_size=8, device="cuda")
    for name in cpu:
        np.testing.assert_array_equal(gpu[name], cpu[name], err_msg=name)
