"""On a small SASRec run on real ML-100K, the evaluation with two worker threads gives every
user's metrics bit for bit as the one-thread evaluation (the code path before workers existed),
full ranking and sampled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.sequential.dataset import load_sequence_data
from mmrank.sequential.evaluation import evaluate_stage
from mmrank.sequential.sasrec import SASRecRanker

pytestmark = pytest.mark.slow


def test_two_workers_equal_one_thread_on_a_small_ml100k_run(data_dir):
    torch.manual_seed(0)
    split = load_sequence_data(data_dir / "ml-100k").split
    ranker = SASRecRanker(hidden=32, layers=2, heads=2, max_len=50).build(split)
    ranker.fit(split, epochs=1, batch_size=64, seed=0)  # trained weights: scores with a real spread
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = evaluate_stage(ranker, split, "test", sampled_negatives=100)
        torch.set_num_threads(2)
        two = evaluate_stage(ranker, split, "test", sampled_negatives=100)
    finally:
        torch.set_num_threads(threads)
    assert len(one["users"]) == 943
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    # trained, not constant: ranks spread out, and NDCG@10 above a random order's (sum of the
    # first ten discounts over ~1,600 unseen items: 0.0029); one epoch reaches about 0.005
    chance = sum(1 / np.log2(r + 1) for r in range(1, 11)) / (split.n_items - 100)
    assert one["ndcg@10"].mean() > 1.5 * chance and len(np.unique(one["rank"])) > 100
