"""Acceptance on real MQ2008 (fold 1): `mmrank train configs/mq2008_cotrr.yaml` then `mmrank
evaluate RUN --data S5 --baseline lambdamart` prints nDCG@1/5/10 next to LambdaMART's; the
temperature calibrator fitted on validation lowers ECE on the held-out test fold.

Small on purpose (d_model 32, 2 epochs): it checks the whole path on real data, not quality
(benchmarks/p4_mq2008_quality.py measures that)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_cli import run_cli

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mq2008") / "run"
    run_cli(["train", str(REPO / "configs" / "mq2008_cotrr.yaml"), "--out", str(out),
             "--set", "model.params.d_model=32", "--set", "model.params.n_layers=1",
             "--set", "train.max_epochs=2", "--set", "train.progress=false"],
            MMRANK_DATA_DIR=str(data_dir), OMP_NUM_THREADS="2")
    return out


def test_train_writes_a_run_that_beats_random(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "cotrr" and len(metrics["history"]) == 2
    # Random order on MQ2008 fold 1 test is about 0.60 nDCG@10 (with "one" for queries without relevant docs).
    assert metrics["test"]["ndcg@10"] > 0.70


def test_calibration_lowers_ece_on_held_out_mq2008(run_dir):
    cal = json.loads((run_dir / "metrics.json").read_text())["calibration"]
    before, after = cal["before"]["ece"], cal["after"]["ece"]
    print(f"MQ2008 fold 1 test ECE: uncalibrated {before:.4f} -> temperature-scaled {after:.4f}")
    assert cal["evaluated_on"] == "test" and after < before


def test_evaluate_prints_ndcg_next_to_lambdamart(run_dir, data_dir):
    proc = run_cli(["evaluate", str(run_dir), "--data", str(data_dir / "ltr" / "MQ2008" / "S5.txt"), "--baseline", "lambdamart"],
                   MMRANK_DATA_DIR=str(data_dir), OMP_NUM_THREADS="2")
    print(proc.stdout)
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if "lambdamart" in line)
    assert "cotrr" in header
    for m in ("ndcg@1", "ndcg@5", "ndcg@10"):
        row = next(line for line in lines if line.strip("│ ").startswith(m + " "))
        assert len([c for c in row.split("│") if c.strip()]) >= 5  # metric, cotrr, lambdamart, difference, p
    result = json.loads((run_dir / "eval" / "S5" / "metrics.json").read_text())
    assert result["queries"] == 156 and result["baseline"]["name"] == "lambdamart"
    assert result["baseline"]["ndcg@10"] > 0.75  # LambdaMART on fold 1 test: ~0.82
