"""k-fold evaluation (mmrank.crossval, `mmrank evaluate --folds K`) for rerankers and recommenders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import mmrank.cli.train_cmds  # noqa: F401  (registers `evaluate`)
from mmrank.cli.app import app
from mmrank.crossval import cross_validate
from mmrank.data.io_parquet import write_parquet
from mmrank.errors import ConfigError
from mmrank.sequential.folds import fold_of_users
from rerank_support import known_function_set
from sequence_support import chain_interactions


@pytest.fixture()
def rerank_config(tmp_path):
    files = {}
    for name, seed, n in (("train", 0, 30), ("valid", 1, 10), ("test", 2, 10)):
        files[name] = str(write_parquet(known_function_set(n, seed=seed), tmp_path / f"{name}.parquet"))
    cfg = {"task": "rerank", "data": {**files, "format": "parquet"},
           "model": {"kind": "lambdamart", "params": {"n_estimators": 20, "num_threads": 1, "min_data_in_leaf": 5}},
           "calibration": {"method": "none"}, "evaluate": {"metrics": ["ndcg@10", "ndcg@5"]}}
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_rerank_folds_test_every_query_once_and_compare_paired(rerank_config, tmp_path):
    out = tmp_path / "cv"
    report = cross_validate(rerank_config, 3, out, baseline="heuristic", seed=0)
    assert report["systems"]["model"]["ndcg@10"]["k"] == 3
    tested = [pd.read_parquet(out / "data" / f"fold{f}" / "test.parquet")["query_id"].unique() for f in range(3)]
    all_ids = np.concatenate(tested)
    assert len(all_ids) == len(set(all_ids)) == 50  # 30 + 10 + 10 queries, each tested once
    for f in range(3):  # a fold never trains or validates on its test queries
        seen = set(pd.read_parquet(out / "data" / f"fold{f}" / "train.parquet")["query_id"]) | set(
            pd.read_parquet(out / "data" / f"fold{f}" / "valid.parquet")["query_id"])
        assert not seen & set(tested[f])
    c = report["comparison"]["ndcg@10"]
    model, base = report["systems"]["model"]["ndcg@10"], report["systems"]["baseline"]["ndcg@10"]
    assert len(c["per_fold_difference"]) == 3
    assert c["difference_mean"] == pytest.approx(model["mean"] - base["mean"])
    # Labels are a known function of the image modality: LambdaMART beats the heuristic (which
    # falls back to the noise baseline_scores) on every fold, and the pooled interval says so.
    assert min(c["per_fold_difference"]) > 0 and c["pooled_units_ci95"][0] > 0
    assert json.loads((out / "crossval.json").read_text())["comparison"]["ndcg@10"] == c
    # A rerun — here through the CLI — reads the finished folds instead of retraining them.
    stamp = (out / "model" / "fold0" / "model.json").stat().st_mtime_ns
    res = CliRunner().invoke(app, ["evaluate", str(rerank_config), "--folds", "3", "--baseline", "heuristic",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    flat = "".join(res.output.split())  # rich wraps the table to the runner's width
    assert "3-fold" in flat and f"{c['difference_mean']:+.4f}" in flat and "crossval.json" in flat
    assert (out / "model" / "fold0" / "model.json").stat().st_mtime_ns == stamp


def write_recbole(folder, inter):
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{t}" for u, i, t in zip(inter.user_ids, inter.item_ids, inter.timestamps)]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n")
    items = sorted(set(map(str, inter.item_ids)))  # the catalogue: every item is ranked
    (folder / f"{folder.name}.item").write_text("item_id:token\n" + "\n".join(items) + "\n")


def test_sequential_user_folds_evaluate_every_user_once(tmp_path):
    inter = chain_interactions(n_users=60)
    write_recbole(tmp_path / "chain", inter)
    cfg = {"task": "sequential", "data": {"path": str(tmp_path / "chain")},
           "model": {"kind": "most_recent", "params": {"window": 50}}, "evaluate": {"sampled_negatives": 0}}
    (tmp_path / "mr.yaml").write_text(yaml.safe_dump(cfg))
    report = cross_validate(tmp_path / "mr.yaml", 4, tmp_path / "cv", baseline="popularity", seed=1)
    users = []
    for f in range(4):
        df = pd.read_parquet(tmp_path / "cv" / "model" / f"fold{f}" / "predictions.parquet")
        users.append(set(df[df.stage == "test"].user_id))
    assert sum(len(u) for u in users) == len(set().union(*users)) == 60
    folds = fold_of_users([f"u{i}" for i in range(60)], 4, seed=1)
    assert all(folds[u] == f for f, us in enumerate(users) for u in us)
    assert report["comparison"]["ndcg@10"]["pooled_units"] == 60
    with pytest.raises(ConfigError):
        cross_validate(tmp_path / "mr.yaml", 1, tmp_path / "cv1")
    with pytest.raises(ConfigError):
        cross_validate(tmp_path / "mr.yaml", 2, tmp_path / "cv2", baseline="lambdamart")
