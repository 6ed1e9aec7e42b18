"""Batch rerank of a JSONL file: top-M reranked by the real model, the tail in order, bad lines
quarantined with path:line, every good query written, atomic output, bounded memory."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmrank.cli.app import app
from mmrank.errors import DataError
from mmrank.models.baselines import HeuristicBaseline
from mmrank.serve.batch import rerank_file
from mmrank.serve.policy import RerankPolicy
from mmrank.serve.model_slot import load_run
from mmrank.serve.records import ranking_set_of
from serve_support import assert_permutation, step5_query, train_run

import mmrank.cli.serve_cmds  # noqa: F401  (registers rerank/serve until cli/__init__ imports it)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("batch") / "run", seed=0)


def write_lines(path: Path, lines: list) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


def read_out(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_top_m_reranked_by_the_model_rest_in_order(run_dir, tmp_path):
    rng = np.random.default_rng(0)
    queries = [step5_query(rng, f"q{i}", n) for i, n in enumerate([30, 5, 20, 21, 1])]
    src = write_lines(tmp_path / "scored.jsonl", queries)
    summary = rerank_file(load_run(run_dir).ranker, src, tmp_path / "out.jsonl", RerankPolicy(top_m=20), chunk_size=2)
    out = read_out(tmp_path / "out.jsonl")
    assert summary.queries_written == 5 and summary.quarantined == 0 and summary.status == {"reranked": 5}
    assert not (tmp_path / "out.jsonl.quarantine.jsonl").exists()
    model = load_run(run_dir).ranker
    for q, o in zip(queries, out):
        assert o["query_id"] == q["query_id"] and (o["status"], o["reason"]) == ("reranked", "ok")
        assert_permutation(q, o)
        m = min(20, len(q["candidates"]))
        scores = model.score(ranking_set_of(q))[:m]  # LambdaMART scores each candidate on its own
        want = [q["candidates"][i]["candidate_id"] for i in np.argsort(-scores, kind="stable")]
        want += [c["candidate_id"] for c in q["candidates"][m:]]
        assert [c["candidate_id"] for c in o["candidates"]] == want
        assert [c["score"] for c in o["candidates"][:m]] == pytest.approx(sorted(scores, reverse=True))
        assert all(c["score"] is None for c in o["candidates"][m:])
        # every input field of a candidate is kept
        by_id = {c["candidate_id"]: c for c in q["candidates"]}
        assert all(by_id[c["candidate_id"]]["image_features"] == c["image_features"] for c in o["candidates"])


def test_bad_lines_are_quarantined_with_path_line_and_good_ones_all_written(run_dir, tmp_path):
    rng = np.random.default_rng(1)
    good = [step5_query(rng, f"g{i}", 8) for i in range(6)]
    dup = step5_query(rng, "dup", 3)
    dup["candidates"][1]["candidate_id"] = dup["candidates"][0]["candidate_id"]
    lines = [good[0], b"{not json", good[1], b"", b'{"query_id": "x", "candidates": []}', good[2],
             b'{"query_id": "n", "candidates": [{"candidate_id": "a", "raw_score": NaN, "image_features": [1]}]}',
             good[3], b"\xff\xfe not utf8", dup, b"[1, 2]", good[4], good[5]]
    src = write_lines(tmp_path / "in.jsonl", lines)
    q_path = tmp_path / "bad.jsonl"
    summary = rerank_file(load_run(run_dir).ranker, src, tmp_path / "out.jsonl", RerankPolicy(top_m=5),
                          quarantine_path=q_path, chunk_size=4)
    out = read_out(tmp_path / "out.jsonl")
    assert [o["query_id"] for o in out] == [g["query_id"] for g in good]
    for g, o in zip(good, out):
        assert_permutation(g, o)
    bad = read_out(q_path)
    assert [b["line"] for b in bad] == [2, 5, 7, 9, 10, 11]
    assert all(b["error"].startswith(f"{src}:{b['line']}: ") for b in bad)
    reasons = [b["reason"] for b in bad]
    assert "not valid JSON" in reasons[0] and "empty query" in reasons[1]
    assert "not valid JSON" in reasons[2] and "NaN" in bad[2]["hint"]
    assert "UTF-8" in reasons[3] and "duplicate candidate id" in reasons[4] and "JSON object" in reasons[5]
    assert bad[0]["record"] == "{not json"
    assert (summary.lines_in, summary.queries_written, summary.quarantined) == (12, 6, 6)


class FailsOn:
    """Raises when a given query is in the call: the batch must isolate that query."""

    kind = "fails_on"

    def __init__(self, bad_qid: str) -> None:
        self.bad_qid = bad_qid

    def score(self, rset):
        if self.bad_qid in set(rset.query_ids):
            raise ValueError(f"cannot score {self.bad_qid}")
        return rset.features["image"][:, 0].astype(float)


def test_a_query_the_model_fails_on_falls_back_alone(tmp_path):
    rng = np.random.default_rng(2)
    queries = [step5_query(rng, f"q{i}", 6) for i in range(5)]
    src = write_lines(tmp_path / "in.jsonl", queries)
    rerank_file(FailsOn("q2"), src, tmp_path / "out.jsonl", RerankPolicy(), chunk_size=5)
    out = read_out(tmp_path / "out.jsonl")
    assert [(o["status"], o["reason"]) for o in out] == [("reranked", "ok")] * 2 + [("fallback", "model_error")] + [("reranked", "ok")] * 2
    assert "cannot score q2" in out[2]["detail"]
    assert [c["candidate_id"] for c in out[2]["candidates"]] == [c["candidate_id"] for c in queries[2]["candidates"]]
    for q, o in zip(queries, out):
        assert_permutation(q, o)


def test_shadow_keeps_the_order_and_records_the_model_order(run_dir, tmp_path):
    rng = np.random.default_rng(3)
    queries = [step5_query(rng, f"s{i}", 7) for i in range(3)]
    src = write_lines(tmp_path / "in.jsonl", queries)
    ranker = load_run(run_dir).ranker
    rerank_file(ranker, src, tmp_path / "shadow.jsonl", RerankPolicy(shadow=True))
    rerank_file(ranker, src, tmp_path / "live.jsonl", RerankPolicy())
    for q, s, live in zip(queries, read_out(tmp_path / "shadow.jsonl"), read_out(tmp_path / "live.jsonl")):
        assert s["status"] == "shadow"
        assert [c["candidate_id"] for c in s["candidates"]] == [c["candidate_id"] for c in q["candidates"]]
        assert s["model_order"] == [c["candidate_id"] for c in live["candidates"]]


def test_output_is_atomic_a_failed_run_leaves_the_old_file(tmp_path):
    rng = np.random.default_rng(4)
    src = write_lines(tmp_path / "in.jsonl", [step5_query(rng, f"q{i}", 4) for i in range(10)])
    out = tmp_path / "out.jsonl"
    out.write_text("previous result\n")
    seen = []

    def crash_midway(nbytes):
        seen.append(nbytes)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rerank_file(HeuristicBaseline(), src, out, RerankPolicy(), chunk_size=2, progress=crash_midway)
    assert out.read_text() == "previous result\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temp files left
    with pytest.raises(DataError, match="overwrite the input"):
        rerank_file(HeuristicBaseline(), src, src, RerankPolicy())


def test_memory_stays_bounded_as_the_file_grows(tmp_path):
    """Peak traced memory for 10x the lines stays about the same: nothing grows with the file."""
    rng = np.random.default_rng(5)
    line = json.dumps(step5_query(rng, "q", 12, dims={"image": 16, "text": 16})).encode()
    peaks = {}
    for n in (40, 400):
        src = tmp_path / f"in{n}.jsonl"
        src.write_bytes(b"\n".join(line.replace(b'"q"', f'"q{i}"'.encode(), 1) for i in range(n)) + b"\n")
        tracemalloc.start()
        rerank_file(HeuristicBaseline(), src, tmp_path / f"out{n}.jsonl", RerankPolicy(top_m=10), chunk_size=16)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert sum(1 for _ in open(tmp_path / f"out{n}.jsonl")) == n
    assert peaks[400] < 1.5 * peaks[40], peaks


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 9), st.integers(0, 10**6)), min_size=1, max_size=8),
       st.integers(1, 6), st.integers(1, 4))
def test_every_line_is_written_or_quarantined_and_every_answer_is_a_permutation(tmp_path_factory, spec, top_m, chunk):
    """Random files mixing good lines, broken JSON, empty queries and a model that fails on some."""
    d = tmp_path_factory.mktemp("prop")
    lines, kinds = [], []
    for i, (kind, n, seed) in enumerate(spec):
        q = step5_query(np.random.default_rng(seed), f"p{i}" if kind != 3 else "boom", n)
        lines.append({0: q, 1: b"{broken", 2: {"query_id": f"e{i}", "candidates": []}, 3: q}[kind])
        kinds.append(kind)
    src = write_lines(d / "in.jsonl", lines)
    summary = rerank_file(FailsOn("boom"), src, d / "out.jsonl", RerankPolicy(top_m=top_m), chunk_size=chunk)
    out = read_out(d / "out.jsonl")
    good = [x for x, k in zip(lines, kinds) if k in (0, 3)]
    assert len(out) == len(good) == summary.queries_written
    assert summary.quarantined == sum(k in (1, 2) for k in kinds)
    for q, o in zip(good, out):
        assert_permutation(q, o)
        assert (o["status"] == "fallback") == (q["query_id"] == "boom")


def test_cli_rerank_end_to_end(run_dir, tmp_path):
    rng = np.random.default_rng(6)
    src = write_lines(tmp_path / "scored.jsonl", [step5_query(rng, f"q{i}", 25) for i in range(4)] + [b"oops"])
    result = CliRunner().invoke(app, ["rerank", "--model", str(run_dir), "--in", str(src), "--out", str(tmp_path / "r.jsonl"), "--top-m", "20"])
    assert result.exit_code == 0, result.output
    assert "4 written" in result.output and "1 quarantined" in result.output
    out = read_out(tmp_path / "r.jsonl")
    assert len(out) == 4 and all(o["status"] == "reranked" for o in out)
    assert json.loads((tmp_path / "r.jsonl.quarantine.jsonl").read_text())["line"] == 5
    assert "Example: mmrank rerank" in CliRunner().invoke(app, ["rerank", "--help"]).output
    assert "Example: mmrank serve" in CliRunner().invoke(app, ["serve", "--help"]).output
    rollout = CliRunner().invoke(app, ["serve", "--model", str(run_dir), "--rollout", "150"])
    assert rollout.exit_code != 0 and "--rollout 150 is not a percentage" in str(rollout.exception)
    top_m = CliRunner().invoke(app, ["rerank", "--model", str(run_dir), "--in", str(src), "--out", str(tmp_path / "y.jsonl"), "--top-m", "0"])
    assert top_m.exit_code != 0 and "--top-m 0" in str(top_m.exception)
    bad = CliRunner().invoke(app, ["rerank", "--model", str(tmp_path / "missing"), "--in", str(src), "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code != 0 and "run directory not found" in str(bad.exception)
