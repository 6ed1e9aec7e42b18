"""``map_chunks`` runs chunks in single-threaded workers, in order, re-raising errors, leaving the
caller's torch threads alone, and works in a forked child. (Bit-identical full-ranking metrics with
workers: tests/unit/test_full_ranking.py.)"""

from __future__ import annotations

import pytest
import torch

from mmrank.errors import ConfigError
from mmrank.sequential.full_ranking import full_ranking_metrics
from mmrank.torch_workers import map_chunks


def test_bad_worker_count_is_a_config_error():
    with pytest.raises(ConfigError, match="workers"):
        full_ranking_metrics(lambda users: torch.zeros(len(users), 3), 2, [0, 1], [0, 0, 0], [], workers=0)


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
