"""`mmrank data validate|convert|inspect` through the Typer app: output lines, exit codes, files."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.data.formats import read_ranking

runner = CliRunner()

LETOR = (
    "2 qid:1 1:0.5 2:1 # docid = a\n"
    "0 qid:1 1:0.25 2:x # docid = b\n"
    "1 qid:2 1:1 2:2 # docid = c\n"
    "5 qid:2 1:1 2:2 # docid = d\n"
)


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _located_lines(output: str, path) -> list[str]:
    return [line for line in output.splitlines() if re.match(re.escape(str(path)) + r":\d+: ", line)]


def test_validate_reports_errors_counts_and_quarantine(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text(LETOR)
    result = _invoke("data", "validate", str(f), "--label-range", "0,2")
    assert result.exit_code == 2
    assert _located_lines(result.output, f) == [
        f"{f}:2: feature 2 has non-numeric value 'x' — write the value as a number, e.g. 7:0.25",
        f"{f}:4: label 5 outside the declared range [0, 2] — fix the label or widen --label-range",
    ]
    q = tmp_path / "d.txt.quarantine.jsonl"
    assert f"4 records in: 2 read, 2 quarantined (quarantine: {q})" in result.output
    rows = [json.loads(x) for x in q.read_text().splitlines()]
    assert [(r["line"], r["record"]) for r in rows] == [(2, "0 qid:1 1:0.25 2:x # docid = b"),
                                                         (4, "5 qid:2 1:1 2:2 # docid = d")]


def test_validate_clean_file_exits_0_and_writes_no_quarantine(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text(LETOR.replace("2:x", "2:3"))
    result = _invoke("data", "validate", str(f))
    assert result.exit_code == 0
    assert result.output.strip().splitlines()[-1] == "4 records in: 4 read, 0 quarantined"
    assert not (tmp_path / "d.txt.quarantine.jsonl").exists()


def test_validate_strict_and_custom_quarantine(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text(LETOR)
    strict = _invoke("data", "validate", str(f), "--strict")
    assert strict.exit_code == 2 and _located_lines(strict.output, f) == [
        f"{f}:2: feature 2 has non-numeric value 'x' — write the value as a number, e.g. 7:0.25"]
    q = tmp_path / "sub" / "bad.jsonl"
    result = _invoke("data", "validate", str(f), "--quarantine", str(q))
    assert result.exit_code == 2 and len(q.read_text().splitlines()) == 1


def test_validate_bad_arguments_exit_2(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text(LETOR)
    assert _invoke("data", "validate", str(f), "--label-range", "2").exit_code == 2
    assert _invoke("data", "validate", str(f), "--format", "csv").exit_code == 2
    assert _invoke("data", "validate", str(tmp_path / "missing.txt")).exit_code == 2
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    result = _invoke("data", "validate", str(empty))
    assert result.exit_code == 2 and "no records" in result.output


def test_convert_round_trip_and_skip_bad(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text(LETOR)
    assert _invoke("data", "convert", str(f), str(tmp_path / "o.parquet")).exit_code == 2  # strict by default
    result = _invoke("data", "convert", str(f), str(tmp_path / "o.parquet"), "--skip-bad")
    assert result.exit_code == 0 and "wrote 2 queries, 3 candidates" in result.output
    assert _invoke("data", "convert", str(tmp_path / "o.parquet"), str(tmp_path / "o.data"), "--to", "jsonl").exit_code == 0
    rset, _ = read_ranking(tmp_path / "o.data", "jsonl")
    assert rset.candidate_ids.tolist() == ["a", "c", "d"] and rset.labels.tolist() == [2, 1, 5]
    assert rset.features["letor"].tolist() == [[0.5, 1], [1, 2], [1, 2]]
    assert _invoke("data", "convert", str(tmp_path / "o.data"), str(tmp_path / "g.train"), "--from", "jsonl",
                   "--lightgbm-groups").exit_code == 0
    assert (tmp_path / "g.train.query").read_text() == "1\n2\n"


def test_inspect_json_numbers(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(o) + "\n" for o in [
        {"query_id": "q1", "domain": "news", "candidates": [
            {"candidate_id": "a", "label": 2, "features": {"image": [1, 2, 3]}},
            {"candidate_id": "b", "label": 0, "features": {"image": [1, 2, 3]}}]},
        {"query_id": "q2", "domain": "shop", "candidates": [
            {"candidate_id": "a", "label": 0, "features": {"image": [1, 2, 3]}}]},
        {"query_id": "q3", "domain": "news", "candidates": [
            {"candidate_id": "a", "label": 0, "features": {"image": [1, 2]}}]},
    ]))
    result = _invoke("data", "inspect", str(f), "--json")
    assert result.exit_code == 0
    s = json.loads(result.output)
    assert (s["queries"], s["candidates"]) == (2, 3)
    assert s["labels"] == {"0": 2, "2": 1}
    assert s["modalities"] == {"image": 3} and s["domains"] == {"news": 1, "shop": 1}
    assert s["candidate_ids_in_several_queries"] == 1
    assert s["records"] == {"in": 3, "read": 2, "quarantined": 1}
    table = _invoke("data", "inspect", str(f))
    assert table.exit_code == 0 and "image" in table.output and "news" in table.output


def test_inspect_interactions(tmp_path):
    pytest.importorskip("mmrank.data.io_recbole")
    d = tmp_path / "toy"
    d.mkdir()
    (d / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t5\t100\n1\t11\t3\t101\n2\t10\t4\t102\n2\t10\t4\t103\n"
    )
    result = _invoke("data", "inspect", str(d), "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["format"] == "recbole"
    assert (s["users"], s["items"], s["interactions"]) == (2, 2, 4)
    assert s["ratings"] == {"3": 1, "4": 2, "5": 1} and s["duplicate_user_item_pairs"] == 1
    v = _invoke("data", "validate", str(d))
    assert v.exit_code == 0 and "4 records in: 4 read, 0 quarantined" in v.output


@pytest.mark.parametrize("command", ["validate", "convert", "inspect"])
def test_help_shows_an_example(command):
    result = _invoke("data", command, "--help")
    assert result.exit_code == 0 and "Example: mmrank data " + command in result.output


def test_real_entry_point_exit_code(tmp_path):
    f = tmp_path / "d.txt"
    f.write_text(LETOR)
    proc = subprocess.run([sys.executable, "-m", "mmrank", "data", "validate", str(f)], capture_output=True, text=True)
    assert proc.returncode == 2 and f"{f}:2: feature 2 has non-numeric value 'x'" in proc.stdout
