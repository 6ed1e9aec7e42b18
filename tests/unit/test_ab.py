"""A/B analysis: planted effects are found, absent ones are not; the server logs what the analysis
needs (assignment, both orders in shadow, outcomes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mmrank.ab import Rules, analyse, read_ab_log
from mmrank.ab.events import ABLog
from mmrank.ab.simulate import simulate_ab_log
from mmrank.cli import app
from mmrank.errors import ConfigError
from mmrank.serve.app import ServeConfig, create_app
from mmrank.serve.model_slot import ModelSlot, load_run
from mmrank.serve.policy import RerankPolicy
from mmrank.serve.rollout import in_rollout
from serve_support import step5_query, train_run


def parsed(tmp_path, events, name="ab.jsonl") -> ABLog:
    path = tmp_path / name
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    log, report = read_ab_log(path)
    assert report.ok
    return log


def test_planted_lift_is_detected_and_shipped(tmp_path):
    log = parsed(tmp_path, simulate_ab_log(40_000, ctr=(0.10, 0.12), seed=1))
    report = analyse(log, Rules(0.5, mde=0.2))
    clicked = report.metrics[0]
    assert clicked.metric == "clicked" and clicked.ci[0] > 0 and clicked.pvalue < 0.01
    assert clicked.ci[0] < 0.02 < clicked.ci[1]  # the planted +0.02 is inside the CI
    assert not report.srm["flagged"]
    assert report.verdict == "ship", report.reason


def test_no_lift_is_not_detected(tmp_path):
    log = parsed(tmp_path, simulate_ab_log(20_000, ctr=(0.10, 0.10), seed=2))
    report = analyse(log, Rules(0.5, mde=0.2))
    lo, hi = report.metrics[0].ci
    assert lo < 0 < hi
    assert report.verdict == "stop_no_effect", report.reason  # planned size reached, no effect: keep control
    small = analyse(parsed(tmp_path, simulate_ab_log(2_000, ctr=(0.10, 0.12), seed=3)), Rules(0.5, mde=0.05))
    assert small.verdict == "continue"  # too early to say either way


def test_planted_sample_ratio_mismatch_is_flagged_and_blocks_the_verdict(tmp_path):
    log = parsed(tmp_path, simulate_ab_log(20_000, expected_share=0.5, observed_share=0.52, ctr=(0.10, 0.12), seed=4))
    report = analyse(log, Rules(0.5, mde=0.2))
    assert report.srm["flagged"] and report.srm["pvalue"] < 1e-4
    assert report.verdict == "invalid"  # even with a real lift in the data: nothing can be trusted
    fine = analyse(parsed(tmp_path, simulate_ab_log(20_000, expected_share=0.1, seed=5)), Rules(0.1))
    assert not fine.srm["flagged"] and abs(fine.srm["observed_treatment_share"] - 0.1) < 0.01


def test_guardrails_roll_back(tmp_path):
    faulty = analyse(parsed(tmp_path, simulate_ab_log(10_000, ctr=(0.10, 0.12), fault_rate=0.05, seed=6)), Rules(0.5, mde=0.2))
    assert faulty.guardrails["fallback"]["breached"] and faulty.verdict == "rollback"
    assert faulty.guardrails["fallback"]["reasons"] == {"timeout": faulty.guardrails["fallback"]["faults"]}
    slow = analyse(parsed(tmp_path, simulate_ab_log(10_000, ctr=(0.10, 0.12), latency_ms=(5.0, 25.0), seed=7)),
                   Rules(0.5, mde=0.2, max_latency_increase_ms=10.0))
    assert slow.guardrails["latency"]["breached"] and slow.verdict == "rollback"
    worse = analyse(parsed(tmp_path, simulate_ab_log(20_000, ctr=(0.12, 0.09), seed=8)), Rules(0.5))
    assert worse.verdict == "rollback" and "significantly worse" in worse.reason


def test_shadow_log_reports_agreement_not_a_live_verdict(tmp_path):
    report = analyse(parsed(tmp_path, simulate_ab_log(4_000, shadow=True, seed=9)), Rules(0.5))
    assert report.verdict == "shadow" and report.shadow["queries"] > 1500
    assert 0.0 < report.shadow["overlap@10"] <= 1.0  # random model orders of the same 10 candidates
    assert report.shadow["same_top1"] < 0.3


def test_bad_lines_are_quarantined_and_bad_rules_refused(tmp_path):
    events = simulate_ab_log(50, seed=10)
    path = tmp_path / "ab.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"event": "assignment", "arm": "x"}\nnope\n')
    with path.open("ab") as f:
        f.write(b'{"event": "outcome", "query_id": "\xff"}\n')  # not UTF-8: said so, not "not valid JSON"
    log, report = read_ab_log(path)
    assert report.records_in == len(events) + 3 and report.records_quarantined == 3
    assert report.problems[0].line == len(events) + 1
    assert [p.message for p in report.problems[1:]] == ["not valid JSON (expected ident at line 1 column 2)",
                                                       "line is not UTF-8 text"]
    with pytest.raises(ConfigError):
        analyse(log, Rules(1.5))
    res = CliRunner().invoke(app, ["ab", "analyze", "--log", str(path), "--expected-share", "0.5"])
    assert res.exit_code == 3 and "verdict:" in res.output  # analysed, but lines were set aside


def test_server_logs_assignments_shadow_orders_and_outcomes(tmp_path):
    run = train_run(tmp_path / "runs" / "lm")
    rng = np.random.default_rng(0)
    for shadow in (False, True):
        log_path = tmp_path / f"ab_{shadow}.jsonl"
        config = ServeConfig(policy=RerankPolicy(rollout_percent=30.0, shadow=shadow), ab_log=log_path)
        client = TestClient(create_app(ModelSlot(load_run(run)), config))
        queries = [step5_query(rng, f"u{i}", 8, labels=False) for i in range(150)]
        for q in queries:
            answer = client.post("/rerank", json=q).json()
            if int(q["query_id"][1:]) % 3 == 0:
                first = answer["candidates"][0]["candidate_id"]
                assert client.post("/ab/outcome", json={"query_id": q["query_id"], "clicks": [first]}).status_code == 200
        assert client.post("/ab/outcome", json={"clicks": ["x"]}).status_code == 422
        assert 'route="/ab/outcome"' in client.get("/metrics").text  # its own label, not "other"
        log, report = read_ab_log(log_path)
        assert report.ok and len(log.assignments) == 150 and len(log.outcomes) == 50
        arms = log.assignments.set_index("query_id")["arm"]
        assert all((arms[q["query_id"]] == "treatment") == in_rollout(q["query_id"], 30.0) for q in queries)
        treated = log.assignments[log.assignments["arm"] == "treatment"]
        assert treated["model_order"].map(lambda m: m is not None and len(m) == 8).all()
        if shadow:  # users saw the original order; the model's order is in the log
            assert (treated["status"] == "shadow").all()
            assert all(s == [c["candidate_id"] for c in q["candidates"]]
                       for s, q in zip(treated["shown"], [q for q in queries if in_rollout(q["query_id"], 30.0)]))
        result = analyse(log, Rules(0.3, mde=None))
        assert not result.srm["flagged"] and result.orphan_outcomes == 0
        assert result.verdict == ("shadow" if shadow else result.verdict)
