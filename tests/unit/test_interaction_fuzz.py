"""Property tests: whatever bytes the interaction readers get, they either read (and account for
every record) or raise DataError naming the file (and the line, for text files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmrank.data.interaction_table import ColumnLayout
from mmrank.data.io_mmrec import read_mmrec
from mmrank.data.io_movielens import read_movielens_raw
from mmrank.data.io_recbole import read_recbole
from mmrank.errors import DataError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

RECBOLE_INTER = (
    b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    b"1\t10\t4\t100\n1\t11\t5\t200\n2\t10\t3\t150\n3\t12\t1\t90\n"
)
RECBOLE_ITEM = (
    b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    b"10\tToy Story\t1995\tAnimation Comedy\n11\tHeat\t1995\tAction\n12\tBrazil\t1985\tComedy\n"
)
U_DATA = b"1\t10\t4\t100\n2\t11\t5\t50\n3\t10\t2\t70\n"
U_ITEM = (
    "10|Misérables, Les (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n"
    "11|Heat (1995)|01-Jan-1995||http://y|" + "|".join(["1"] + ["0"] * 18) + "\n"
).encode("latin-1")
MMREC_INTER = b"userID\titemID\trating\ttimestamp\tx_label\n0\t0\t5\t10\t0\n0\t2\t4\t20\t1\n1\t1\t3\t30\t2\n"


def fresh_dir(tmp_path: Path) -> Path:
    d = tmp_path / "case"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    return d


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few random byte insertions, deletions and replacements."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        byte = draw(st.sampled_from([b"\t", b"\n", b"\r", b":", b"|", b"\xff", b"\x00", b"9", b"a", b" "]) | st.binary(min_size=1, max_size=3))
        if op == "insert":
            out[pos:pos] = byte
        elif op == "delete" and out:
            del out[pos]
        elif out:
            out[pos:pos + 1] = byte
    return bytes(out)


def check_outcome(read, path: Path, text_file: Path, item_rows_are_records: bool = True) -> None:
    """Either a DataError with a location, or a result whose report accounts for every record
    (item side-file rows count as records; MMRec's .npy rows do not)."""
    try:
        inter, items, report = read(path)
    except DataError as e:
        assert e.path is not None, str(e)
        if e.path == str(text_file):
            assert e.line is not None and e.line >= 1, str(e)
        return
    assert report.records_in == report.records_read + report.records_quarantined
    n_items = len(items) if items is not None and item_rows_are_records else 0
    assert report.records_read == len(inter) + n_items
    assert np.all(np.isfinite(inter.timestamps))
    for p in report.problems:
        assert p.line is not None and p.line >= 1


def any_bytes():
    return st.binary(max_size=400) | st.text(alphabet="\t\n\r|:0123456789 abfloatokenid_", max_size=200).map(str.encode)


@FUZZ
@given(data=any_bytes(), with_header=st.booleans())
def test_recbole_inter_any_bytes(tmp_path, data, with_header):
    """Raw bytes, or bytes under a valid header (so the record checks get exercised too)."""
    d = fresh_dir(tmp_path)
    (d / "case.inter").write_bytes(b"user_id:token\titem_id:token\n" + data if with_header else data)
    check_outcome(read_recbole, d, d / "case.inter")


@FUZZ
@given(item=any_bytes(), with_header=st.booleans())
def test_recbole_item_file_any_bytes(tmp_path, item, with_header):
    d = fresh_dir(tmp_path)
    (d / "case.inter").write_bytes(RECBOLE_INTER)
    header = b"item_id:token\tprice:float\trelease_year:token\tclass:token_seq\n"
    (d / "case.item").write_bytes(header + item if with_header else item)
    check_outcome(read_recbole, d, d / "case.item")


@FUZZ
@given(inter=mutated(RECBOLE_INTER), item=mutated(RECBOLE_ITEM))
def test_recbole_mutated_files(tmp_path, inter, item):
    d = fresh_dir(tmp_path)
    (d / "case.inter").write_bytes(inter)
    (d / "case.item").write_bytes(item)
    check_outcome(read_recbole, d, d / "case.inter")


@FUZZ
@given(line_index=st.integers(1, 4), junk=st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s))
def test_recbole_one_bad_line_is_located_exactly(tmp_path, line_index, junk):
    """Replacing one record leaves the others read; if it is rejected, it is rejected at its line."""
    d = fresh_dir(tmp_path)
    lines = RECBOLE_INTER.decode().split("\n")
    lines[line_index] = junk
    (d / "case.inter").write_text("\n".join(lines), encoding="utf-8")
    inter, _, report = read_recbole(d)
    assert len(inter) + report.records_quarantined == 4 - (not junk.strip())
    assert all(p.line == line_index + 1 for p in report.problems)


