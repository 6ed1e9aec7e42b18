"""The report's inputs from a run directory, and what the HTML holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrank.audit import load_policy
from mmrank.audit.result import CheckResult
from mmrank.audit.run_artifacts import read_run_artifacts
from mmrank.calibrate import calibration_report
from mmrank.errors import DataError
from mmrank.report import render, write_report


def _run_dir(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(float)  # calibrated by construction
    (tmp_path / "metrics.json").write_text(json.dumps({"calibration": {"before": calibration_report(p ** 3, y),
                                                                       "after": calibration_report(p, y)}}))
    logs = tmp_path / "logs" / "csv"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train_loss,val_ndcg@10\n0,10,0.9,\n0,10,,0.41\n1,20,0.7,\n1,20,,0.45\n")
    return tmp_path


def test_run_artifacts_read_reliability_after_calibration_and_curves(tmp_path):
    extras = read_run_artifacts(_run_dir(tmp_path))
    rows = [r for r in extras["reliability"] if r["count"]]
    assert len(rows) == 10 and abs(sum(r["count"] for r in rows) - 500) == 0
    assert all(abs(r["mean_p"] - r["positive_rate"]) < 0.2 for r in rows)  # the "after" table, not p**3
    assert extras["training_curves"] == {"train_loss": [[0.0, 0.9], [1.0, 0.7]], "val_ndcg@10": [[0.0, 0.41], [1.0, 0.45]]}
    assert read_run_artifacts(tmp_path / "nothing-here") == {}


def test_a_loss_logged_every_step_becomes_one_point_per_epoch(tmp_path):
    logs = tmp_path / "logs" / "csv"
    logs.mkdir(parents=True)
    (logs / "metrics.csv").write_text("epoch,step,train_loss,valid_ndcg@10\n0,1,6.0,\n0,2,5.0,\n0,2,,0.05\n"
                                      "1,3,4.5,\n1,4,3.5,\n1,4,,0.08\n")
    curves = read_run_artifacts(tmp_path)["training_curves"]
    assert curves == {"train_loss": [[0.0, 5.5], [1.0, 4.0]], "valid_ndcg@10": [[0.0, 0.05], [1.0, 0.08]]}


def test_html_has_verdict_first_every_threshold_and_the_plots_it_has_data_for(tmp_path):
    extras = read_run_artifacts(_run_dir(tmp_path))
    extras["metrics"] = {"metric": "ndcg@10", "model": {"mean": 0.5, "low": 0.45, "high": 0.55},
                         "baseline": {"mean": 0.4, "low": 0.35, "high": 0.45}, "delta": {"mean": 0.1, "low": 0.05, "high": 0.15}}
    checks = [CheckResult("split_overlap", "FAIL", 0.25, 0.0, "FAIL if shared share > 0", advice="split by query"),
              CheckResult.skip("attention_share", "no attention")]
    audit = {"verdict": "NO_GO", "reasons": ["split_overlap FAIL: split by query"], "checks": [c.to_dict() for c in checks],
             "policy": load_policy(), "extras": extras, "meta": {}}
    html = render(audit)
    assert html.index("NO_GO") < html.index("split_overlap") < html.index("<h2>Plots")
    assert "FAIL if shared share &gt; 0" in html and ">0.25<" in html and "no attention" in html
    for title in ("ndcg@10: model and baseline with CI95", "reliability diagram", "training curves"):
        assert title in html
    assert "forest plot" not in html  # no per-domain data, no empty plot
    (tmp_path / "audit.json").write_text(json.dumps(audit))
    out = write_report(tmp_path)
    assert out.read_text() == html


def test_report_of_a_folder_without_audit_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="mmrank audit"):
        write_report(tmp_path)


def test_significance_row_shows_delta_and_its_ci_and_the_header_names_both_systems():
    sig = CheckResult("significance", "PASS", 0.031, 0.0, "PASS if Δ's CI95 low > 0",
                      evidence={"delta_ci": {"mean": 0.031, "low": 0.012, "high": 0.05}})
    audit = {"verdict": "GO", "reasons": [], "checks": [sig.to_dict()], "policy": load_policy(), "extras": {},
             "meta": {"model": "CoTRR", "model_run": "runs/cotrr", "baseline": "LambdaMART", "baseline_spec": "lambdamart"}}
    html = render(audit)
    assert "Δ +0.0310 [CI95 +0.0120, +0.0500]" in html
    assert "model CoTRR (runs/cotrr) vs baseline LambdaMART (lambdamart)" in html
    assert html.index("id='systems'") < html.index("id='verdict'")
