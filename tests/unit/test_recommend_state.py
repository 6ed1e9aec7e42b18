"""`mmrank recommend` from what the run keeps (RUN/recommend): the cached answer equals the live
one, needs no torch and no data, is rebuilt when the model changes; "no titles" without an item
file; kind changes of presets drop the other kind's params; training prints no Lightning tips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.config import config_from_dict, load_config
from mmrank.sequential.recommend import recommend
from mmrank.sequential.recommend_state import RecommendState
from mmrank.sequential.run import train_sequential

SRC = str(Path(__file__).resolve().parents[2] / "src")
PRESET = Path(__file__).resolve().parents[2] / "configs" / "ml100k_sasrec.yaml"


def write_data(folder: Path, titles: bool) -> Path:
    folder.mkdir(parents=True)
    rows = "".join(f"u{u}\ti{(u + j) % 12}\t{j}\n" for u in range(20) for j in range(6))
    (folder / f"{folder.name}.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + rows)
    if titles:
        (folder / f"{folder.name}.item").write_text("item_id:token\ttitle:token\n" + "".join(f"i{i}\tMovie {i}\n" for i in range(12)))
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("rec")
    data = write_data(root / "shop", titles=True)
    cfg = config_from_dict({"task": "sequential", "data": {"path": str(data)},
                            "model": {"kind": "sasrec", "params": {"hidden": 8, "layers": 1, "heads": 1, "max_len": 6}},
                            "train": {"epochs": 2, "batch_size": 8, "threads": 1, "progress": False},
                            "evaluate": {"sampled_negatives": 0}})
    train_sequential(cfg, root / "run")
    return root


def test_cached_answer_equals_the_live_one_and_the_cache_needs_no_torch(run):
    r = run / "run"
    state = RecommendState.load(r)
    assert state is not None and state.cached_top(5) is None  # nothing cached before the first call
    first = recommend(r, "u3", k=5)
    assert state.cached_top(5) is not None
    live = recommend(r, "u3", k=5, data=run / "shop")  # re-reads the data: the old path
    assert [x["item_id"] for x in first] == [x["item_id"] for x in live]
    assert np.allclose([x["score"] for x in first], [x["score"] for x in live], atol=1e-5)
    assert first[0]["title"] == f"Movie {first[0]['item_id'][1:]}"
    seen = {f"i{(3 + j) % 12}" for j in range(6)}
    assert not seen & {x["item_id"] for x in first} and len(first) == 5
    code = (f"import sys; sys.path.insert(0, {SRC!r}); from mmrank.sequential.recommend import recommend; "
            f"rows = recommend({str(r)!r}, 'u7', 3); print(len(rows), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["3", "False"]


def test_a_changed_model_is_never_answered_from_a_stale_cache(run):
    r = run / "run"
    recommend(r, "u1", k=3)
    state = RecommendState.load(r)
    assert state.cached_top(3) is not None
    model = r / "model.safetensors"
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert state.cached_top(3) is None  # the stamp no longer matches
    assert len(recommend(r, "u1", k=3)) == 3 and state.cached_top(3) is not None


def test_cli_unknown_user_and_no_titles(run, tmp_path):
    r = CliRunner().invoke(app, ["recommend", str(run / "run"), "--user", "nobody"])
    assert r.exit_code == 2 and "unknown user id 'nobody'" in r.output
    data = write_data(tmp_path / "plain", titles=False)
    cfg = config_from_dict({"task": "sequential", "data": {"path": str(data)}, "model": {"kind": "popularity"},
                            "train": {"progress": False}, "evaluate": {"sampled_negatives": 0}})
    train_sequential(cfg, tmp_path / "pop")
    r = CliRunner().invoke(app, ["recommend", str(tmp_path / "pop"), "--user", "u2", "-k", "3"])
    assert r.exit_code == 0, r.output
    assert "no titles" in r.output and "title" not in r.output.split("no titles")[0]
    rows = recommend(tmp_path / "pop", "u2", 3)
    assert all(x["title"] is None for x in rows)


def test_kind_change_on_a_preset_drops_the_other_kinds_params_with_a_notice():
    notices: list[str] = []
    cfg = load_config(PRESET, ["model.kind=popularity"], notices)
    assert cfg.model.kind == "popularity" and cfg.model.params == {}
    assert notices and "dropped model.params" in notices[0] and "hidden" in notices[0]
    notices = []
    cfg = load_config(PRESET, ["model.kind=most_recent", "model.params.window=50"], notices)
    assert cfg.model.params == {"window": 50} and "window" not in notices[0]
    notices = []
    assert load_config(PRESET, ["train.epochs=1"], notices).model.kind == "sasrec" and notices == []


def test_training_prints_no_litlogger_tip_and_no_pytree_warning(tmp_path):
    data = write_data(tmp_path / "d", titles=False)
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": "default", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mmrank", "train", str(PRESET), "--out", str(tmp_path / "run"),
                           "--set", f"data.path={data}", "--set", "train.epochs=1", "--set", "model.params.hidden=8",
                           "--set", "evaluate.sampled_negatives=0"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    for noise in ("litlogger", "LitLogger", "_pytree", "LeafSpec", "Tip:"):
        assert noise not in text, noise
    assert "split: leave-one-out in time" in proc.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["split"]["name"] == "leave_one_out"
