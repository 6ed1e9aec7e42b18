"""Every interaction format in (SASRec text, CSV/TSV/Parquet tables, MMRec with id mappings,
MovieLens-1M), detected or named, and `mmrank data convert` between every pair, round-tripping."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.data.formats import detect_format, load_interaction_data, write_interactions
from mmrank.data.interaction_data import InteractionData
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.data.validate import ReadReport
from mmrank.errors import ConfigError, DataError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def events(data: InteractionData) -> list[tuple]:
    i = data.interactions
    return list(zip(i.user_ids.tolist(), i.item_ids.tolist()))


# -- SASRec text ---------------------------------------------------------------------------------
def test_sasrec_reads_one_event_per_line_and_one_user_per_line_alike(tmp_path):
    per_event = write(tmp_path / "a.txt", "1 10\n1 11\n2 10\n1 12\n")
    per_user = write(tmp_path / "b.txt", "1 10 11 12\n2 10\n")
    a, b = load_interaction_data(per_event), load_interaction_data(per_user)
    assert a.format == b.format == "sasrec"
    by_user = lambda d: {u: [i for uu, i in events(d) if uu == u] for u in ("1", "2")}  # noqa: E731
    assert by_user(a) == by_user(b) == {"1": ["10", "11", "12"], "2": ["10"]}
    assert a.interactions.order == "sequence" and a.interactions.ratings is None and not a.interactions.timed


def test_sasrec_without_user_ids_and_bad_lines(tmp_path):
    p = write(tmp_path / "seq.txt", "5 6 7\n\n8 9\n")
    d = load_interaction_data(p, "sasrec", user_ids="line")
    assert events(d) == [("1", "5"), ("1", "6"), ("1", "7"), ("2", "8"), ("2", "9")]
    bad = write(tmp_path / "bad.txt", "1 5 6\n2\n3 7\n")
    d = load_interaction_data(bad, "sasrec")
    (problem,) = d.report.problems
    assert problem.line == 2 and "user '2' has no item" in problem.message
    assert d.report.records_in == 3 and d.report.records_read == 2
    with pytest.raises(ConfigError, match="user_ids"):
        load_interaction_data(bad, "sasrec", user_ids="middle")
    with pytest.raises(ConfigError, match=r"do not apply to the 'sasrec' format"):
        load_interaction_data(bad, "sasrec", sep=",")


# -- plain tables -------------------------------------------------------------------------------
def test_csv_tables_with_aliases_quotes_semicolons_and_no_time(tmp_path):
    ml = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3,1260759179\n")
    d = load_interaction_data(ml)
    assert d.format == "table" and events(d) == [("1", "31"), ("1", "1029")]
    assert d.interactions.ratings.tolist() == [2.5, 3.0] and d.interactions.timed
    quoted = write(tmp_path / "q.csv", 'user,item\n"a, b","x"\nc,"y ""z"""\n')
    assert events(load_interaction_data(quoted)) == [("a, b", "x"), ("c", 'y "z"')]
    semi = write(tmp_path / "s.csv", "user_id;item_id\nu;i\n")
    assert events(load_interaction_data(semi)) == [("u", "i")]
    plain = write(tmp_path / "plain.csv", "user_id,item_id\nu1,i1\nu1,i2\nu1,i1\n")
    d = load_interaction_data(plain)
    assert d.interactions.order == "row" and d.split_labels is None and len(d.interactions) == 3


def test_table_bad_records_are_quarantined_with_their_line(tmp_path):
    p = write(tmp_path / "t.csv", "user_id,item_id,rating\nu,i,5\nu,,4\nv,j,x\nw,k\n")
    d = load_interaction_data(p)
    assert [(q.line, q.message.split(" (")[0]) for q in d.report.problems] == [
        (3, "empty item id"), (4, "rating 'x' is not a finite number"), (5, "expected 3 fields separated by ',', found 2")]
    with pytest.raises(DataError, match=r"t\.csv:3: empty item id"):
        load_interaction_data(p, strict=True)
    with pytest.raises(DataError, match="header has no item column"):
        load_interaction_data(write(tmp_path / "h.csv", "user,thing\n1,2\n"))


def test_parquet_tables_position_column_and_split_column(tmp_path):
    import pandas as pd

    p = tmp_path / "t.parquet"
    pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "position": [0, 1, 0],
                  "x_label": [0, 2, 0], "other": [1.5, 2.5, 3.5]}).to_parquet(p)
    assert detect_format(p) == "table"
    d = load_interaction_data(p)
    assert d.interactions.order == "sequence" and d.split_labels.tolist() == [0, 2, 0]
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"user_id": ["a", None], "item_id": ["x", "y"], "rating": [1.0, float("nan")]}).to_parquet(bad)
    d = load_interaction_data(bad)
    assert [q.line for q in d.report.problems] == [2]  # row 2: no user (its NaN rating is the same record)


