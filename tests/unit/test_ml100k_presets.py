"""The ML-100K reranking presets work from a clean checkout: `mmrank data features` builds the task,
then every preset (`configs/ml100k_rerank_*.yaml`) trains on it and its run evaluates — on a tiny
ML-100K-shaped folder (the real task takes minutes per model: benchmarks/p4_ml100k_rerank.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_features_cli import tiny_data  # noqa: F401  (the tiny ML-100K-shaped folder fixture)
from typer.testing import CliRunner

import mmrank.cli.features_cmds  # noqa: F401  (registers the commands)
import mmrank.cli.train_cmds  # noqa: F401
from mmrank.cli.app import app
from mmrank.config import load_config

REPO = Path(__file__).resolve().parents[2]
PRESETS = ("lambdamart", "cotrr", "fusion", "heuristic")


@pytest.fixture(scope="module")
def features(tiny_data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("ml100k_features")
    result = CliRunner().invoke(app, ["data", "features", "--dataset", "ml100k", "--data-dir", str(tiny_data),
                                      "--out", str(out), "--no-cache", "--image-encoder", "none"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_preset_reads_the_built_task_trains_and_evaluates(name, features, tmp_path, monkeypatch):
    monkeypatch.setenv("MMRANK_FEATURES_DIR", str(features))
    preset = REPO / "configs" / f"ml100k_rerank_{name}.yaml"
    cfg = load_config(preset)
    assert cfg.data.test == f"{features}/rerank/test.parquet" and cfg.model.kind == name
    run = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", str(preset), "--set", "train.max_epochs=1", "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((run / "metrics.json").read_text())
    task = json.loads((features / "rerank" / "task.json").read_text())
    assert task["protocol"] == "per_user" and task["counts"]["test"]["queries"] == 15
    assert 0 < metrics["test"]["ndcg@10"] <= 1 and np.isfinite(metrics["valid"]["ndcg@10"])
    evaluated = CliRunner().invoke(app, ["evaluate", str(run), "--data", str(features / "rerank" / "test.parquet"),
                                         "--baseline", "heuristic", "--out", str(tmp_path / "eval")])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["queries"] == 15 and result["model"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])


def test_presets_fail_before_training_without_the_built_features(tmp_path, monkeypatch):
    monkeypatch.setenv("MMRANK_FEATURES_DIR", str(tmp_path / "not_built"))
    result = CliRunner().invoke(app, ["train", str(REPO / "configs" / "ml100k_rerank_cotrr.yaml"), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "data file not found" in str(result.exception)
