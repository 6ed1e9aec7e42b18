"""LibSVM/LETOR reader and writer: values, ids, every kind of bad line at its exact line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrank.data.formats import detect_format, load_ranking, read_ranking
from mmrank.data.io_libsvm import read_libsvm, write_libsvm
from mmrank.data.model import RankingSet
from mmrank.errors import DataError

GOOD = """\
2 qid:10 1:0.5 3:1.25 # docid = A inc = 1
0 qid:10 2:-1 3:0 # docid = B
1 qid:11 1:3 2:4 3:5 4:6 # docid = C
# a whole-line comment is not a record

0 qid:11 4:0.125 # docid = D
"""


def _write(tmp_path: Path, text: str, name: str = "f.txt") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_values_ids_and_groups(tmp_path):
    rset, report = read_libsvm(_write(tmp_path, GOOD))
    assert report.ok and (report.records_in, report.records_read) == (4, 4)
    assert rset.query_ids.tolist() == ["10", "11"]
    assert rset.offsets.tolist() == [0, 2, 4]
    assert rset.candidate_ids.tolist() == ["A", "B", "C", "D"]
    assert rset.labels.tolist() == [2.0, 0.0, 1.0, 0.0]
    np.testing.assert_array_equal(
        rset.features["letor"],
        np.array([[0.5, 0, 1.25, 0], [0, -1, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0.125]], dtype=np.float32),
    )
    assert rset.features["letor"].dtype == np.float32


def test_missing_docids_become_qid_and_row(tmp_path):
    rset, _ = read_libsvm(_write(tmp_path, "1 qid:7 1:1\n0 qid:7 1:2\n0 qid:8 1:3\n"))
    assert rset.candidate_ids.tolist() == ["7:0", "7:1", "8:0"]


def test_modality_name_and_fixed_width(tmp_path):
    rset, _ = read_libsvm(_write(tmp_path, GOOD), modality="mq", n_features=6)
    assert rset.modality_dims == {"mq": 6}
    _, report = read_libsvm(_write(tmp_path, "0 qid:1 7:1\n0 qid:1 1:1\n"), n_features=6)
    assert [(p.line, p.message) for p in report.problems] == [(1, "feature index 7 is larger than 6")]


BAD_CASES = [
    ("0 qid:1 1:x", "feature 1 has non-numeric value 'x'"),
    ("zero qid:1 1:1", "label 'zero' is not a number"),
    ("0 1:1", "qid missing"),
    ("0 qid:1 one:1", "bad token 'one:1'"),
    ("0 qid:1 5", "bad token '5'"),
    ("0 qid:1 0:1", "feature index 0 is not positive"),
    ("0 qid:1 -3:1", "feature index -3 is not positive"),
    ("0 qid:1 2:1 2:3", "feature index 2 appears twice"),
    ("0 qid:1 1:nan", "feature 1 is NaN or infinite"),
    ("0 qid:1 1:-inf", "feature 1 is NaN or infinite"),
    ("0 qid:1 1:1e39", "feature 1 = 1e+39 is beyond the float32 range"),
    ("nan qid:1 1:1", "label is NaN or infinite"),
    ("0 qid: 1:1", "empty qid"),
]


@pytest.mark.parametrize("line,message", BAD_CASES)
def test_each_bad_line_is_quarantined_at_its_line(tmp_path, line, message):
    text = f"1 qid:1 1:1 # docid = a\n{line}\n0 qid:1 1:2 # docid = b\n"
    rset, report = read_libsvm(_write(tmp_path, text))
    assert [(p.line, p.message) for p in report.problems] == [(2, message)]
    assert report.problems[0].record == line
    assert (report.records_in, report.records_read, report.records_quarantined) == (3, 2, 1)
    assert rset.candidate_ids.tolist() == ["a", "b"]
    with pytest.raises(DataError) as err:
        read_libsvm(_write(tmp_path, text), strict=True)
    assert err.value.line == 2 and err.value.format().startswith(f"{tmp_path / 'f.txt'}:2: {message} — ")


def test_non_contiguous_qid_duplicate_docid_and_label_range(tmp_path):
    text = (
        "0 qid:1 1:1 # docid = a\n"
        "0 qid:2 1:1 # docid = b\n"
        "3 qid:2 1:1 # docid = c\n"      # label 3 outside [0, 2]
        "0 qid:2 1:1 # docid = b\n"      # duplicate docid in query 2
        "0 qid:1 1:1 # docid = z\n"      # qid 1 reappears
        "0 qid:3 1:1 # docid = b\n"      # same docid in another query is fine
    )
    rset, report = read_libsvm(_write(tmp_path, text), label_range=(0, 2))
    assert [(p.line, p.message) for p in report.problems] == [
        (3, "label 3 outside the declared range [0, 2]"),
        (4, "duplicate docid b in query 2 (first at line 2)"),
        (5, "qid 1 reappears after other queries (it started at line 1)"),
    ]
    assert rset.query_ids.tolist() == ["1", "2", "3"] and rset.offsets.tolist() == [0, 1, 2, 3]


def test_undecodable_line_is_a_problem_not_a_crash(tmp_path):
    p = tmp_path / "f.txt"
    p.write_bytes(b"0 qid:1 1:1\n\xff\xfe qid:1 1:1\n")
    _, report = read_libsvm(p)
    assert [(x.line, x.message) for x in report.problems] == [(2, "line is not UTF-8 text")]


def test_lightgbm_group_file_form(tmp_path):
    data = _write(tmp_path, "1 1:1\n0 2:1\n0 1:2\n2 3:1\n0 1:1\n", "rank.train")
    _write(tmp_path, "2\n3\n", "rank.train.query")
    assert detect_format(data) == "libsvm"
    rset, report = read_ranking(data)
    assert report.ok
    assert rset.query_ids.tolist() == ["rank.train#0", "rank.train#1"] and rset.offsets.tolist() == [0, 2, 5]
    assert rset.candidate_ids.tolist() == ["rank.train#0:0", "rank.train#0:1", "rank.train#1:0", "rank.train#1:1", "rank.train#1:2"]
    assert rset.features["letor"].shape == (5, 3)


def test_lightgbm_group_file_problems(tmp_path):
    data = _write(tmp_path, "1 1:1\n0 2:1\n0 1:2\n", "rank.train")
    _write(tmp_path, "2\n2\n", "rank.train.query")
    with pytest.raises(DataError, match="group sizes sum to 4 but the data file has 3 data lines"):
        read_libsvm(data)
    _write(tmp_path, "2\nx\n", "rank.train.query")
    with pytest.raises(DataError) as err:
        read_libsvm(data)
    assert err.value.line == 2 and "not an integer" in err.value.message
    # a bad line inside a group keeps the rest of the group and its row-based ids
    _write(tmp_path, "1\n2\n", "rank.train.query")
    _write(tmp_path, "1 1:1\n0 2:x\n0 1:2\n", "rank.train")
    rset, report = read_libsvm(data)
    assert [p.line for p in report.problems] == [2]
    assert rset.candidate_ids.tolist() == ["rank.train#0:0", "rank.train#1:1"]


def test_writer_exact_text_and_round_trip(tmp_path):
    rset = RankingSet(
        query_ids=["q1", "q2"], offsets=[0, 2, 3], candidate_ids=["a", "b", "c"], labels=[2, 0, 1.5],
        features={"letor": np.array([[0.1, 0], [1e-7, 3], [0.007477, -2.5]], dtype=np.float32)},
    )
    path = write_libsvm(rset, tmp_path / "out.txt")
    assert path.read_text() == (
        "2 qid:q1 1:0.1 2:0.0 # docid = a\n"
        "0 qid:q1 1:1e-07 2:3.0 # docid = b\n"
        "1.5 qid:q2 1:0.007477 2:-2.5 # docid = c\n"
    )
    back = load_ranking(path)
    np.testing.assert_array_equal(back.features["letor"], rset.features["letor"])
    assert back.candidate_ids.tolist() == ["a", "b", "c"] and back.labels.tolist() == [2, 0, 1.5]
    write_libsvm(rset, tmp_path / "g.train", group_file=True)
    assert (tmp_path / "g.train.query").read_text() == "2\n1\n"
    assert (tmp_path / "g.train").read_text().splitlines()[0] == "2 1:0.1 2:0.0 # docid = a"


def test_writer_refuses_ids_with_whitespace(tmp_path):
    rset = RankingSet(query_ids=["q 1"], offsets=[0, 1], candidate_ids=["a"], labels=[0])
    with pytest.raises(DataError, match="cannot be written to LibSVM"):
        write_libsvm(rset, tmp_path / "x.txt")


def test_load_ranking_is_strict_and_refuses_empty(tmp_path):
    with pytest.raises(DataError) as err:
        load_ranking(_write(tmp_path, "0 qid:1 1:1\n0 qid:1 1:x\n"))
    assert err.value.line == 2
    with pytest.raises(DataError, match="no queries"):
        load_ranking(_write(tmp_path, "# only a comment\n"), "libsvm")


@pytest.mark.parametrize("name", ["x.txt", "x.parquet", "x.jsonl"])
def test_writers_refuse_non_finite_values(tmp_path, name):
    from mmrank.data.formats import write_ranking

    rset = RankingSet(query_ids=["q"], offsets=[0, 2], candidate_ids=["a", "b"], labels=[0, 1],
                      features={"letor": np.array([[1.0], [np.inf]])})
    with pytest.raises(DataError, match="modality 'letor' holds NaN or infinite values"):
        write_ranking(rset, tmp_path / name)
    assert not (tmp_path / name).exists()


def test_byte_order_mark_and_crlf_are_accepted(tmp_path):
    p = tmp_path / "w.txt"
    p.write_bytes(b"\xef\xbb\xbf1 qid:1 1:0.5 # docid = a\r\n0 qid:1 1:2 # docid = b\r\n")
    rset, report = read_libsvm(p)
    assert report.ok and rset.candidate_ids.tolist() == ["a", "b"] and rset.labels.tolist() == [1, 0]


def test_options_that_do_not_apply_are_config_errors(tmp_path):
    from mmrank.data.formats import write_ranking
    from mmrank.errors import ConfigError

    rset = RankingSet(query_ids=["q"], offsets=[0, 1], candidate_ids=["a"], labels=[0])
    path = write_ranking(rset, tmp_path / "a.jsonl")
    with pytest.raises(ConfigError, match=r"option\(s\) \['n_features'\] do not apply to the 'jsonl' format"):
        read_ranking(path, n_features=46)
    with pytest.raises(ConfigError, match=r"\['group_file'\] do not apply to the 'parquet' format"):
        write_ranking(rset, tmp_path / "a.parquet", group_file=True)
    assert read_ranking(write_ranking(rset, tmp_path / "a.txt"), n_features=3)[0].modality_dims == {"letor": 3}
