"""Parquet reader/writer: the column layout, JSONL -> Parquet -> JSONL byte identity, bad rows."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrank.data.formats import detect_format, read_ranking, write_ranking
from mmrank.data.io_jsonl import read_jsonl
from mmrank.data.io_parquet import read_parquet, write_parquet
from mmrank.data.model import RankingSet
from mmrank.errors import DataError


def _rich_set() -> RankingSet:
    rng = np.random.default_rng(7)
    return RankingSet(
        query_ids=["q1", "q2", "q3"], offsets=[0, 2, 5, 6], candidate_ids=["a", "b", "a", "c", "d", "e"],
        labels=[2, 0, 1, 1, 0, 3.5], domains=["news", "shop", "news"], baseline_scores=rng.normal(size=6),
        features={"image": rng.normal(size=(6, 4)), "text": rng.normal(size=(6, 3)), "conflict": [0, 1, 0, 0, 1, 0]},
        query_features={"qt": rng.normal(size=(3, 2))}, query_texts=["red shoes", None, "ünïcode"],
    )


def test_column_layout(tmp_path):
    write_parquet(_rich_set(), tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    assert table.column_names == ["query_id", "domain", "query_text", "candidate_id", "label", "baseline_score",
                                  "f.conflict", "f.image", "f.text", "qf.qt"]
    assert table.schema.field("f.image").type == pa.list_(pa.float32())
    assert table.column("query_id").to_pylist() == ["q1", "q1", "q2", "q2", "q2", "q3"]
    assert table.column("query_text").to_pylist()[2:5] == [None, None, None]
    assert table.num_rows == 6
    assert detect_format(tmp_path / "s.parquet") == "parquet"


def test_jsonl_parquet_jsonl_is_byte_identical(tmp_path):
    write_ranking(_rich_set(), tmp_path / "a.jsonl")
    from_jsonl, _ = read_jsonl(tmp_path / "a.jsonl")
    write_ranking(from_jsonl, tmp_path / "b.parquet")
    from_parquet, report = read_ranking(tmp_path / "b.parquet")
    assert report.ok and report.records_read == 3
    write_ranking(from_parquet, tmp_path / "c.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()
    np.testing.assert_array_equal(from_parquet.features["image"], _rich_set().features["image"])
    np.testing.assert_array_equal(from_parquet.baseline_scores, _rich_set().baseline_scores)


def _table(**overrides) -> pa.Table:
    cols = {
        "query_id": ["q1", "q1", "q2", "q3", "q3", "q2"],
        "candidate_id": ["a", "b", "a", "a", "b", "z"],
        "label": [1.0, 0.0, 2.0, 1.0, 0.0, 1.0],
        "f.x": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 1.0], [1.0, 1.0]],
                        pa.list_(pa.float32())),
    }
    cols.update(overrides)
    return pa.table(cols)


def test_bad_queries_are_quarantined_at_their_first_row(tmp_path):
    table = _table(**{"f.x": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, None], [7.0], [9.0, 1.0], [1.0, 1.0]],
                                      pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "t.parquet")
    rset, report = read_parquet(tmp_path / "t.parquet")
    assert [(p.line, p.message) for p in report.problems] == [
        (3, "modality 'x' contains NaN or infinite values"),
        (4, "modality 'x' has lengths [1, 2] within one query"),
        (6, "query_id 'q2' reappears (its rows started at row 3)"),
    ]
    assert (report.records_in, report.records_read) == (4, 1)
    assert rset.query_ids.tolist() == ["q1"] and rset.features["x"].tolist() == [[1, 2], [3, 4]]
    assert json.loads(report.problems[1].record)[0]["candidate_id"] == "a"


def test_label_range_and_null_lists(tmp_path):
    table = _table(label=[1.0, 0.0, 7.0, 1.0, 0.0, 1.0], **{"query_id": ["q1", "q1", "q2", "q3", "q3", "q4"],
                   "f.x": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], None, [9.0, 1.0], [1.0, 1.0]],
                                   pa.list_(pa.float32()))})
    pq.write_table(table, tmp_path / "t.parquet")
    _, report = read_parquet(tmp_path / "t.parquet", label_range=(0, 4))
    assert [(p.line, p.message) for p in report.problems] == [
        (3, "label 7 outside the declared range [0, 4]"),
        (4, "modality 'x' is null in row 4"),
    ]
    with pytest.raises(DataError) as err:
        read_parquet(tmp_path / "t.parquet", label_range=(0, 4), strict=True)
    assert err.value.line == 3


def test_column_problems_raise(tmp_path):
    pq.write_table(pa.table({"query_id": ["q"], "label": [1.0]}), tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"missing column\(s\) \['candidate_id'\]"):
        read_parquet(tmp_path / "m.parquet")
    pq.write_table(_table(label=["a", "b", "c", "d", "e", "f"]), tmp_path / "l.parquet")
    with pytest.raises(DataError, match="column 'label' has type string, expected a number"):
        read_parquet(tmp_path / "l.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_parquet(tmp_path / "junk.parquet")


def test_plain_numeric_feature_column_is_one_wide(tmp_path):
    pq.write_table(_table(**{"f.x": [1, 2, 3, 4, 5, 6], "query_id": ["q1", "q1", "q2", "q3", "q3", "q4"]}),
                   tmp_path / "n.parquet")
    rset, report = read_parquet(tmp_path / "n.parquet")
    assert report.ok and rset.features["x"].ravel().tolist() == [1, 2, 3, 4, 5, 6]


def test_values_beyond_float32_and_huge_ints(tmp_path):
    big = pa.array([[1e300, 1.0], [1.0, 2.0], [float(2**62), 1.0], [1.0, 1.0]], pa.list_(pa.float64()))
    pq.write_table(pa.table({"query_id": ["q", "q", "r", "r"], "candidate_id": list("abcd"),
                             "label": [1.0, 0.0, 1.0, 0.0], "f.x": big}), tmp_path / "b.parquet")
    rset, report = read_parquet(tmp_path / "b.parquet")
    assert [(p.line, p.message) for p in report.problems] == [(1, "modality 'x' holds a value beyond the float32 range")]
    assert rset.features["x"][0, 0] == np.float32(2**62)
    ints = pa.array([[2**62, 1], [1, 2]], pa.list_(pa.int64()))  # not exactly representable: still read
    pq.write_table(pa.table({"query_id": ["q", "q"], "candidate_id": ["a", "b"], "label": [1.0, 0.0], "f.x": ints}),
                   tmp_path / "i.parquet")
    assert read_parquet(tmp_path / "i.parquet")[1].ok