@FUZZ
@given(data=any_bytes(), item=any_bytes())
def test_movielens_any_bytes(tmp_path, data, item):
    d = fresh_dir(tmp_path)
    (d / "u.data").write_bytes(data)
    (d / "u.item").write_bytes(item)
    check_outcome(read_movielens_raw, d, d / "u.data")


@FUZZ
@given(data=mutated(U_DATA), item=mutated(U_ITEM))
def test_movielens_mutated_files(tmp_path, data, item):
    d = fresh_dir(tmp_path)
    (d / "u.data").write_bytes(data)
    (d / "u.item").write_bytes(item)
    check_outcome(read_movielens_raw, d, d / "u.data")


@FUZZ
@given(inter=any_bytes() | mutated(MMREC_INTER), npy_bytes=st.none() | st.binary(max_size=200))
def test_mmrec_any_bytes(tmp_path, inter, npy_bytes):
    d = fresh_dir(tmp_path)
    (d / "case.inter").write_bytes(inter)
    np.save(d / "text_feat.npy", np.zeros((3, 2), dtype=np.float32))
    if npy_bytes is not None:
        (d / "image_feat.npy").write_bytes(npy_bytes)
    check_outcome(read_mmrec, d, d / "case.inter", item_rows_are_records=False)


NUMBER_TEXT = st.from_regex(r"[+-]?[0-9]{0,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)


@st.composite
def numeric_files(draw) -> bytes:
    """Well-formed lines with arbitrary number texts: where pandas and float() could disagree."""
    n = draw(st.integers(1, 6))
    rows = [f"u{k}\ti{k}\t{draw(NUMBER_TEXT)}\t{draw(NUMBER_TEXT)}" for k in range(n)]
    return ("h\n" + "\n".join(rows) + "\n").encode()


@FUZZ
@given(
    inter=mutated(RECBOLE_INTER) | mutated(RECBOLE_INTER.replace(b"\t4\t", b"\t4.5\t")) | any_bytes() | numeric_files(),
    lo=st.sampled_from([None, 2.0]),
)
def test_column_wise_fast_path_agrees_with_line_by_line(inter, lo):
    """The pandas path may only accept a file the line-by-line path accepts without a problem,
    and must then give the identical rows; otherwise the line path must find a problem."""
    from mmrank.data.clean_table import parse_clean
    from mmrank.data.interaction_table import _parse_line_by_line, text_lines
    from mmrank.data.validate import ReadReport

    body = inter.split(b"\n", 1)[-1]  # after the header line, i.e. from line 2
    checks = dict(rating_range=None if lo is None else (lo, 5.0), item_id_check=None, int_column_check={})
    fast = parse_clean(body, 2, n_fields=4, user=0, item=1, rating=2, timestamp=3, int_columns={}, sep="\t", **checks)
    report = ReadReport("x.inter")
    layout = ColumnLayout(4, 0, 1, 2, 3)
    try:
        slow = _parse_line_by_line(text_lines(body, first_lineno=2), layout=layout, sep="\t", report=report, **checks)
    except DataError:
        assert fast is None
        return
    if fast is None:
        return  # declining is always allowed: the line path then decides
    assert report.ok
    assert list(fast["users"]) == list(slow.interactions.user_ids)
    assert list(fast["items"]) == list(slow.interactions.item_ids)
    assert list(fast["ratings"]) == list(slow.interactions.ratings)
    assert list(fast["times"]) == list(slow.interactions.timestamps)
    assert list(fast["line_numbers"]) == list(slow.line_numbers)


def test_fast_path_takes_clean_files_and_declines_dirty_ones():
    """So the property above is not vacuous: the fast path really runs on clean input."""
    from mmrank.data.clean_table import parse_clean

    args = dict(n_fields=4, user=0, item=1, rating=2, timestamp=3, int_columns={}, sep="\t",
                rating_range=None, item_id_check=None, int_column_check={})
    body = RECBOLE_INTER.split(b"\n", 1)[1]
    out = parse_clean(body, 2, **args)
    assert list(out["users"]) == ["1", "1", "2", "3"] and list(out["line_numbers"]) == [2, 3, 4, 5]
    assert list(out["times"]) == [100, 200, 150, 90]
    for dirty in (body + b"1\t10\t4\t100\n", body.replace(b"\n", b"\r\n"), body + b"x\n", body + b"\t\t\t\n",
                  body.replace(b"4", b"nan", 1), body.replace(b"1\t10", b" 1\t10", 1)):
        assert parse_clean(dirty, 2, **args) is None
