"""ML-100K read two ways (RecBole atomic and GroupLens raw) must give the same data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmrank.data.io_movielens import MOVIELENS_GENRES, read_movielens_raw
from mmrank.data.io_recbole import meta_columns, read_recbole


@pytest.fixture(scope="module")
def ml100k(data_dir: Path) -> Path:
    d = data_dir / "ml-100k"
    if not (d / "ml-100k.inter").is_file() or not (d / "raw" / "u.data").is_file():
        pytest.skip(f"ML-100K not found under {d} (needs ml-100k.inter and raw/u.data)")
    return d


@pytest.fixture(scope="module")
def both(ml100k):
    return read_recbole(ml100k), read_movielens_raw(ml100k / "raw")


def test_same_100k_interactions_both_ways(both):
    (rb, rb_items, rb_report), (raw, raw_items, raw_report) = both
    for inter in (rb, raw):
        assert len(inter) == 100_000 and inter.n_users == 943 and inter.n_items == 1682
        assert inter.ratings.min() == 1 and inter.ratings.max() == 5
    key = lambda i: Counter(zip(i.user_ids, i.item_ids, i.ratings, i.timestamps))  # noqa: E731
    assert key(rb) == key(raw)
    for report in (rb_report, raw_report):
        assert report.ok and report.records_in == report.records_read == 100_000 + 1682


def test_item_features_agree(both, ml100k):
    (_, rb_items, _), (_, raw_items, _) = both
    assert list(rb_items.item_ids) == list(raw_items.item_ids) == [str(i) for i in range(1, 1683)]
    # Raw titles carry the year in parentheses; RecBole's do not, otherwise they match.
    assert raw_items.titles[0] == "Toy Story (1995)" and rb_items.titles[0] == "Toy Story"
    assert raw_items.titles[542] == "Misérables, Les (1995)"  # Latin-1 decoded
    # The genre multi-hot is the same matrix up to column order.
    cols = meta_columns(ml100k / "ml-100k.item")
    rb_genres = rb_items.features["meta"][:, [cols.index(f"genre:{g}") for g in MOVIELENS_GENRES]]
    np.testing.assert_array_equal(rb_genres, raw_items.features["meta"][:, :19])
    assert raw_items.features["meta"][:, :19].sum() == 2893  # genre assignments in u.item



def test_splits_on_real_data(both):
    """Leave-one-out and the temporal cut on the 100k ratings: sizes and the time order hold."""
    import pandas as pd

    from mmrank.data.splits import leave_one_out, temporal_split

    (inter, _, _), _ = both
    loo = leave_one_out(inter)
    assert loo.sizes == {"train": 100_000 - 2 * 943, "valid": 943, "test": 943}  # every user has >= 20
    df = pd.DataFrame({"u": inter.user_ids, "t": inter.timestamps})
    latest = df.groupby("u")["t"].max()
    test = df.iloc[loo.parts["test"]]
    assert sorted(test["u"]) == sorted(latest.index)
    assert (test.set_index("u")["t"] == latest.loc[test["u"]].to_numpy()).all()
    cut = temporal_split(inter, 0.1, 0.1)
    times = {name: inter.timestamps[rows] for name, rows in cut.parts.items()}
    assert times["train"].max() < times["valid"].min() <= times["valid"].max() < times["test"].min()
    assert abs(cut.sizes["test"] - 10_000) <= 5 and abs(cut.sizes["valid"] - 10_000) <= 5
