"""`mmrank evaluate` (``evaluate_rerank``) refuses data the run trained on; a flag allows it, marked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmrank.data.formats import write_ranking
from mmrank.errors import DataError
from rerank_cli import MAIN, env
from rerank_support import known_function_set


@pytest.fixture(scope="module")
def lambdamart_run(tmp_path_factory):
    from mmrank.config import config_from_dict
    from mmrank.train.rerank_run import train_rerank

    tmp = tmp_path_factory.mktemp("prov_run")
    paths = {name: str(write_ranking(known_function_set(n, seed=seed), tmp / f"{name}.parquet"))
             for name, seed, n in (("train", 1, 30), ("valid", 2, 10), ("test", 3, 10))}
    cfg = config_from_dict({"data": paths, "calibration": {"method": "none"},
                            "model": {"kind": "lambdamart", "params": {"n_estimators": 20, "num_threads": 1}}})
    train_rerank(cfg, tmp / "run")
    return tmp / "run", paths


def test_run_records_provenance_and_evaluate_records_the_overlap(lambdamart_run, tmp_path):
    from mmrank.train.rerank_run import evaluate_rerank

    run, paths = lambdamart_run
    assert (run / "provenance.json").is_file() and (run / "provenance.safetensors").is_file()
    clean = evaluate_rerank(run, paths["test"], out=tmp_path / "clean")
    assert clean["trained_on_overlap"]["trained_on"] is False
    with pytest.raises(DataError, match="--allow-trained-on"):
        evaluate_rerank(run, paths["valid"], out=tmp_path / "valid")  # validation data was seen in training too
    allowed = evaluate_rerank(run, paths["train"], out=tmp_path / "allowed", allow_trained_on=True)
    saved = json.loads((tmp_path / "allowed" / "metrics.json").read_text())
    assert saved["trained_on_overlap"]["affected"] == 30 and saved["trained_on_overlap"]["warning"].startswith("ALLOWED")
    assert allowed["trained_on_overlap"]["per_split"]["train"]["counts"]["query_ids"] == 30


def test_old_run_without_provenance_says_unknown(lambdamart_run, tmp_path):
    import shutil

    from mmrank.train.rerank_run import evaluate_rerank

    run, paths = lambdamart_run
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for name in ("provenance.json", "provenance.safetensors"):
        (old / name).unlink()
    result = evaluate_rerank(old, paths["train"], out=tmp_path / "o")
    assert result["trained_on_overlap"].startswith("unknown")


def test_cli_refuses_the_training_file_with_one_line_and_exit_2(lambdamart_run, tmp_path):
    run, paths = lambdamart_run
    proc = subprocess.run([sys.executable, "-c", MAIN, "evaluate", str(run), "--data", paths["train"],
                           "--out", str(tmp_path / "e")], capture_output=True, text=True, timeout=300, env=env())
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "30 of 30 queries were in the run's training data" in lines[0]
    assert lines[0].removeprefix("error: ").startswith(paths["train"]) and "Traceback" not in proc.stderr
