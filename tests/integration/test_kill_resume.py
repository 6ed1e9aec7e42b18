"""kill -9 during `mmrank train`, then `--resume`: the final metrics equal an uninterrupted run's
(CPU, --deterministic) — for a reranker and for a sequential recommender, which train through the
same Trainer factory. Also: two sequential runs with the same seed give identical metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
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


@pytest.fixture
def sequential_config(tmp_path):
    """A RecBole folder of 400 users reading items in a noisy "next = current + 1" order."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "seq"
    folder.mkdir()
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(400):
        start = int(rng.integers(1, 80))
        for t in range(int(rng.integers(8, 30))):
            item = (start + t) % 80 + 1 if rng.random() > 0.2 else int(rng.integers(1, 81))
            rows.append(f"u{u}\ti{item}\t{1000 * u + t}")
    (folder / "seq.inter").write_text("\n".join(rows) + "\n")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "task": "sequential",
        "data": {"path": str(folder)},
        "model": {"kind": "sasrec", "params": {"hidden": 32, "layers": 2, "heads": 2, "max_len": 20, "dropout": 0.3}},
        "train": {"epochs": EPOCHS, "patience": EPOCHS, "batch_size": 16, "lr": 0.003, "threads": 1, "progress": False},
        "evaluate": {"ks": [10], "sampled_negatives": 20},
    }))
    return path


def _epoch_of_last(ckpt: Path) -> int:
    if not ckpt.exists():
        return -1
    try:
        return int(load_state(ckpt)["epoch"])
    except Exception:  # caught between write and rename on a slow disk: try again
        return -1


def _kill_after_first_epochs(config: Path, run: Path, ckpt: Path) -> int:
    """Start `mmrank train`, kill -9 it once its checkpoint has passed epoch 1; the epoch reached."""
    proc = subprocess.Popen([sys.executable, "-c", MAIN, "train", str(config), "--out", str(run), "--deterministic"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
    deadline = time.time() + 600
    while _epoch_of_last(ckpt) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed: make the task bigger"
    assert not (run / "metrics.json").exists()
    killed_at = _epoch_of_last(ckpt)
    assert 1 <= killed_at < EPOCHS - 1
    return killed_at


def _untimed(metrics: dict) -> dict:
    """Metrics without wall-clock fields (the only thing a resumed run may differ in)."""
    if isinstance(metrics, dict):
        return {k: _untimed(v) for k, v in metrics.items() if "seconds" not in k}
    if isinstance(metrics, list):
        return [_untimed(v) for v in metrics]
    return metrics


def test_kill_then_resume_matches_uninterrupted(tmp_path, config):
    run_cli(["train", str(config), "--out", str(tmp_path / "straight"), "--deterministic"])
    killed = tmp_path / "killed"
    killed_at = _kill_after_first_epochs(config, killed, killed / "logs" / "checkpoints" / "last.ckpt")
    run_cli(["train", str(config), "--out", str(killed), "--resume", "--deterministic"])
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    print(f"killed after epoch {killed_at}; test nDCG@10 straight {straight['test']['ndcg@10']:.6f}, resumed {resumed['test']['ndcg@10']:.6f}")
    assert resumed["history"] == straight["history"]
    assert resumed["valid"] == straight["valid"] and resumed["test"] == straight["test"]


def test_sequential_kill_then_resume_matches_uninterrupted(tmp_path, sequential_config):
    run_cli(["train", str(sequential_config), "--out", str(tmp_path / "straight"), "--deterministic"])
    killed = tmp_path / "killed"
    killed_at = _kill_after_first_epochs(sequential_config, killed, killed / "logs" / "train" / "checkpoints" / "last.ckpt")
    run_cli(["train", str(sequential_config), "--out", str(killed), "--resume", "--deterministic"])
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    print(f"killed after epoch {killed_at}; test NDCG@10 straight {straight['test']['ndcg@10']:.6f}, "
          f"resumed {resumed['test']['ndcg@10']:.6f}")
    assert _untimed(resumed) == _untimed(straight)
    epochs = [json.loads(line)["epoch"] for line in (killed / "logs" / "train" / "epochs.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))  # no epoch logged twice after the resume


def test_sequential_same_seed_gives_identical_metrics(tmp_path, sequential_config):
    for name in ("a", "b"):
        run_cli(["train", str(sequential_config), "--out", str(tmp_path / name), "--deterministic",
                 "--set", "train.epochs=2"])
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert _untimed(a) == _untimed(b)
    c_dir = tmp_path / "c"
    run_cli(["train", str(sequential_config), "--out", str(c_dir), "--deterministic", "--set", "train.epochs=2", "--seed", "1"])
    c = json.loads((c_dir / "metrics.json").read_text())
    assert c["valid"]["ndcg@10"] != a["valid"]["ndcg@10"]  # the seed really changes the run
