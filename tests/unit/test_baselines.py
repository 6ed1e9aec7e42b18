import numpy as np
import pytest

from mmrank.data.model import RankingSet
from mmrank.errors import DataError
from mmrank.models.baselines import HeuristicBaseline, LambdaMART


def _learnable_set(n_queries=60, per_query=10, seed=0):
    """Label is a known step function of feature 0 of the 'meta' modality; 'noise' is noise."""
    rng = np.random.default_rng(seed)
    n = n_queries * per_query
    x = rng.uniform(size=n)
    return RankingSet(
        query_ids=[f"q{i}" for i in range(n_queries)],
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"c{j}" for j in range(n)],
        labels=np.digitize(x, [0.5, 0.8]),
        features={"meta": np.c_[x, rng.normal(size=n)], "noise": rng.normal(size=(n, 3))},
    )


def test_lambdamart_learns_the_rule_and_round_trips(tmp_path):
    train, test = _learnable_set(seed=0), _learnable_set(seed=1)
    model = LambdaMART(n_estimators=50, min_data_in_leaf=5).fit(train, test)
    s = model.score(test)
    # Within every query the highest-scored candidate has the highest grade present.
    qi = test.query_index
    top = [np.argmax(s[qi == i]) for i in range(test.n_queries)]
    best = [test.labels[qi == i].max() for i in range(test.n_queries)]
    got = [test.labels[qi == i][t] for i, t in enumerate(top)]
    assert np.mean(np.array(got) == np.array(best)) > 0.9
    model.save(tmp_path)
    again = LambdaMART.load(tmp_path)
    np.testing.assert_array_equal(again.score(test), s)


def test_lambdamart_detects_a_changed_model_file(tmp_path):
    model = LambdaMART(n_estimators=5, min_data_in_leaf=5).fit(_learnable_set())
    model.save(tmp_path)
    text = (tmp_path / "model.txt").read_text()
    (tmp_path / "model.txt").write_text(text.replace("learning_rate", "learning_rate ", 1))
    with pytest.raises(DataError, match="checksum"):
        LambdaMART.load(tmp_path)


def test_lambdamart_refuses_other_modalities_and_non_integer_labels():
    model = LambdaMART(n_estimators=5, min_data_in_leaf=5).fit(_learnable_set())
    other = _learnable_set().with_features({"meta": np.zeros((600, 2))})
    with pytest.raises(DataError, match="differ"):
        model.score(other)
    with pytest.raises(DataError, match="integer"):
        LambdaMART().fit(_learnable_set().with_labels(np.full(600, 0.5)))


def test_heuristic_is_cosine_plus_compliance_minus_conflict():
    rset = RankingSet(
        query_ids=["q"],
        offsets=[0, 3],
        candidate_ids=["a", "b", "c"],
        labels=[0, 1, 2],
        features={
            "text": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            "compliance": [0.0, 1.0, 0.0],
            "conflict": [1.0, 0.0, 0.0],
        },
        query_features={"text": [[2.0, 0.0]]},
    )
    s = HeuristicBaseline(w_compliance=0.1, w_conflict=0.5).score(rset)
    np.testing.assert_allclose(s, [1.0 - 0.5, 0.0 + 0.1, 1 / np.sqrt(2)])


def test_heuristic_falls_back_to_baseline_scores_and_round_trips(tmp_path):
    rset = RankingSet(query_ids=["q"], offsets=[0, 2], candidate_ids=["a", "b"], labels=[0, 1], baseline_scores=[0.3, 0.7])
    model = HeuristicBaseline(w_conflict=2.0)
    np.testing.assert_allclose(model.score(rset), [0.3, 0.7])
    model.save(tmp_path)
    assert HeuristicBaseline.load(tmp_path).params.w_conflict == 2.0
    bare = RankingSet(query_ids=["q"], offsets=[0, 1], candidate_ids=["a"], labels=[0])
    with pytest.raises(DataError, match="nothing to score"):
        model.score(bare)


def test_heuristic_uses_the_named_query_feature_even_without_a_candidate_feature():
    rset = RankingSet(query_ids=["q"], offsets=[0, 2], candidate_ids=["x", "y"], labels=[0, 1],
                      features={"a": np.array([[1.0, 0.0], [0.0, 1.0]]), "b": np.array([[0.0, 1.0], [1.0, 0.0]])},
                      query_features={"a": np.array([[1.0, 0.0]]), "b": np.array([[1.0, 0.0]])})
    np.testing.assert_allclose(HeuristicBaseline(query_feature="b").score(rset), [0.0, 1.0])  # pair b/b, not a/a
