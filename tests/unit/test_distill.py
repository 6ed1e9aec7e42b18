"""Linear distillation: the student imitates its teacher, retention is the measured ratio."""

from __future__ import annotations

import numpy as np
import pytest

from mmrank.data.model import RankingSet
from mmrank.errors import DataError
from mmrank.metrics import evaluate
from mmrank.models.distill import LinearStudent, distill, latency_per_100, retention
from rerank_support import known_function_set


class LinearTeacher:
    """A teacher whose scores ARE linear in the features plus a per-query offset."""

    def __init__(self, w):
        self.w = w

    def score(self, rset: RankingSet) -> np.ndarray:
        return rset.feature_matrix() @ self.w + 100.0 * rset.query_index


def test_student_recovers_a_linear_teacher_ignoring_query_offsets():
    train, test = known_function_set(30, seed=1), known_function_set(10, seed=2)
    w = np.random.default_rng(0).normal(size=train.feature_matrix().shape[1])
    teacher = LinearTeacher(w)
    student = distill(teacher, train, alpha=1e-6)
    s, t = student.score(test), teacher.score(test)
    for q in range(test.n_queries):
        a, b = test.offsets[q], test.offsets[q + 1]
        assert np.corrcoef(s[a:b], t[a:b])[0, 1] > 0.999
    assert evaluate(test, s, ["ndcg@10"])["ndcg@10"] == pytest.approx(evaluate(test, t, ["ndcg@10"])["ndcg@10"])


def test_retention_ratio():
    assert retention(0.8, 0.9, 0.7) == pytest.approx(0.5)
    assert retention(0.95, 0.9, 0.7) == pytest.approx(1.25)
    assert retention(0.8, 0.7, 0.7) is None


def test_save_load_and_dims(tmp_path):
    train = known_function_set(10, seed=1)
    student = LinearStudent(alpha=1.0).fit(train)  # no teacher: fits the labels
    student.save(tmp_path)
    again = LinearStudent.load(tmp_path)
    assert np.array_equal(again.score(train), student.score(train))
    with pytest.raises(DataError, match="differ"):
        again.score(train.with_features({k: v for k, v in train.features.items() if k != "meta"}))


def test_latency_is_measured_on_100_candidates():
    train = known_function_set(5, seed=1)
    student = LinearStudent().fit(train)
    calls = []

    class Spy:
        def score(self, rset):
            calls.append(rset.n_candidates)
            return student.score(rset)

    lat = latency_per_100(Spy(), train, repeats=5)
    assert calls == [100] * 6 and lat["p95_ms"] >= lat["median_ms"] > 0


def test_an_unregularised_student_fits_data_with_query_features():
    # Per-query centring turns query features into zero columns: alpha = 0 used to be singular.
    rng = np.random.default_rng(0)
    n = 40
    rset = RankingSet(query_ids=[f"q{i}" for i in range(8)], offsets=np.arange(0, n + 1, 5), candidate_ids=[str(i) for i in range(n)],
                      labels=rng.integers(0, 3, n), features={"f": rng.normal(size=(n, 3))},
                      query_features={"q": rng.normal(size=(8, 2))})
    student = LinearStudent(alpha=0.0).fit(rset)
    assert np.isfinite(student.score(rset)).all()
