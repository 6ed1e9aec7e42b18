"""Shared fixtures: where the real data lives, and tiny generated sets for fast unit tests.

Real data sets are never copied into the repo (licences); tests read them from
``$MMRANK_DATA_DIR`` (default ``<repo>/../shared/data``) and skip with a clear reason when
that folder is absent.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mmrank.data.model import RankingSet

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("MMRANK_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"real data not found at {d}: set MMRANK_DATA_DIR to the shared data folder")
    return d


@pytest.fixture(scope="session")
def mq2008_folds(data_dir: Path, tmp_path_factory) -> Path:
    """The five standard MQ2008 folds, rebuilt once per test session into a temp folder."""
    out = tmp_path_factory.mktemp("mq2008")
    subprocess.run(["sh", str(data_dir / "ltr" / "make_folds.sh"), str(out)], check=True)
    return out / "MQ2008"


def make_toy_ranking_set(n_queries: int = 20, per_query: int = 8, dims: dict | None = None, seed: int = 0) -> RankingSet:
    """A small random RankingSet (random labels, random features): for shape and plumbing tests."""
    rng = np.random.default_rng(seed)
    dims = dims or {"image": 4, "text": 3}
    n = n_queries * per_query
    return RankingSet(
        query_ids=[f"q{i}" for i in range(n_queries)],
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"c{j}" for j in range(n)],
        labels=rng.integers(0, 3, n),
        features={k: rng.normal(size=(n, d)) for k, d in dims.items()},
    )


@pytest.fixture
def toy_set() -> RankingSet:
    return make_toy_ranking_set()
