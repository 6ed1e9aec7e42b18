"""Batch rerank of a JSONL file: top-M reranked by the real model, the tail in order, bad lines
quarantined with path:line, every good query written, atomic output, bounded memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mmrank.cli.app import app
from mmrank.errors import DataError
from mmrank.models.baselines import HeuristicBaseline
from mmrank.serve.batch import EXIT_NOTHING_RERANKED, EXIT_OK, EXIT_PARTIAL, rerank_file
from mmrank.serve.batch_output import TEMP_SUFFIX, temp_path
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


def letor_query(query_id: str, dim: int, n: int = 4, seed: int = 0) -> dict:
    """A native-schema query with one ``letor`` modality of ``dim`` features (MQ2008 has 46)."""
    rng = np.random.default_rng(seed)
    return {"query_id": query_id, "candidates": [
        {"candidate_id": f"{query_id}-{j}", "features": {"letor": [round(float(x), 3) for x in rng.random(dim)]}} for j in range(n)]}


# Line kinds of the property test: what each is, and what the batch must make of it.
GOOD_A, LETOR_46, LETOR_2, BROKEN, BLANK, EMPTY_QUERY, NO_ID = range(7)
WRITTEN = {GOOD_A: ("reranked", "ok"), LETOR_46: ("fallback", "model_error"), LETOR_2: ("fallback", "model_error")}
QUARANTINED = {BROKEN, EMPTY_QUERY, NO_ID}


def line_of(kind: int, i: int, n: int, seed: int):
    if kind == GOOD_A:  # the run's own layout (image 6, text 4, compliance): the model reranks it
        return step5_query(np.random.default_rng(seed), f"a{i}", n, labels=False)
    if kind in (LETOR_46, LETOR_2):
        return letor_query(f"l{i}", 46 if kind == LETOR_46 else 2, n, seed)
    return {BROKEN: b'{"query_id": "x", "candidates": [', BLANK: b"   ",
            EMPTY_QUERY: {"query_id": f"e{i}", "candidates": []},
            NO_ID: {"query_id": f"n{i}", "candidates": [{"raw_score": 1.0}]}}[kind]


def expected_exit(kinds: list[int]) -> int:
    """docs/serving.md, "Exit codes", computed from the line kinds alone."""
    lines = [k for k in kinds if k != BLANK]
    if lines and GOOD_A not in lines:
        return EXIT_NOTHING_RERANKED
    return EXIT_PARTIAL if any(k in QUARANTINED or k in (LETOR_46, LETOR_2) for k in lines) else EXIT_OK


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 9), st.integers(0, 10**6)), min_size=0, max_size=10),
       st.sampled_from([None, 1, 3, 6]), st.integers(1, 4))
@example([(LETOR_46, 4, 0), (LETOR_2, 4, 1)], None, 64)  # issue 14 (1): one file, two letor widths
@example([(GOOD_A, 5, 0), (LETOR_46, 4, 0), (LETOR_2, 4, 1), (GOOD_A, 3, 2)], None, 64)
def test_mixed_layouts_malformed_and_blank_lines(run_dir, tmp_path_factory, spec, top_m, chunk):
    """Records in = reranked + fallback + quarantined; every output a permutation of its input;
    lines of another layout fall back alone (original order, reason), the exit code as documented."""
    d = tmp_path_factory.mktemp("prop")
    kinds = [k for k, _, _ in spec]
    lines = [line_of(k, i, n, seed) for i, (k, n, seed) in enumerate(spec)]
    src = write_lines(d / "in.jsonl", lines)
    summary = rerank_file(load_run(run_dir).ranker, src, d / "out.jsonl", RerankPolicy(top_m=top_m), chunk_size=chunk)
    out = read_out(d / "out.jsonl")
    written = [(x, k) for x, k in zip(lines, kinds) if k in WRITTEN]
    assert summary.lines_in == sum(k != BLANK for k in kinds)
    assert summary.lines_in == summary.queries_written + summary.quarantined
    assert summary.queries_written == len(out) == len(written)
    assert summary.quarantined == sum(k in QUARANTINED for k in kinds)
    for (q, k), o in zip(written, out):
        assert o["query_id"] == q["query_id"]
        assert_permutation(q, o)
        assert (o["status"], o["reason"]) == WRITTEN[k]
        if o["status"] == "fallback":
            assert [c["candidate_id"] for c in o["candidates"]] == [c["candidate_id"] for c in q["candidates"]]
    if summary.quarantined:
        bad = read_out(d / "out.jsonl.quarantine.jsonl")
        want = [no for no, k in enumerate(kinds, start=1) if k in QUARANTINED]
        assert [b["line"] for b in bad] == want and all(b["error"].startswith(f"{src}:{b['line']}: ") for b in bad)
    assert summary.exit_code == expected_exit(kinds)


def cli(*args: str):
    return CliRunner().invoke(app, ["rerank", *args])


def test_cli_rerank_end_to_end_and_its_exit_codes(run_dir, tmp_path):
    rng = np.random.default_rng(6)
    good = [step5_query(rng, f"q{i}", 25) for i in range(4)]
    src = write_lines(tmp_path / "scored.jsonl", good + [b"oops"])
    result = cli("--model", str(run_dir), "--in", str(src), "--out", str(tmp_path / "r.jsonl"), "--top-m", "20")
    assert result.exit_code == EXIT_PARTIAL, result.output  # one line quarantined
    assert "4 written" in result.output and "1 quarantined" in result.output
    assert "partial: 5 lines in — 4 reranked, 0 shadow, 0 fallback (0 model faults), 1 quarantined (exit 3)" in result.output
    out = read_out(tmp_path / "r.jsonl")
    assert len(out) == 4 and all(o["status"] == "reranked" for o in out)
    assert json.loads((tmp_path / "r.jsonl.quarantine.jsonl").read_text())["line"] == 5
    clean = cli("--model", str(run_dir), "--in", str(write_lines(tmp_path / "good.jsonl", good)), "--out", str(tmp_path / "g.jsonl"))
    assert clean.exit_code == EXIT_OK and "ok: 4 lines in — 4 reranked" in clean.output
    # every line quarantined, and every query a model fault: "nothing reranked", each its own code
    junk = cli("--model", str(run_dir), "--in", str(write_lines(tmp_path / "junk.jsonl", [b"x", b"[1]"])), "--out", str(tmp_path / "j.jsonl"))
    assert junk.exit_code == EXIT_NOTHING_RERANKED and "nothing reranked" in junk.output
    letor = write_lines(tmp_path / "letor.jsonl", [letor_query("m0", 46), letor_query("m1", 2)])
    faults = cli("--model", str(run_dir), "--in", str(letor), "--out", str(tmp_path / "m.jsonl"))
    assert faults.exit_code == EXIT_NOTHING_RERANKED and "(2 model faults)" in faults.output
    assert "Example: mmrank rerank" in CliRunner().invoke(app, ["rerank", "--help"]).output
    assert "Example: mmrank serve" in CliRunner().invoke(app, ["serve", "--help"]).output


def test_rerank_and_serve_agree_on_top_m(run_dir, tmp_path):
    """Issue 14 (8): both rerank every candidate unless --top-m says otherwise."""
    rng = np.random.default_rng(7)
    q = step5_query(rng, "long", 30)
    src = write_lines(tmp_path / "in.jsonl", [q])
    assert cli("--model", str(run_dir), "--in", str(src), "--out", str(tmp_path / "o.jsonl")).exit_code == 0
    (o,) = read_out(tmp_path / "o.jsonl")
    assert all(c["score"] is not None for c in o["candidates"])  # all 30 scored, not 20
    for command in ("rerank", "serve"):
        assert "default: all" in " ".join(CliRunner().invoke(app, [command, "--help"]).output.split())


@pytest.mark.parametrize("args, message", [
    (["serve", "--port", "99999"], "--port 99999 is not a TCP port"),
    (["serve", "--rollout", "150"], "--rollout 150 is not a percentage"),
    (["serve", "--read-timeout-s", "0"], "--read-timeout-s must be positive, got 0"),
    (["rerank", "--top-m", "0", "--in", "IN", "--out", "OUT"], "--top-m 0 must be at least 1"),
    (["rerank", "--in", "IN", "--out", "DIR"], "is a directory"),
    (["rerank", "--in", "IN", "--out", "/dev/null"], "is not a regular file"),  # never renamed over
    (["rerank", "--model", "MISSING", "--in", "IN", "--out", "OUT"], "run directory not found"),
])
def test_usage_errors_are_one_line_and_exit_2(run_dir, tmp_path, args, message):
    (tmp_path / "DIR").mkdir()
    src = write_lines(tmp_path / "in.jsonl", [step5_query(np.random.default_rng(0), "q", 3)])
    paths = {"IN": str(src), "OUT": str(tmp_path / "o.jsonl"), "DIR": str(tmp_path / "DIR"), "MISSING": str(tmp_path / "missing")}
    full = [paths.get(a, a) for a in args]
    if "--model" not in full:
        full[1:1] = ["--model", str(run_dir)]
    result = CliRunner().invoke(app, full)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR", "in.jsonl"]  # nothing written, no temp file


def mmrank(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("mmrank")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_real_cli_gives_one_line_not_a_traceback(run_dir, tmp_path):
    """Issue 14 (4) through the real entry point: --out DIR (checked before any work) and --port 99999."""
    (tmp_path / "outdir").mkdir()
    src = write_lines(tmp_path / "in.jsonl", [step5_query(np.random.default_rng(0), "q", 3)])
    for proc in (mmrank("rerank", "--model", str(run_dir), "--in", str(src), "--out", str(tmp_path / "outdir")),
                 mmrank("serve", "--model", str(run_dir), "--port", "99999")):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "outdir"] and not any((tmp_path / "outdir").iterdir())


def test_serve_on_a_port_in_use_is_an_error_line_and_exit_2(run_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = mmrank("serve", "--model", str(run_dir), "--port", str(taken.getsockname()[1]))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot listen on 127.0.0.1:"), proc.stderr


def test_output_files_keep_the_umask_mode_and_stale_temp_files_are_removed(run_dir, tmp_path):
    rng = np.random.default_rng(8)
    src = write_lines(tmp_path / "in.jsonl", [step5_query(rng, "q0", 4), b"bad"])
    out = tmp_path / "out.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = temp_path(out, int(dead))  # what a kill -9 of an earlier run leaves behind
    stale.write_text("half an output\n")
    live = temp_path(out, os.getppid())  # a live process's temp file is never touched
    live.write_text("someone else's\n")
    old = os.umask(0o027)
    try:
        rerank_file(HeuristicBaseline(), src, out, RerankPolicy())
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == 0o640
    assert (Path(str(out) + ".quarantine.jsonl").stat().st_mode & 0o777) == 0o640
    assert not stale.exists() and live.exists()
    live.unlink()
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_rerank_leaves_the_previous_output_and_no_temp_file(run_dir, tmp_path, sig):
    """SIGTERM mid-run: the CLI removes its temp files and exits 143. kill -9: the temp file stays
    until the next run for the same output, which removes it. The old output stays either way."""
    line = json.dumps(step5_query(np.random.default_rng(9), "q", 50, dims={"image": 6, "text": 4})).encode()
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(line.replace(b'"q"', f'"q{i}"'.encode(), 1) for i in range(20000)) + b"\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous result\n")
    exe = Path(sys.executable).with_name("mmrank")
    proc = subprocess.Popen([str(exe), "rerank", "--model", str(run_dir), "--in", str(src), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(f"*{TEMP_SUFFIX}")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the rerank finished before it could be stopped: give it a longer file"
    time.sleep(0.3)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert out.read_text() == "previous result\n"
    left = list(tmp_path.glob(f"*{TEMP_SUFFIX}"))
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and not left
    else:
        assert proc.returncode == -signal.SIGKILL and temp_path(out, proc.pid) in left and temp_path(out, proc.pid).stat().st_size > 0
        small = write_lines(tmp_path / "small.jsonl", [step5_query(np.random.default_rng(10), "s", 3)])
        assert cli("--model", str(run_dir), "--in", str(small), "--out", str(out)).exit_code == 0
        assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}")) and read_out(out)[0]["query_id"] == "s"
    assert not list(tmp_path.glob(".*"))  # no hidden file of any kind


def test_atomic_writers_remove_what_a_killed_writer_left_and_spare_live_ones(tmp_path):
    from mmrank.atomic_io import atomic_write_text

    out = tmp_path / "metrics.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".metrics.json.{dead}.abc123{TEMP_SUFFIX}"
    live = tmp_path / f".metrics.json.{os.getppid()}.def456{TEMP_SUFFIX}"
    stale.write_text("half"), live.write_text("busy")
    atomic_write_text(out, "{}")
    assert out.read_text() == "{}" and not stale.exists() and live.exists()
