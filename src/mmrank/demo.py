"""`mmrank demo`: the whole pipeline on the embedded default data, in well under two minutes.

load → validate → split → LambdaMART (+ the other rankers when available) → evaluate → a run
directory and a metric table. The embedded data is LightGBM's lambdarank example (MIT), shipped
inside the package so the demo needs no download.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mmrank.data.formats import read_ranking
from mmrank.data.model import RankingSet
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

DEMO_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "map", "mrr")
# The example's features are sparse ids 1..300 (see resources/lightgbm_lambdarank/NOTICE.md); fixing
# the width keeps train and test aligned even if a high id never occurs in one of them.
DEMO_FEATURES = 300


def embedded_data_dir() -> Path:
    return Path(str(resources.files("mmrank") / "resources" / "lightgbm_lambdarank"))


@dataclass
class DemoData:
    train: RankingSet
    valid: RankingSet
    test: RankingSet
    reports: list[ReadReport]
    split_fingerprint: dict


@dataclass
class DemoResult:
    data: DemoData
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model name -> metric -> value
    seconds: dict[str, float] = field(default_factory=dict)
    run_dirs: dict[str, Path] = field(default_factory=dict)


def load_demo_data(seed: int = 0) -> DemoData:
    """Read + validate the embedded files, then hold out 20% of the training queries for validation."""
    from mmrank.data.splits import query_grouped_split

    d = embedded_data_dir()
    train_all, rep_train = read_ranking(d / "rank.train", "libsvm", n_features=DEMO_FEATURES, modality="features")
    test, rep_test = read_ranking(d / "rank.test", "libsvm", n_features=DEMO_FEATURES, modality="features")
    for rep in (rep_train, rep_test):
        if not rep.ok:
            raise DataError(f"embedded demo data has {rep.records_quarantined} bad records", path=rep.path, hint="reinstall mmrank")
    split = query_grouped_split(train_all, fractions=(0.8, 0.2, 0.0), seed=seed)
    train, valid, _ = split.apply(train_all)
    return DemoData(train, valid, test, [rep_train, rep_test], split.fingerprint)


def run_demo(out: Path, seed: int = 0, progress=None) -> DemoResult:
    """Train and evaluate every demo model, writing one run directory per model under ``out``."""
    from mmrank.metrics import evaluate
    from mmrank.models.baselines import LambdaMART

    data = load_demo_data(seed)
    result = DemoResult(data)
    models = {"LambdaMART": LambdaMART(seed=seed, num_threads=2)}
    for name, model in models.items():
        if progress:
            progress(f"training {name}")
        t0 = time.perf_counter()
        model.fit(data.train, data.valid)
        result.seconds[name] = time.perf_counter() - t0
        scores = model.score(data.test)
        result.metrics[name] = evaluate(data.test, scores, DEMO_METRICS)
        run_dir = out / name.lower()
        model.save(run_dir)
        result.run_dirs[name] = run_dir
    return result