# -- detection -------------------------------------------------------------------------------
def test_detection_tells_formats_apart_and_failure_names_format_and_config_key(tmp_path):
    assert detect_format(write(tmp_path / "seq.txt", "1 2 3 4\n")) == "sasrec"
    assert detect_format(write(tmp_path / "letor.txt", "2 qid:1 1:0.5\n")) == "libsvm"
    assert detect_format(write(tmp_path / "t.tsv", "user_id\titem_id\n1\t2\n")) == "table"
    assert detect_format(write(tmp_path / "noext", "user_id\titem_id\n1\t2\n")) == "table"
    assert detect_format(write(tmp_path / "rb" / "rb.inter", "user_id:token\titem_id:token\n1\t2\n").parent) == "recbole"
    assert detect_format(write(tmp_path / "mm" / "mm.inter", "userID\titemID\tx_label\n0\t0\t0\n").parent) == "mmrec"
    assert detect_format(write(tmp_path / "ml1m" / "ratings.dat", "1::2::5::978300760\n").parent) == "movielens"
    with pytest.raises(DataError) as e:
        detect_format(write(tmp_path / "what.data", "hello\n"))
    assert "--format" in str(e.value) and "data.format" in str(e.value)
    # the config names the format when detection cannot: a headerless two-column CSV is read as SASRec
    # text by detection, the table reader says what is missing
    with pytest.raises(DataError, match="header has no user column"):
        load_interaction_data(write(tmp_path / "h.csv", "1,2\n"), "csv")


# -- MMRec id mappings and files not read -------------------------------------------------------
def test_mmrec_id_mappings_give_raw_ids_and_unknown_files_are_listed(tmp_path):
    d = tmp_path / "baby"
    write(d / "baby.inter", "userID\titemID\tx_label\n0\t1\t0\n1\t0\t2\n")
    write(d / "i_id_mapping.csv", "asin\titemID\nB01\t0\nB02\t1\n")
    write(d / "u_id_mapping.csv", "user_id\tuserID\nA9\t0\nA8\t1\n")
    np.save(d / "text_feat.npy", np.eye(2, dtype=np.float32))
    np.save(d / "user_graph_dict.npy", np.zeros(2))
    write(d / "notes.md", "x")
    data = load_interaction_data(d)
    assert events(data) == [("A9", "B02"), ("A8", "B01")]
    assert data.items.item_ids.tolist() == ["B01", "B02"] and data.interactions.order == "row"
    assert set(data.files_not_read) == {"user_graph_dict.npy", "notes.md"}
    assert "_feat.npy" in data.files_not_read["user_graph_dict.npy"]
    write(d / "i_id_mapping.csv", "asin\titemID\nB01\t0\n")
    with pytest.raises(DataError, match="no entry for id '1'"):
        load_interaction_data(d)


