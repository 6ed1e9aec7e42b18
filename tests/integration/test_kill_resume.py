"""kill -9 during `mmrank train`, then `--resume`: the final metrics equal an uninterrupted run's
(CPU, --deterministic)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from mmrank.data.formats import write_ranking
from mmrank.train.checkpoint_io import load_state
from rerank_cli import MAIN, env, run_cli
from rerank_support import known_function_set

pytestmark = pytest.mark.slow
EPOCHS = 6


@pytest.fixture
def config(tmp_path):
    paths = {}
    for name, seed, n in (("train", 1, 160), ("valid", 2, 20), ("test", 3, 20)):
        paths[name] = str(write_ranking(known_function_set(n, per_query=20, seed=seed), tmp_path / f"{name}.parquet"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "data": paths,
        "model": {"kind": "cotrr", "params": {"d_model": 32, "n_heads": 4, "n_layers": 2, "mlp_hidden": 32, "dropout": 0.2}},
        "train": {"max_epochs": EPOCHS, "patience": EPOCHS, "batch_queries": 8, "progress": False, "threads": 1},
    }))
    return path


def _epoch_of_last(run) -> int:
    ckpt = run / "logs" / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        return -1
    try:
        return int(load_state(ckpt)["epoch"])
    except Exception:  # caught between write and rename on a slow disk: try again
        return -1


def test_kill_then_resume_matches_uninterrupted(tmp_path, config):
    run_cli(["train", str(config), "--out", str(tmp_path / "straight"), "--deterministic"])

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", MAIN, "train", str(config), "--out", str(killed), "--deterministic"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    deadline = time.time() + 600
    while _epoch_of_last(killed) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed: make the task bigger"
    assert not (killed / "metrics.json").exists()
    killed_at = _epoch_of_last(killed)
    assert 1 <= killed_at < EPOCHS - 1

    run_cli(["train", str(config), "--out", str(killed), "--resume", "--deterministic"])
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    print(f"killed after epoch {killed_at}; test nDCG@10 straight {straight['test']['ndcg@10']:.6f}, resumed {resumed['test']['ndcg@10']:.6f}")
    assert resumed["history"] == straight["history"]
    assert resumed["valid"] == straight["valid"] and resumed["test"] == straight["test"]
