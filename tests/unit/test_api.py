"""The top-level verbs: ``mmrank.fit`` / ``load_run`` / ``evaluate`` / ``evaluate_run`` for both
tasks, and ``mmrank recommend`` refusing a reranker run with one line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

import mmrank
from mmrank.data.formats import write_ranking
from rerank_support import known_function_set


@pytest.fixture(scope="module")
def rerank_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    paths = {n: str(write_ranking(known_function_set(q, per_query=10, seed=s), tmp / f"{n}.parquet"))
             for n, s, q in (("train", 1, 40), ("valid", 2, 10), ("test", 3, 10))}
    config = tmp / "lm.yaml"
    config.write_text(yaml.safe_dump({"data": paths, "model": {"kind": "lambdamart", "params": {"n_estimators": 20, "num_threads": 1}},
                                      "calibration": {"method": "none"}}))
    metrics = mmrank.fit(config, out=tmp / "run")
    return tmp / "run", paths, metrics


def test_fit_load_run_and_evaluate_a_reranker(rerank_run):
    run_dir, paths, metrics = rerank_run
    run = mmrank.load_run(run_dir)
    assert (run.kind, run.task) == ("lambdamart", "rerank")
    test = mmrank.load_ranking(paths["test"])
    assert mmrank.evaluate(test, run.model.score(test), ["ndcg@10"])["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])
    assert mmrank.evaluate_run(run_dir, paths["test"], metrics=["ndcg@10"], allow_trained_on=False)["model"]["ndcg@10"] \
        == pytest.approx(metrics["test"]["ndcg@10"])


def test_load_run_and_evaluate_run_read_a_sequential_run(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = [f"u{u}\t{(u + t) % 5 + 1}\t{t}" for u in range(5) for t in range(5)]  # every item in some training part, none twice
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    config = tmp_path / "pop.yaml"
    config.write_text(yaml.safe_dump({"task": "sequential", "data": {"path": str(folder)}, "model": {"kind": "popularity"},
                                      "evaluate": {"sampled_negatives": 0}}))
    metrics = mmrank.fit(config, out=tmp_path / "run")
    run = mmrank.load_run(tmp_path / "run")
    assert (run.kind, run.task) == ("popularity", "sequential")
    assert mmrank.evaluate_run(tmp_path / "run")["test"]["ndcg@10"] == metrics["test"]["ndcg@10"]


def test_recommend_on_a_reranker_run_is_one_line_and_exit_2(rerank_run):
    run_dir = rerank_run[0]
    proc = subprocess.run([sys.executable, "-m", "mmrank", "recommend", str(run_dir), "--user", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a sequential recommender" in lines[0] and "Traceback" not in proc.stderr


def test_evaluate_refuses_the_runs_own_training_file_unless_allowed(rerank_run):
    run_dir, paths, _ = rerank_run
    cmd = [sys.executable, "-m", "mmrank", "evaluate", str(run_dir), "--data", paths["train"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "--allow-trained-on" in proc.stderr
    allowed = subprocess.run(cmd + ["--allow-trained-on"], capture_output=True, text=True, timeout=120)
    assert allowed.returncode == 0, allowed.stderr
    assert "ALLOWED" in allowed.stdout


def test_the_letor_convention_is_used_and_stated_by_training_and_evaluation(rerank_run, tmp_path):
    run_dir, paths, _ = rerank_run
    config = run_dir.parent / "lm.yaml"
    metrics = mmrank.fit(config, out=tmp_path / "letor", sets=["evaluate.convention=letor"])
    assert metrics["metric_convention"] == "letor"
    test = mmrank.load_ranking(paths["test"])
    scores = mmrank.load_run(tmp_path / "letor").model.score(test)
    assert metrics["test"]["ndcg@10"] == pytest.approx(mmrank.evaluate(test, scores, ["ndcg@10"], convention="letor")["ndcg@10"])
    again = mmrank.evaluate_run(tmp_path / "letor", paths["test"], metrics=["ndcg@10"])
    assert again["metric_convention"] == "letor" and again["model"]["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"])


def test_evaluating_a_sequential_run_on_events_it_trained_on_is_refused(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    rows = [f"u{u}\t{(u + t) % 5 + 1}\t{t}" for u in range(5) for t in range(6)]  # each test item also read first
    (folder / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    config = tmp_path / "pop.yaml"
    config.write_text(yaml.safe_dump({"task": "sequential", "data": {"path": str(folder)}, "model": {"kind": "popularity"},
                                      "evaluate": {"sampled_negatives": 0}}))
    mmrank.fit(config, out=tmp_path / "run")
    with pytest.raises(mmrank.DataError, match="--allow-trained-on"):
        mmrank.evaluate_run(tmp_path / "run")
    allowed = mmrank.evaluate_run(tmp_path / "run", allow_trained_on=True)
    assert allowed["trained_on_overlap"]["trained_on"] is True
