"""Interaction readers on tiny hand-written files: values, validation, quarantine, layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmrank.data.io_mmrec import read_mmrec, read_mmrec_split
from mmrank.data.io_movielens import MOVIELENS_META_COLUMNS, read_movielens_raw
from mmrank.data.io_recbole import meta_columns, read_recbole
from mmrank.errors import DataError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t10\t4\t100\n"
    "1\t11\t5\t200\n"
    "2\t10\t3\t150\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tToy Story\t1995\tAnimation Comedy\n"
    "11\tHeat\tunkonwn\tAction\n"
    "12\tBrazil\t1985\tComedy Sci-Fi\n"
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def recbole_dir(tmp_path: Path, inter: str | bytes = INTER, item: str | None = ITEM) -> Path:
    d = tmp_path / "toy"
    write(d / "toy.inter", inter)
    if item is not None:
        write(d / "toy.item", item)
    return d


def rows(inter) -> list[tuple]:
    return list(zip(inter.user_ids, inter.item_ids, inter.ratings, inter.timestamps))


# -- RecBole --------------------------------------------------------------------------------
def test_recbole_reads_values_and_items(tmp_path):
    inter, items, report = read_recbole(recbole_dir(tmp_path))
    assert rows(inter) == [("1", "10", 4.0, 100.0), ("1", "11", 5.0, 200.0), ("2", "10", 3.0, 150.0)]
    assert report.records_in == 6 and report.records_read == 6 and report.ok
    assert list(items.item_ids) == ["10", "11", "12"]
    assert list(items.titles) == ["Toy Story", "Heat", "Brazil"]
    cols = meta_columns(tmp_path / "toy" / "toy.item")
    assert cols == ["release_year", "release_year_unknown", "genre:Action", "genre:Animation",
                    "genre:Comedy", "genre:Sci-Fi"]
    meta = items.features["meta"]
    # "unkonwn" (sic, as in RecBole's ML-100K) is an unknown year: filled with the median, flagged.
    np.testing.assert_array_equal(meta[:, :2], [[1995, 0], [1990, 1], [1985, 0]])
    np.testing.assert_array_equal(meta[:, 2:], [[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1]])


def test_recbole_accepts_the_inter_file_itself(tmp_path):
    d = recbole_dir(tmp_path, item=None)
    inter, items, _ = read_recbole(d / "toy.inter")
    assert len(inter) == 3 and items is None


def test_recbole_item_file_without_numeric_columns_has_titles_only(tmp_path):
    d = recbole_dir(tmp_path, item="item_id:token\ttitle:token_seq\n10\tA\n11\tB\n")
    _, items, _ = read_recbole(d)
    assert items.features == {} and list(items.titles) == ["A", "B"]


def test_recbole_missing_item_column_names_the_header(tmp_path):
    d = recbole_dir(tmp_path, inter="user_id:token\tmovie:token\n1\t2\n")
    with pytest.raises(DataError) as e:
        read_recbole(d)
    assert e.value.line == 1 and "item_id" in str(e.value) and "movie:token" in str(e.value)


def test_recbole_bad_header_type(tmp_path):
    d = recbole_dir(tmp_path, inter="user_id:token\titem_id:string\n1\t2\n")
    with pytest.raises(DataError, match="item_id:string"):
        read_recbole(d)


@pytest.mark.parametrize(
    "line, message",
    [
        ("3\t12\t4", "expected 4 fields"),
        ("3\t12\t4\t5\t6", "expected 4 fields"),
        ("\t12\t4\t500", "empty user id"),
        ("3\t \t4\t500", "empty item id"),
        ("3\t12\tfour\t500", "rating 'four' is not a finite number"),
        ("3\t12\tnan\t500", "rating 'nan'"),
        ("3\t12\t4\tinf", "timestamp 'inf'"),
        ("3\t12\t4\tyesterday", "timestamp 'yesterday'"),
        ("1\t10\t2\t100", "duplicate of line 2"),
    ],
)
def test_recbole_quarantines_each_bad_record(tmp_path, line, message):
    d = recbole_dir(tmp_path, inter=INTER + line + "\n4\t12\t1\t900\n", item=None)
    inter, _, report = read_recbole(d)
    assert len(inter) == 4 and inter.user_ids[-1] == "4"  # the good line after the bad one is kept
    assert report.records_in == 5 and report.records_read == 4 and report.records_quarantined == 1
    (p,) = report.problems
    assert p.line == 5 and message in p.message and p.record == line
    assert p.path.endswith("toy.inter")
    with pytest.raises(DataError) as e:
        read_recbole(d, strict=True)
    assert e.value.line == 5 and "toy.inter:5: " in str(e.value)


def test_recbole_rating_range(tmp_path):
    d = recbole_dir(tmp_path, item=None)
    inter, _, report = read_recbole(d, rating_range=(3.5, 5))
    assert list(inter.ratings) == [4.0, 5.0]
    assert report.problems[0].line == 4 and "outside the declared range [3.5, 5]" in report.problems[0].message


def test_recbole_blank_lines_crlf_bom_and_bad_utf8(tmp_path):
    data = ("\ufeff" + INTER).replace("\n", "\r\n").encode("utf-8") + b"\r\n   \r\n9\t\xff\xfe\t1\t5\r\n"
    inter, _, report = read_recbole(recbole_dir(tmp_path, inter=data, item=None))
    assert len(inter) == 3 and list(inter.item_ids) == ["10", "11", "10"]
    assert report.records_in == 4  # the blank lines are not records
    (p,) = report.problems
    assert p.line == 7 and "not valid UTF-8" in p.message and p.record == "9\t\ufffd\ufffd\t1\t5"


def test_recbole_without_timestamps_uses_file_order_and_keeps_repeats(tmp_path):
    d = recbole_dir(tmp_path, inter="item_id:token\tuser_id:token\n5\tu\n6\tu\n5\tu\n", item=None)
    inter, _, report = read_recbole(d)
    assert list(inter.item_ids) == ["5", "6", "5"] and list(inter.timestamps) == [0, 1, 2]
    assert inter.ratings is None and report.ok
    # the row numbers are kept as an order only, and said to be no time
    assert inter.order == "row" and not inter.timed


def test_recbole_all_records_bad_is_an_error(tmp_path):
    d = recbole_dir(tmp_path, inter="user_id:token\titem_id:token\n1\n2\n", item=None)
    with pytest.raises(DataError) as e:
        read_recbole(d)
    assert e.value.line == 2 and "no valid interaction" in str(e.value)
    with pytest.raises(DataError, match="no interaction records"):
        read_recbole(recbole_dir(tmp_path, inter="user_id:token\titem_id:token\n\n", item=None))


def test_recbole_item_file_problems_name_the_item_file(tmp_path):
    item = ITEM + "10\tToy Story again\t1995\tComedy\n13\tX\t1990\n"
    inter, items, report = read_recbole(recbole_dir(tmp_path, item=item))
    assert list(items.item_ids) == ["10", "11", "12"]
    assert [(Path(p.path).name, p.line) for p in report.problems] == [("toy.item", 5), ("toy.item", 6)]
    assert "already defined on line 2" in report.problems[0].message
    assert report.records_in == 3 + 5 and report.records_read == 3 + 3


def test_recbole_item_numbers_must_fit_float32(tmp_path):
    item = "item_id:token\tprice:float\tyear:float\n10\t1e300\t1990\n11\t2.5\t1e300\n"
    _, items, report = read_recbole(recbole_dir(tmp_path, item=item))
    assert list(items.item_ids) == ["11"] and "not a finite float32 number" in report.problems[0].message
    # an impossible year counts as unknown (filled + flagged), never as inf
    np.testing.assert_array_equal(items.features["meta"], [[2.5, 0.0, 1.0]])


def test_recbole_folder_resolution(tmp_path):
    with pytest.raises(DataError, match="no \\*.inter file"):
        read_recbole(tmp_path)
    write(tmp_path / "a.inter", INTER)
    write(tmp_path / "b.inter", INTER)
    with pytest.raises(DataError, match="several"):
        read_recbole(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        read_recbole(tmp_path / "missing")


def test_quarantine_file_holds_the_raw_record(tmp_path):
    _, _, report = read_recbole(recbole_dir(tmp_path, inter=INTER + "x\ty\tz\tw\n", item=None))
    out = report.write_quarantine(tmp_path / "q.jsonl")
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["line"] == 5 and row["record"] == "x\ty\tz\tw" and "rating 'z'" in row["reason"]


# -- MovieLens raw --------------------------------------------------------------------------
def _u_item_line(item: int, title: str, date: str, flags: list[int]) -> str:
    return f"{item}|{title}|{date}||http://x|" + "|".join(map(str, flags)) + "\n"


def movielens_dir(tmp_path: Path, extra_item: str = "") -> Path:
    d = tmp_path / "ml"
    write(d / "u.data", "1\t10\t4\t100\n2\t11\t5\t50\n")
    flags_a = [0] * 19
    flags_a[5] = 1  # Comedy
    flags_b = [0] * 19
    flags_b[0] = 1  # unknown
    text = _u_item_line(10, "Misérables, Les (1995)", "01-Jan-1995", flags_a) + _u_item_line(11, "unknown", "", flags_b)
    write(d / "u.item", (text + extra_item).encode("latin-1"))
    return d


def test_movielens_raw_reads_latin1_titles_genres_and_years(tmp_path):
    inter, items, report = read_movielens_raw(movielens_dir(tmp_path))
    assert rows(inter) == [("1", "10", 4.0, 100.0), ("2", "11", 5.0, 50.0)]
    assert list(items.titles) == ["Misérables, Les (1995)", "unknown"]
    meta = items.features["meta"]
    assert meta.shape == (2, len(MOVIELENS_META_COLUMNS)) == (2, 21)
    assert MOVIELENS_META_COLUMNS[5] == "genre:Comedy" and meta[0, 5] == 1 and meta[0, :19].sum() == 1
    np.testing.assert_array_equal(meta[:, 19:], [[1995, 0], [1995, 1]])
    assert report.ok and report.records_in == 4


def test_movielens_raw_quarantines_bad_item_rows(tmp_path):
    d = movielens_dir(tmp_path, extra_item=_u_item_line(12, "Bad", "", [2] + [0] * 18) + "13|too|few\n")
    _, items, report = read_movielens_raw(d / "u.data")
    assert len(items) == 2
    assert [(Path(p.path).name, p.line) for p in report.problems] == [("u.item", 3), ("u.item", 4)]
    assert "genre flag '2'" in report.problems[0].message and "expected 24 fields" in report.problems[1].message


def test_movielens_raw_without_u_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no u.data or ratings.dat") as e:
        read_movielens_raw(tmp_path)
    assert e.value.path == str(tmp_path)
    with pytest.raises(DataError, match="cannot read file"):
        read_movielens_raw(tmp_path / "u.data")


# -- MMRec ----------------------------------------------------------------------------------
def mmrec_dir(tmp_path: Path, inter: str | None = None, n_items: int = 3) -> Path:
    d = tmp_path / "baby"
    write(d / "baby.inter", inter or "userID\titemID\trating\ttimestamp\tx_label\n0\t0\t5\t10\t0\n0\t2\t4\t20\t1\n1\t1\t3\t30\t2\n")
    np.save(d / "text_feat.npy", np.arange(n_items * 4, dtype=np.float32).reshape(n_items, 4))
    np.save(d / "image_feat.npy", np.ones((n_items, 2)))
    return d


def test_mmrec_reads_interactions_and_one_modality_per_npy(tmp_path):
    inter, items, report = read_mmrec(mmrec_dir(tmp_path))
    assert rows(inter) == [("0", "0", 5.0, 10.0), ("0", "2", 4.0, 20.0), ("1", "1", 3.0, 30.0)]
    assert items.modality_dims == {"image": 2, "text": 4} and list(items.item_ids) == ["0", "1", "2"]
    np.testing.assert_array_equal(items.features["text"][2], [8, 9, 10, 11])
    assert report.ok


def test_mmrec_tolerates_column_names_and_order(tmp_path):
    d = mmrec_dir(tmp_path, inter="ITEM_ID:token\tUserId\tTimestamp\n1\tu\t5\n")
    inter, _, _ = read_mmrec(d)
    assert (list(inter.user_ids), list(inter.item_ids), list(inter.timestamps)) == (["u"], ["1"], [5.0])
    assert inter.ratings is None


@pytest.mark.parametrize(
    "line, message",
    [
        ("2\t3\t4\t40\t0", "item id '3' is not a row number 0..2"),
        ("2\t01\t4\t40\t0", "item id '01'"),
        ("2\t1\t4\t40\t3", "x_label '3' is not an allowed value"),
        ("2\t1\t4\t40\t0.5", "x_label '0.5'"),
    ],
)
def test_mmrec_quarantines_bad_records(tmp_path, line, message):
    base = "userID\titemID\trating\ttimestamp\tx_label\n0\t0\t5\t10\t0\n"
    inter, _, report = read_mmrec(mmrec_dir(tmp_path, inter=base + line + "\n"))
    assert len(inter) == 1
    (p,) = report.problems
    assert p.line == 3 and message in p.message


def test_mmrec_bad_feature_files_are_data_errors(tmp_path):
    d = mmrec_dir(tmp_path)
    np.save(d / "image_feat.npy", np.ones((4, 2)))
    with pytest.raises(DataError, match="disagree on the number of items"):
        read_mmrec(d)
    bad = np.ones((3, 2))
    bad[1, 1] = np.nan
    np.save(d / "image_feat.npy", bad)
    with pytest.raises(DataError, match="row 1 .* NaN"):
        read_mmrec(d)
    np.save(d / "image_feat.npy", np.full((3, 2), 1e300))
    with pytest.raises(DataError, match="beyond float32"):
        read_mmrec(d)
    (d / "image_feat.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DataError, match="not a readable .npy") as e:
        read_mmrec(d)
    assert e.value.path.endswith("image_feat.npy")
    np.save(d / "image_feat.npy", np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match="2-D numeric"):
        read_mmrec(d)


def test_mmrec_without_feature_files_has_no_item_features(tmp_path):
    d = tmp_path / "plain"
    write(d / "plain.inter", "userID\titemID\nu\tanything\n")
    inter, items, _ = read_mmrec(d)
    assert items is None and list(inter.item_ids) == ["anything"]


def test_mmrec_split_comes_from_x_label(tmp_path):
    d = mmrec_dir(tmp_path)
    inter, _, split, report = read_mmrec_split(d)
    assert {k: list(v) for k, v in split.parts.items()} == {"train": [0], "valid": [1], "test": [2]}
    train, valid, test = split.apply(inter)
    assert list(test.item_ids) == ["1"] and split.method == "mmrec_x_label"
    write(d / "baby.inter", "userID\titemID\n0\t1\n")
    with pytest.raises(DataError, match="no split column") as e:
        read_mmrec_split(d)
    assert e.value.line == 1
