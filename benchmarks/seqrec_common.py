"""Shared by the sequential-recommendation benchmarks (p3, p5, p7): reading RecBole's log and a
run's per-epoch history."""

from __future__ import annotations

import json
import re
from pathlib import Path

_EPOCH_TRAIN = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
_EPOCH_EVAL = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s, valid_score: ([\d.]+)\]")


def recbole_epochs(log_path: str | Path) -> list[dict]:
    """Per epoch of a RecBole log: train seconds, eval seconds, valid NDCG@10 (its valid_score),
    and the cumulative wall seconds (train + eval) at the end of the epoch."""
    text = Path(log_path).read_text(errors="replace")
    train = {int(e): float(t) for e, t in _EPOCH_TRAIN.findall(text)}
    rows, total = [], 0.0
    for e, t, score in _EPOCH_EVAL.findall(text):
        e = int(e)
        total += train.get(e, 0.0) + float(t)
        rows.append({"epoch": e + 1, "train_seconds": train.get(e), "eval_seconds": float(t),
                     "valid_ndcg@10": float(score), "cumulative_seconds": round(total, 2)})
    return rows


def run_history(run_dir: str | Path) -> list[dict]:
    """Per-epoch rows a sequential run stored in model.json (seconds since training started)."""
    return json.loads((Path(run_dir) / "model.json").read_text())["history"]


def first_reaching(rows: list[dict], key: str, target: float, time_key: str) -> dict | None:
    for r in rows:
        if r[key] >= target:
            return r
    return None