def test_movielens_1m_ratings_dat_and_movies_dat(tmp_path):
    d = tmp_path / "ml-1m"
    write(d / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(d / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James (1996)::Animation|Children's\n"
          .encode("latin-1"))
    write(d / "users.dat", "1::F::1::10::48067\n")
    data = load_interaction_data(d)
    assert data.format == "movielens" and events(data) == [("1", "1193"), ("1", "661")]
    assert data.items.titles.tolist() == ["One Flew Over the Cuckoo's Nest (1975)", "James (1996)"]
    assert data.items.features["meta"][:, :3].tolist() == [[0, 0, 1], [1, 1, 0]]  # Animation, Children's, Drama
    assert data.items.features["meta"][:, 3].tolist() == [1975, 1996]
    assert "user features" in data.files_not_read["users.dat"]


# -- writing and round trips ----------------------------------------------------------------------
FORMATS = {"table": "t.csv", "sasrec": "s.txt", "recbole": "rb", "mmrec": "mm", "movielens": "ml/u.data"}
HOLDS = {  # what each format keeps: ratings, real times, the split column
    "table": (True, True, True), "sasrec": (False, False, False), "recbole": (True, True, True),
    "mmrec": (True, True, True), "movielens": (True, True, False),
}


def sample() -> InteractionData:
    inter = Interactions(["u1", "u2", "u1", "u1", "u2", "u3"], ["a", "b", "b", "c", "a", "c"],
                         [3, 1, 1, 2, 5, 9], [4, 5, 3, 2, 1, 4])
    items = ItemFeatures(["a", "b", "c"], {"text": np.eye(3, dtype=np.float32)}, titles=["A", "B", "C"])
    return InteractionData(inter, items, ReadReport("sample"), "table", split_labels=[0, 0, 1, 2, 0, 0])


def per_user(data: InteractionData, with_values: tuple[bool, bool, bool]) -> dict:
    """Each user's events in their order, with the values both sides hold."""
    ratings, times, split = with_values
    i = data.interactions
    order = np.lexsort((np.arange(len(i)), i.timestamps))
    out: dict = {}
    for r in order:
        row = (str(i.item_ids[r]),)
        row += (float(i.ratings[r]),) if ratings else ()
        row += (float(i.timestamps[r]),) if times else ()
        row += (int(data.split_labels[r]),) if split else ()
        out.setdefault(str(i.user_ids[r]), []).append(row)
    return out


@pytest.mark.parametrize("fmt_a,fmt_b", list(itertools.product(FORMATS, FORMATS)))
def test_every_pair_of_formats_round_trips(tmp_path, fmt_a, fmt_b):
    """A → B → A keeps each user's events in order, and every value both A and B can hold.
    MovieLens files need ratings and times: SASRec text (which has neither) is refused, saying so."""
    a_path, b_path, back_path = tmp_path / "a" / FORMATS[fmt_a], tmp_path / "b" / FORMATS[fmt_b], tmp_path / "c" / FORMATS[fmt_a]
    write_interactions(sample(), a_path, fmt_a)
    a = load_interaction_data(a_path.parent if fmt_a == "movielens" else a_path)
    if fmt_b == "movielens" and fmt_a == "sasrec":
        with pytest.raises(DataError, match="need ratings and timestamps"):
            write_interactions(a, b_path, fmt_b)
        return
    write_interactions(a, b_path, fmt_b)
    b = load_interaction_data(b_path.parent if fmt_b == "movielens" else b_path)
    if fmt_a == "movielens" and fmt_b == "sasrec":  # the way back needs the ratings and times SASRec dropped
        with pytest.raises(DataError, match="need ratings and timestamps"):
            write_interactions(b, back_path, fmt_a)
        return
    write_interactions(b, back_path, fmt_a)
    back = load_interaction_data(back_path.parent if fmt_a == "movielens" else back_path)
    common = tuple(x and y for x, y in zip(HOLDS[fmt_a], HOLDS[fmt_b]))
    assert per_user(back, common) == per_user(a, common)
    assert back.interactions.order == (a.interactions.order if HOLDS[fmt_b][1] else
                                       ("sequence" if fmt_a == "sasrec" else back.interactions.order))
    if all(HOLDS[fmt_a]) and all(HOLDS[fmt_b]):
        assert per_user(back, (True, True, True)) == per_user(sample(), (True, True, True))


def test_writers_say_what_they_cannot_hold_and_refuse_what_they_must(tmp_path):
    result = write_interactions(sample(), tmp_path / "s.txt")
    text = " | ".join(result.dropped)
    assert "ratings" in text and "timestamps" in text and "x_label" in text and "item features" in text
    no_time = load_interaction_data(tmp_path / "s.txt")
    with pytest.raises(DataError, match="need ratings and timestamps; this data has no ratings"):
        write_interactions(no_time, tmp_path / "ml" / "u.data")
    spaced = InteractionData(Interactions(["a b"], ["i"], [0]), None, ReadReport("x"), "table")
    with pytest.raises(DataError, match="holds whitespace"):
        write_interactions(spaced, tmp_path / "x.txt")
    # MMRec keeps the item features (rows by dense id) and maps ids back on reading
    write_interactions(sample(), tmp_path / "mm", "mmrec")
    mm = load_interaction_data(tmp_path / "mm")
    assert mm.items.item_ids.tolist() == ["a", "b", "c"]
    assert np.array_equal(mm.items.features["text"], np.eye(3, dtype=np.float32))


def test_convert_cli_between_interaction_formats(tmp_path):
    src = write(tmp_path / "mm" / "mm.inter", "userID\titemID\trating\tx_label\n0\t0\t5\t0\n0\t1\t4\t1\n0\t2\t3\t2\n")
    np.save(tmp_path / "mm" / "text_feat.npy", np.eye(3, dtype=np.float32))
    runner = CliRunner()
    r = runner.invoke(app, ["data", "convert", str(src.parent), str(tmp_path / "out.csv")])
    assert r.exit_code == 0, r.output
    assert "not kept: item features and titles" in r.output and "wrote 3 interactions (1 users, 3 items) as table" in r.output
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "user_id,item_id,rating,x_label"
    r = runner.invoke(app, ["data", "convert", str(tmp_path / "out.csv"), str(tmp_path / "seq.txt")])
    assert r.exit_code == 0 and (tmp_path / "seq.txt").read_text() == "0 0 1 2\n"
    r = runner.invoke(app, ["data", "convert", str(tmp_path / "seq.txt"), str(tmp_path / "folder")])
    assert r.exit_code == 2 and "--to" in r.output
    r = runner.invoke(app, ["data", "convert", str(tmp_path / "seq.txt"), str(tmp_path / "folder"), "--to", "recbole"])
    assert r.exit_code == 0 and (tmp_path / "folder" / "folder.inter").read_text().startswith("user_id:token\titem_id:token\tposition:float")


def test_inspect_states_order_own_split_and_files_not_read(tmp_path):
    d = tmp_path / "mm"
    write(d / "mm.inter", "userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n1\t1\t0\n")
    np.save(d / "audio_feat.npy", np.ones((2, 4), dtype=np.float32))
    np.save(d / "image_features.npy", np.ones((2, 4), dtype=np.float32))
    r = CliRunner().invoke(app, ["data", "inspect", str(d), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["timestamps"].startswith("none: no timestamp column") and "min" not in json.dumps(s["timestamps"])
    assert s["own_split"] == {"train": 2, "valid": 0, "test": 1}
    assert s["item_features"]["audio"]["dim"] == 4
    assert list(s["files_not_read"]) == ["image_features.npy"]
