"""MQ2008 (LETOR 4.0) through the LibSVM reader and `mmrank data validate` on the real files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from mmrank.data.formats import load_ranking, read_ranking, write_ranking
from mmrank.data.model import concat_ranking_sets


def _plant_errors(lines: list[str]) -> list[str]:
    """Break three lines of the first 1,000: a non-numeric value, a missing qid, a NaN feature."""
    out = list(lines)
    t = out[16].split(" ")
    t[6] = "5:abc"                      # line 17: non-numeric value
    out[16] = " ".join(t)
    t = out[499].split(" ")
    assert t[1].startswith("qid:")
    del t[1]                            # line 500: qid missing
    out[499] = " ".join(t)
    t = out[900].split(" ")
    t[10] = "9:nan"                     # line 901: NaN feature
    out[900] = " ".join(t)
    return out


def test_validate_finds_exactly_the_planted_lines(data_dir, tmp_path):
    head = (data_dir / "ltr" / "MQ2008" / "S1.txt").read_text().splitlines()[:1000]
    f = tmp_path / "s1_head.txt"
    f.write_text("\n".join(_plant_errors(head)) + "\n")
    proc = subprocess.run([sys.executable, "-m", "mmrank", "data", "validate", str(f), "--format", "libsvm"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    located = [line for line in proc.stdout.splitlines() if re.match(re.escape(str(f)) + r":\d+:", line)]
    assert located == [
        f"{f}:17: feature 5 has non-numeric value 'abc' — write the value as a number, e.g. 7:0.25",
        f"{f}:500: qid missing — write qid:ID after the label (or put a .query group file beside it)",
        f"{f}:901: feature 9 is NaN or infinite — replace it with a finite number",
    ]
    q = Path(str(f) + ".quarantine.jsonl")
    assert f"1000 records in: 997 read, 3 quarantined (quarantine: {q})" in proc.stdout
    rows = [json.loads(x) for x in q.read_text().splitlines()]
    assert [r["line"] for r in rows] == [17, 500, 901]
    assert rows[1]["record"] == _plant_errors(head)[499]


def test_all_five_parts_give_the_published_counts(data_dir):
    parts = [load_ranking(data_dir / "ltr" / "MQ2008" / f"S{k}.txt") for k in range(1, 6)]
    rset = concat_ranking_sets(parts)
    assert (rset.n_queries, rset.n_candidates) == (784, 15211)
    assert rset.modality_dims == {"letor": 46}
    assert sorted(np.unique(rset.labels).tolist()) == [0, 1, 2]
    assert len(set(rset.query_ids.tolist())) == 784  # no qid spans two parts
    assert rset.candidate_ids[0] == "GX008-86-4444840"
    assert rset.features["letor"][0, :3].tolist() == np.array([0.007477, 0, 1], dtype=np.float32).tolist()


def test_mq2008_part_round_trips_through_every_format(data_dir, tmp_path):
    s5, report = read_ranking(data_dir / "ltr" / "MQ2008" / "S5.txt")
    assert report.ok and report.records_in == 2874
    for name in ("s5.txt", "s5.parquet", "s5.jsonl"):
        back = load_ranking(write_ranking(s5, tmp_path / name))
        np.testing.assert_array_equal(back.features["letor"], s5.features["letor"])
        np.testing.assert_array_equal(back.candidate_ids, s5.candidate_ids)
        np.testing.assert_array_equal(back.offsets, s5.offsets)
        np.testing.assert_array_equal(back.labels, s5.labels)


def test_lightgbm_lambdarank_example_with_group_files(data_dir):
    d = data_dir / "ltr" / "lightgbm-lambdarank"
    train, report = read_ranking(d / "rank.train")
    test = load_ranking(d / "rank.test", n_features=train.modality_dims["letor"])
    assert report.ok and report.records_in == 3005
    assert (train.n_queries, train.n_candidates, test.n_queries, test.n_candidates) == (201, 3005, 50, 768)
    assert train.group_sizes[:3].tolist() == [1, 13, 5]  # the first lines of rank.train.query
    assert sorted(np.unique(train.labels).tolist()) == [0, 1, 2, 3, 4]
    assert train.modality_dims == test.modality_dims == {"letor": 300}
    assert train.candidate_ids[:3].tolist() == ["rank.train#0:0", "rank.train#1:0", "rank.train#1:1"]
    # positional query numbers are qualified by the file, so train and test share no query id
    assert not set(train.query_ids) & set(test.query_ids)
