"""Acceptance on real data: auditing a MQ2008 fold whose test file repeats training queries is
NO_GO with split_overlap FAIL and exit code 4; the honest fold has no leakage FAIL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mmrank.cli.audit_cmds  # noqa: F401  (registers `audit` and `report` on the app)
from mmrank.cli.app import app

LEAKAGE = ("split_overlap", "near_duplicates", "temporal_leakage", "feature_label_leakage", "label_permutation_control")


@pytest.fixture(scope="module")
def audit_inputs(mq2008_folds: Path, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("audit_mq2008")
    fold = mq2008_folds / "Fold1"
    train_lines = (fold / "train.txt").read_text().splitlines(keepends=True)
    leaky = work / "test_with_train_queries.txt"
    leaky.write_text((fold / "test.txt").read_text() + "".join(train_lines[:1500]))  # whole queries, in file order
    config = work / "model.yaml"
    config.write_text("model:\n  kind: lambdamart\n  params:\n    n_estimators: 150\n    num_leaves: 15\n    num_threads: 1\n")
    policy = work / "policy.yaml"
    policy.write_text("significance:\n  bootstrap_resamples: 2000\n  permutation_resamples: 2000\n")
    return {"fold": fold, "leaky": leaky, "config": config, "policy": policy, "work": work}


def run_audit(inputs: dict, test: Path, out: Path):
    args = ["audit", "--train", str(inputs["fold"] / "train.txt"), "--valid", str(inputs["fold"] / "vali.txt"),
            "--test", str(test), "--model", "lambdamart", "--config", str(inputs["config"]),
            "--baseline", "lambdamart", "--policy", str(inputs["policy"]), "--jobs", "1", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    return result, json.loads((out / "audit.json").read_text()) if (out / "audit.json").exists() else None


def test_repeated_training_queries_are_no_go_with_exit_4(audit_inputs):
    result, report = run_audit(audit_inputs, audit_inputs["leaky"], audit_inputs["work"] / "leaky")
    assert result.exit_code == 4, result.output
    assert report["verdict"] == "NO_GO"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["split_overlap"]["status"] == "FAIL"
    assert checks["split_overlap"]["evidence"]["shared_query_ids"] > 0
    assert "split_overlap FAIL" in result.output and "NO_GO" in result.output
    assert (audit_inputs["work"] / "leaky" / "report.html").stat().st_size > 10_000


def test_honest_fold_has_no_leakage_fail(audit_inputs):
    result, report = run_audit(audit_inputs, audit_inputs["fold"] / "test.txt", audit_inputs["work"] / "honest")
    assert result.exit_code in (0, 3), result.output
    checks = {c["name"]: c for c in report["checks"]}
    for name in LEAKAGE:
        assert checks[name]["status"] != "FAIL", checks[name]
    assert checks["split_overlap"]["value"] == 0.0
    assert checks["feature_label_leakage"]["value"] < 0.9  # MQ2008's best single feature is far from perfect
    # `mmrank report DIR` rebuilds the HTML from audit.json alone
    html = audit_inputs["work"] / "honest" / "report.html"
    html.unlink()
    rebuilt = CliRunner().invoke(app, ["report", str(audit_inputs["work"] / "honest")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert report["verdict"] in html.read_text()


def test_bad_input_exits_2(audit_inputs, tmp_path):
    from mmrank.cli import main  # the entry point maps MmrankError to exit code 2
    import sys

    bad = tmp_path / "bad.txt"
    bad.write_text("not a letor line\n")
    argv = sys.argv
    sys.argv = ["mmrank", "audit", "--train", str(bad), "--test", str(bad), "--model", "lambdamart",
                "--baseline", "lambdamart", "--out", str(tmp_path / "o")]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    assert exc.value.code == 2


def test_a_trained_run_directory_can_be_audited(audit_inputs, data_dir, monkeypatch, tmp_path):
    """`--model RUN`: the model is loaded, not retrained; its calibration data reach the report."""
    import mmrank.cli.train_cmds  # noqa: F401  (registers `train`)

    monkeypatch.setenv("MMRANK_DATA_DIR", str(data_dir))
    repo = Path(__file__).resolve().parents[2]
    run = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", str(repo / "configs" / "mq2008_lambdamart.yaml"), "--set",
                                       "model.params.n_estimators=60", "--set", "model.params.num_threads=1", "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    # the run was trained on S1-S3 (= Fold1/train.txt) and validated on S4; audit it on S5 (= Fold1/test.txt)
    fold = audit_inputs["fold"]
    result = CliRunner().invoke(app, ["audit", "--train", str(fold / "train.txt"), "--test", str(fold / "test.txt"), "--model", str(run),
                                      "--baseline", "lambdamart", "--policy", str(audit_inputs["policy"]), "--jobs", "1",
                                      "--out", str(tmp_path / "audit")])
    assert result.exit_code in (0, 3, 4), result.output
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["meta"]["model_spec"] == str(run) and report["meta"]["model"] == "LambdaMART"
    assert [r for r in report["extras"]["reliability"] if r["count"]]  # from the run's calibration
    assert "reliability diagram" in (tmp_path / "audit" / "report.html").read_text()
