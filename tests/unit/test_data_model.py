import numpy as np
import pytest

from mmrank.data.model import Interactions, ItemFeatures, RankingSet, concat_ranking_sets
from mmrank.errors import DataError


def _set():
    return RankingSet(
        query_ids=["q1", "q2", "q3"],
        offsets=[0, 2, 5, 6],
        candidate_ids=["a", "b", "c", "d", "e", "f"],
        labels=[1, 0, 2, 0, 1, 0],
        features={"image": np.arange(12).reshape(6, 2), "conflict": [0, 1, 0, 0, 1, 0]},
        query_features={"text": [[1.0], [2.0], [3.0]]},
    )


def test_padded_view_and_its_inverse():
    r = _set()
    padded, mask = r.padded(r.features["image"])
    assert padded.shape == (3, 3, 2)
    assert mask.tolist() == [[True, True, False], [True, True, True], [True, False, False]]
    assert padded[1, 2].tolist() == [8.0, 9.0]
    assert padded[0, 2].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(r.unpad(padded), r.features["image"])
    cut, cmask = r.padded(r.labels, max_len=2)
    assert cut.shape == (3, 2) and cmask.sum() == 5


def test_subset_keeps_rows_with_their_query():
    sub = _set().subset([2, 0])
    assert sub.query_ids.tolist() == ["q3", "q1"]
    assert sub.candidate_ids.tolist() == ["f", "a", "b"]
    assert sub.offsets.tolist() == [0, 1, 3]
    assert sub.query_features["text"][:, 0].tolist() == [3.0, 1.0]
    assert sub.features["image"][0].tolist() == [10.0, 11.0]


def test_take_rows_keeps_every_query_and_a_mask_equals_its_positions():
    r = _set()
    by_index = r.take_rows(np.array([1, 2, 4]))
    by_mask = r.take_rows(np.array([False, True, True, False, True, False]))
    for t in (by_index, by_mask):
        assert t.query_ids.tolist() == ["q1", "q2", "q3"]
        assert t.offsets.tolist() == [0, 1, 3, 3]          # q3 is left empty, not dropped
        assert t.candidate_ids.tolist() == ["b", "c", "e"]
        assert t.labels.tolist() == [0, 2, 1]
        assert t.features["image"][:, 0].tolist() == [2.0, 4.0, 8.0]


def test_feature_matrix_orders_columns_by_name_and_broadcasts_query_features():
    m = _set().feature_matrix()
    assert m.shape == (6, 4)  # conflict(1) + image(2) + query text(1)
    assert m[2].tolist() == [0.0, 4.0, 5.0, 2.0]


def test_inconsistent_shapes_are_refused_with_the_reason():
    with pytest.raises(DataError, match="offsets"):
        RankingSet(query_ids=["q"], offsets=[0, 3], candidate_ids=["a", "b"], labels=[0, 1])
    with pytest.raises(DataError, match="feature 'x' has 1 rows"):
        RankingSet(query_ids=["q"], offsets=[0, 2], candidate_ids=["a", "b"], labels=[0, 1], features={"x": [[1.0]]})


def test_concat_and_fingerprint():
    r = _set()
    both = concat_ranking_sets([r.subset([0]), r.subset([1, 2])])
    assert both.fingerprint() == r.fingerprint()
    assert r.subset([1, 0]).fingerprint() != r.subset([0, 1]).fingerprint()


def test_interactions_sort_and_item_feature_masks():
    inter = Interactions(user_ids=[2, 1, 1], item_ids=[5, 6, 7], timestamps=[3, 9, 1], ratings=[1, 2, 3])
    s = inter.sorted()
    assert s.user_ids.tolist() == ["1", "1", "2"] and s.item_ids.tolist() == ["7", "6", "5"]
    items = ItemFeatures(item_ids=[1, 2], features={"image": [[0.0], [1.0]]}, masks={"image": [False, True]})
    assert items.masks["image"].tolist() == [False, True]
    with pytest.raises(DataError):
        ItemFeatures(item_ids=[1, 2], features={"image": [[0.0]]})
