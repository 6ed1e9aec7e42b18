"""Run directories: `mmrank train` writes every file, load_model reads the model back without
Lightning, and a corrupted weight file is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmrank.data.formats import write_ranking
from mmrank.errors import DataError
from mmrank.runs import load_calibrator, load_model, load_metrics
from rerank_support import known_function_set

RUN_FILES = {"config.yaml", "model.safetensors", "model.json", "calibrator.json", "metrics.json", "predictions.parquet", "fingerprint.json", "logs"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from mmrank.config import config_from_dict
    from mmrank.train.rerank_run import train_rerank

    tmp = tmp_path_factory.mktemp("run")
    paths = {}
    for name, seed, n in (("train", 1, 30), ("valid", 2, 10), ("test", 3, 10)):
        paths[name] = str(write_ranking(known_function_set(n, seed=seed), tmp / f"{name}.parquet"))
    cfg = config_from_dict({
        "data": paths,
        "model": {"kind": "cotrr", "params": {"d_model": 16, "n_heads": 2, "n_layers": 1, "mlp_hidden": 16}},
        "train": {"max_epochs": 3, "progress": False, "threads": 1, "lr": 3e-3},
        "distill": {"enabled": True},
    })
    metrics = train_rerank(cfg, tmp / "run")
    return tmp / "run", metrics, paths


def test_every_file_is_written(trained_run):
    run, metrics, paths = trained_run
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert (run / "logs" / "checkpoints" / "last.ckpt").is_file()
    assert (run / "logs" / "csv" / "metrics.csv").is_file()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["max_epochs"] == 3 and cfg["model"]["params"]["d_model"] == 16
    fp = json.loads((run / "fingerprint.json").read_text())
    assert set(fp["splits"]) == {"train", "valid", "test", "combined"}
    assert fp["splits"]["train"]["files"][0]["path"] == paths["train"] and len(fp["splits"]["train"]["files"][0]["sha256"]) == 64
    assert fp["seed"] == 0 and fp["packages"]["torch"]
    preds = pd.read_parquet(run / "predictions.parquet")
    assert set(preds["split"]) == {"train", "valid", "test"} and preds["probability"].between(0, 1).all()
    m = load_metrics(run)
    assert len(m["history"]) == 3 and 0 < m["test"]["ndcg@10"] <= 1
    assert m["calibration"]["after"]["ece"] < m["calibration"]["before"]["ece"]
    assert m["distill"]["student_latency_per_100"]["median_ms"] > 0


def test_load_model_scores_like_the_run_and_needs_no_lightning(trained_run):
    run, _, paths = trained_run
    preds = pd.read_parquet(run / "predictions.parquet")
    code = (
        "import sys, numpy as np; from mmrank.runs import load_model; from mmrank.data.formats import load_ranking;"
        f"m = load_model({str(run)!r}); s = m.score(load_ranking({paths['test']!r}));"
        "print('lightning' in sys.modules, float(np.sum(s)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False"
    assert float(out[1]) == pytest.approx(preds[preds.split == "test"]["score"].sum(), rel=1e-5)
    assert load_calibrator(run).method == "temperature"


def test_corrupt_weights_are_refused(trained_run, tmp_path):
    run, _, _ = trained_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("logs"))
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        load_model(copy)
    with pytest.raises(DataError, match="not a finished run"):
        load_model(tmp_path)


def test_evaluate_writes_metrics_next_to_a_baseline(trained_run):
    from mmrank.train.rerank_run import evaluate_rerank

    run, _, paths = trained_run
    result = evaluate_rerank(run, paths["test"], baseline="heuristic")
    assert set(result["model"]) >= {"ndcg@1", "ndcg@5", "ndcg@10"}
    assert result["baseline"]["name"] == "heuristic" and 0 <= result["comparison"]["ndcg@10"]["p_value"] <= 1
    out = Path(result["out"])
    assert json.loads((out / "metrics.json").read_text())["queries"] == 10
    assert len(pd.read_parquet(out / "per_query.parquet")) == 10
