"""On real data (MQ2008 Fold1, the ML-100K reranking task) a trained CoTRR / V2 ranks every query
the same on the fused scoring path as on the network's own forward: top-10 order identical on
>= 99.9% of queries, nDCG@10 equal to 1e-6 (the gate every faster scoring path must pass to be
the default; BENCHMARKS.md, P1, applies it to bf16 too)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrank.data.formats import load_ranking
from mmrank.data.model import concat_ranking_sets
from mmrank.models.cotrr import CoTRR
from mmrank.models.fused_scoring import ranking_agreement
from mmrank.models.fusion import FusionV2
from rerank_support import ml100k_task_from_reference_embeddings

pytestmark = pytest.mark.slow

# The configs' architecture (configs/mq2008_cotrr.yaml, mq2008_fusion.yaml), one epoch: trained
# weights, not random ones, so scores have the spread a real model gives them.
PARAMS = dict(d_model=64, n_heads=4, ffn_mult=2, dropout=0.1, list_context=True)
ONE_EPOCH = {"loss": "combined", "lr": 1e-3, "batch_queries": 16, "max_epochs": 1, "patience": 1, "seed": 0,
             "progress": False, "threads": 1}


def assert_same_rankings(model, rset) -> None:
    r = ranking_agreement(model.score_module(rset), model.score(rset), rset.offsets, rset.labels, k=10)
    print(f"{type(model).__name__}: {r}")
    assert r["queries"] == rset.n_queries
    assert r["share_identical"] >= 0.999
    assert r["max_abs_ndcg_diff"] <= 1e-6


@pytest.fixture(scope="module")
def mq2008(mq2008_folds):
    fold = mq2008_folds / "Fold1"
    return [load_ranking(fold / f"{p}.txt", "libsvm", n_features=46) for p in ("train", "vali", "test")]


@pytest.mark.parametrize("kind", [CoTRR, FusionV2])
def test_mq2008_rankings_identical_on_the_fused_path(mq2008, kind):
    torch.manual_seed(0)
    train, valid, test = mq2008
    extra = {"n_layers": 4, "entropy_weight": 0.01, "reconstruction_weight": 0.1} if kind is FusionV2 else {"n_layers": 2}
    model = kind(**PARAMS, **extra).fit(train, valid, ONE_EPOCH)
    assert_same_rankings(model, concat_ranking_sets([train, valid, test]))  # all 784 queries


def test_ml100k_task_rankings_identical_on_the_fused_path(data_dir):
    torch.manual_seed(0)
    sets = ml100k_task_from_reference_embeddings(data_dir)
    model = CoTRR(**PARAMS, n_layers=2).fit(sets["train"], sets["valid"], ONE_EPOCH)
    everything = concat_ranking_sets([sets["train"], sets["valid"], sets["test"]])
    assert everything.n_queries > 900
    assert np.std(model.score(everything)) > 0.05  # a trained model that separates candidates
    assert_same_rankings(model, everything)
