"""Chunks of users scored in several worker threads give exactly (bit for bit) the metrics of the
one-thread loop, ties and sampled negatives included; ``map_chunks`` keeps the caller's threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.errors import ConfigError
from mmrank.sequential.full_ranking import full_ranking_metrics, sampled_ranking_metrics
from mmrank.torch_workers import map_chunks


def scorer(matrix: np.ndarray):
    m = torch.as_tensor(matrix, dtype=torch.float32)
    return lambda users: m[users]


@pytest.mark.parametrize("fn", [full_ranking_metrics, sampled_ranking_metrics])
def test_workers_give_the_one_thread_metrics_bit_for_bit(fn):
    rng = np.random.default_rng(0)
    n_users, n_items = 57, 80
    matrix = np.round(rng.normal(size=(n_users, n_items)), 1)  # rounding makes ties
    targets = rng.integers(0, n_items, n_users)
    lists = [rng.choice(n_items, rng.integers(0, 12), replace=False) for _ in range(n_users)]
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
    indices = np.concatenate(lists).astype(np.int64)
    kw = {"n_negatives": 15, "seed": 4} if fn is sampled_ranking_metrics else {}
    serial = fn(scorer(matrix), n_users, targets, indptr, indices, ks=(1, 5, 10), chunk_size=5, **kw)
    parallel = fn(scorer(matrix), n_users, targets, indptr, indices, ks=(1, 5, 10), chunk_size=5, workers=3, **kw)
    assert serial.keys() == parallel.keys()
    for name in serial:
        np.testing.assert_array_equal(parallel[name], serial[name], err_msg=name)
    assert len(np.unique(serial["rank"])) > 10  # a real spread of ranks, not a constant


def test_bad_worker_count_is_a_config_error():
    with pytest.raises(ConfigError, match="workers"):
        full_ranking_metrics(scorer(np.zeros((2, 3))), 2, [0, 1], [0, 0, 0], [], workers=0)


def test_map_chunks_keeps_order_errors_and_the_callers_threads():
    threads = torch.get_num_threads()
    seen_threads = map_chunks(lambda c: (c, torch.get_num_threads()), range(6), workers=3)
    assert [c for c, _ in seen_threads] == list(range(6))
    assert {t for _, t in seen_threads} == {1}  # workers run torch single-threaded
    assert torch.get_num_threads() == threads

    def boom(c):
        if c == 4:
            raise ValueError("chunk 4")
        return c

    with pytest.raises(ValueError, match="chunk 4"):
        map_chunks(boom, range(6), workers=2)


def test_a_forked_child_gets_working_pools():
    import multiprocessing as mp

    map_chunks(lambda c: c, range(4), workers=2)  # the parent has a pool now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(_in_child).get(timeout=60)  # an inherited pool would hang here
    assert result == [0, 2, 4, 6]


def _in_child():
    return map_chunks(lambda c: 2 * c, range(4), workers=2)
