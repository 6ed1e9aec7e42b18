"""Click logs, click models and weak labels on small generated data (the real-data known answer
is tests/integration/test_clicks_mq2008.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.clicks import MODELS, CascadeModel, PositionBasedModel, read_click_log, write_click_log
from mmrank.clicks.base import load_click_model
from mmrank.clicks.labels import grades_of, relevance_agreement, weak_labels
from mmrank.clicks.simulate import click_probability, power_law_examination, simulate_sessions
from mmrank.data.model import RankingSet
from mmrank.errors import DataError


def graded_set(n_queries: int = 60, per_query: int = 12, seed: int = 0) -> RankingSet:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n_queries * per_query).astype(float)
    return RankingSet(
        query_ids=[f"q{i}" for i in range(n_queries)],
        offsets=np.arange(0, n_queries * per_query + 1, per_query),
        candidate_ids=[f"d{i}" for i in range(n_queries * per_query)],
        labels=labels,
        baseline_scores=labels + rng.normal(0, 1.5, size=labels.shape),
        features={"x": rng.normal(size=(n_queries * per_query, 3)).astype(np.float32)},
    )


@pytest.fixture(scope="module")
def rset():
    return graded_set()


def test_pbm_recovers_a_planted_position_curve_and_a_flat_one(rset):
    for theta in (power_law_examination(8, 1.0), np.full(8, 0.7)):
        log = simulate_sessions(rset, rset.baseline_scores, 40_000, theta, noise=1.0, seed=1)
        model = PositionBasedModel().fit(log)
        assert model.converged_
        # Reported relative to position 1, which is how the truth is given here too.
        assert np.max(np.abs(model.theta_ - theta / theta[0])) < 0.03
        agreement = relevance_agreement(rset, model)
        means = agreement["mean_relevance_by_label"]
        assert means["0"] < means["1"] < means["2"]
        truth = click_probability(np.array([0.0, 1.0, 2.0]), 2.0)
        assert np.allclose([means["0"], means["1"], means["2"]], truth * theta[0], atol=0.06)


def test_pbm_without_position_variety_says_so(rset):
    log = simulate_sessions(rset, rset.baseline_scores, 5_000, power_law_examination(8), noise=0.0, seed=0)
    assert PositionBasedModel().fit(log).position_variety_ == 0.0
    varied = simulate_sessions(rset, rset.baseline_scores, 5_000, power_law_examination(8), noise=1.0, seed=0)
    assert PositionBasedModel().fit(varied).position_variety_ > 0.9


def test_cascade_model_recovers_attractiveness_of_cascade_clicks(rset):
    log = simulate_sessions(rset, rset.baseline_scores, 60_000, np.ones(8), noise=1.0, seed=2, behaviour="cascade")
    per_session = np.add.reduceat(log.clicks, log.offsets[:-1])
    assert per_session.max() == 1  # the cascade user stops at the first click
    model = CascadeModel().fit(log)
    table = model.relevance_table().merge(
        __import__("pandas").DataFrame({"candidate_id": rset.candidate_ids.astype(str), "label": rset.labels}),
        on="candidate_id")
    well_seen = table[model.examinations_ >= 200]
    truth = click_probability(well_seen["label"].to_numpy(), 2.0)
    assert len(well_seen) > 100
    assert np.mean(np.abs(well_seen["relevance"].to_numpy() - truth)) < 0.05
    # The position-based model misreads cascade clicks as a steep position curve: the models differ.
    assert PositionBasedModel().fit(log).theta_[-1] < 0.5


def test_log_round_trips_in_both_formats(tmp_path, rset):
    log = simulate_sessions(rset, rset.baseline_scores, 300, power_law_examination(5), seed=3)
    log.dwell[log.clicks] = 12.5
    for name in ("log.jsonl", "log.parquet"):
        write_click_log(log, tmp_path / name)
        back, report = read_click_log(tmp_path / name)
        assert report.records_read == 300 and report.ok
        assert np.array_equal(back.candidate_ids, log.candidate_ids)
        assert np.array_equal(back.clicks, log.clicks)
        assert np.array_equal(back.positions, log.positions)
        assert np.allclose(np.nan_to_num(back.dwell), np.nan_to_num(log.dwell))


def test_bad_sessions_are_quarantined_with_their_line(tmp_path):
    lines = [
        {"session_id": "a", "query_id": "q", "shown": ["x", "y"], "clicks": ["y"], "dwell": {"y": 40}},
        {"query_id": "q", "shown": ["x", "y"], "clicks": ["z"]},
        {"query_id": "q", "shown": ["x", "x"], "clicks": []},
        {"shown": ["x"], "clicks": []},
        {"query_id": "q", "shown": ["x"], "clicks": ["x"], "dwell": {"x": -1}},
        {"query_id": "q", "shown": [], "clicks": []},
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    log, report = read_click_log(path)
    assert (report.records_in, report.records_read, report.records_quarantined) == (7, 1, 6)
    assert [p.line for p in report.problems] == [2, 3, 4, 5, 6, 7]
    assert "'z' was not shown" in report.problems[0].format()
    assert report.problems[0].format().startswith(f"{path}:2: ")
    assert log.n_sessions == 1 and log.satisfied_clicks(30).sum() == 1 and log.satisfied_clicks(60).sum() == 0
    with pytest.raises(DataError, match=":2: clicked 'z'"):
        read_click_log(path, strict=True)


def test_weak_labels_drop_unshown_candidates_and_grade_by_relevance(rset):
    log = simulate_sessions(rset, rset.baseline_scores, 20_000, power_law_examination(6), noise=0.0, seed=4)
    model = PositionBasedModel().fit(log)
    weak = weak_labels(rset, model, grades=3)
    shown = len(np.unique(log.candidate_ids.astype(str)))
    assert weak.candidates_labelled == shown == weak.rset.n_candidates
    assert weak.candidates_in == rset.n_candidates == 2 * shown  # 12 per query, the fixed top 6 shown
    assert set(np.unique(weak.rset.labels)) <= {0.0, 1.0, 2.0}
    assert list(grades_of(np.array([0.0, 0.3, 0.34, 0.67, 1.0]), 3)) == [0, 0, 1, 2, 2]
    other = graded_set(5, 4, seed=9)
    other.candidate_ids[:] = [f"zz{i}" for i in range(other.n_candidates)]
    with pytest.raises(DataError, match="no candidate"):
        weak_labels(other, model)


def test_models_save_and_load_identically(tmp_path, rset):
    log = simulate_sessions(rset, rset.baseline_scores, 2_000, power_law_examination(5), seed=5)
    for model in (PositionBasedModel().fit(log), CascadeModel().fit(log)):
        model.save(tmp_path / "m.json")
        back = load_click_model(tmp_path / "m.json", MODELS)
        assert type(back) is type(model)
        assert np.allclose(back.relevance_, model.relevance_, atol=1e-6)
        assert back.relevance_table()["candidate_id"].tolist() == model.relevance_table()["candidate_id"].tolist()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a saved click model"):
        load_click_model(tmp_path / "bad.json", MODELS)


def test_cli_fit_and_labels(tmp_path, rset):
    from mmrank.data.formats import write_ranking

    write_ranking(rset, tmp_path / "data.parquet")
    runner = CliRunner()
    res = runner.invoke(app, ["clicks", "simulate", "--data", str(tmp_path / "data.parquet"), "--sessions", "20000",
                              "--positions", "6", "--out", str(tmp_path / "log.jsonl")])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"query_id": "q1", "shown": ["a"], "clicks": ["b"]}\n')
    res = runner.invoke(app, ["clicks", "fit", "--log", str(tmp_path / "log.jsonl"), "--out", str(tmp_path / "pbm.json")])
    assert res.exit_code == 3, res.output  # one session quarantined, the rest fitted
    assert "log.jsonl:20001: clicked 'b' was not shown" in res.output
    assert (tmp_path / "log.jsonl.quarantine.jsonl").exists()
    theta = json.loads((tmp_path / "pbm.json").read_text())["theta"]
    assert np.max(np.abs(np.array(theta) - power_law_examination(6))) < 0.05
    res = runner.invoke(app, ["clicks", "labels", "--model", str(tmp_path / "pbm.json"), "--data",
                              str(tmp_path / "data.parquet"), "--out", str(tmp_path / "weak.parquet"), "--compare"])
    assert res.exit_code == 0, res.output
    assert "Kendall tau-b" in res.output and (tmp_path / "weak.parquet").exists()
    res = runner.invoke(app, ["clicks", "fit", "--log", str(tmp_path / "log.jsonl"), "--model", "dbn", "--out", "x.json"])
    assert res.exit_code == 2 and "--model 'dbn'" in res.output
