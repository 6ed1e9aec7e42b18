"""`mmrank demo`: the whole pipeline on the embedded default data, in well under two minutes.

load → validate → split → train LambdaMART and CoTRR (each through the same path as
`mmrank train`, so each gets a full run directory) → evaluate → audit CoTRR against LambdaMART →
HTML report. The embedded data is LightGBM's lambdarank example (MIT), shipped inside the
package so the demo needs no download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from mmrank.config import CalibrationConfig, DataConfig, ModelConfig, RerankConfig, TrainSettings
from mmrank.data.formats import read_ranking, write_ranking
from mmrank.data.model import RankingSet
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

DEMO_METRICS = ("ndcg@1", "ndcg@5", "ndcg@10", "map", "mrr")
# The example's features are sparse ids 1..300 (see resources/lightgbm_lambdarank/NOTICE.md); fixing
# the width keeps train and test aligned even if a high id never occurs in one of them.
DEMO_FEATURES = 300

# Small settings on purpose: the demo must finish in under two minutes on two CPU cores, audit
# (which retrains CoTRR several times for the permutation control) included.
DEMO_MODELS: dict[str, tuple[str, dict, dict]] = {
    "lambdamart": ("lambdamart", {"n_estimators": 300, "num_threads": 1}, {}),
    "cotrr": (
        "cotrr",
        {"d_model": 32, "n_layers": 1, "n_heads": 4, "ffn_mult": 2, "dropout": 0.1},
        {"max_epochs": 15, "patience": 4, "batch_queries": 16, "lr": 0.003, "deterministic": True, "threads": 1},
    ),
}


def embedded_data_dir() -> Path:
    """The packaged folder holding LightGBM's lambdarank example (``rank.train``, ``rank.test``)."""
    return Path(str(resources.files("mmrank") / "resources" / "lightgbm_lambdarank"))


@dataclass
class DemoData:
    """The demo's validated splits, the read reports of the embedded files and the split's fingerprint."""

    train: RankingSet
    valid: RankingSet
    test: RankingSet
    reports: list[ReadReport]
    split_fingerprint: dict


@dataclass
class DemoResult:
    """What a demo run produced: its data, test metrics and fit seconds per model, run
    directories, and the audit and HTML report when the audit ran."""

    data: DemoData
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model name -> metric -> value
    seconds: dict[str, float] = field(default_factory=dict)
    run_dirs: dict[str, Path] = field(default_factory=dict)
    audit: object | None = None  # mmrank.audit.AuditReport
    report_path: Path | None = None


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


def demo_config(name: str, data_files: dict[str, Path], seed: int) -> RerankConfig:
    """The training config of demo model ``name`` (a ``DEMO_MODELS`` key): its small settings,
    the given parquet split files, ``seed`` (also LambdaMART's), no progress bar and
    temperature calibration.

    Raises:
        KeyError: ``name`` is not a demo model."""
    kind, params, train = DEMO_MODELS[name]
    if kind == "lambdamart":
        params = {**params, "seed": seed}
    return RerankConfig(
        name=f"demo_{name}",
        data=DataConfig(**{k: str(v) for k, v in data_files.items()}, format="parquet"),
        model=ModelConfig(kind=kind, params=params),
        train=TrainSettings(**train, seed=seed, progress=False),
        calibration=CalibrationConfig(method="temperature"),
    )


def run_demo(out: Path, seed: int = 0, progress: Callable[[str], None] | None = None, with_audit: bool = True) -> DemoResult:
    """Train, evaluate and (optionally) audit every demo model; everything is written under ``out``."""
    from mmrank.train.rerank_run import train_rerank

    say = progress or (lambda msg: None)
    data = load_demo_data(seed)
    result = DemoResult(data)
    files = {part: out / "data" / f"{part}.parquet" for part in ("train", "valid", "test")}
    for part, rset in (("train", data.train), ("valid", data.valid), ("test", data.test)):
        write_ranking(rset, files[part])
    for name in DEMO_MODELS:
        say(f"training {name}")
        run_dir = out / name
        metrics = train_rerank(demo_config(name, files, seed), run_dir)
        result.metrics[name] = {m: metrics["test"][m] for m in DEMO_METRICS}
        result.seconds[name] = metrics["fit_seconds"]
        result.run_dirs[name] = run_dir
    if with_audit:
        result.audit, result.report_path = audit_demo(result, out / "audit", seed, say)
    return result


def audit_demo(result: DemoResult, out: Path, seed: int, say: Callable[[str], None]):
    """Audit the CoTRR run against the LambdaMART run on the demo's test queries."""
    from functools import partial

    from mmrank import runs
    from mmrank.audit import audit
    from mmrank.models.registry import build_ranker
    from mmrank.report import write_report

    d = result.data
    kind, params, train = DEMO_MODELS["cotrr"]
    model = runs.load_model(result.run_dirs["cotrr"])
    baseline = runs.load_model(result.run_dirs["lambdamart"])
    report = audit(
        model, baseline, train=d.train, valid=d.valid, test=d.test,
        make_model=partial(build_ranker, kind, params),
        fit_options={"settings": {**train, "seed": seed, "progress": False}},
        run_dir=result.run_dirs["cotrr"],
        progress=lambda name: say(f"audit: {name}"),
    )
    report.meta.update({"model_run": str(result.run_dirs["cotrr"]), "baseline_run": str(result.run_dirs["lambdamart"])})
    out.mkdir(parents=True, exist_ok=True)
    report.save(out / "audit.json")
    return report, write_report(out, report.to_dict())
