"""Linear distillation: a ridge-regression student that imitates a teacher's scores.

The student sees the flat feature matrix (``RankingSet.feature_matrix``: every modality and the
query features), standardised with training statistics. Ranking only depends on the order
*within* a query, so features and teacher scores are centred per query before the fit: the
student learns the teacher's within-query preferences, not its per-query offsets.

``retention = (student − baseline) / (teacher − baseline)`` of mean nDCG@10 on held-out data:
the share of the teacher's gain over the baseline that the student keeps. Measured, not assumed;
``latency_per_100`` times the student's ``score`` on 100-candidate queries.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from pydantic import Field

from mmrank.config import Strict
from mmrank.data.model import RankingSet
from mmrank.errors import DataError
from mmrank.models.params import WithParams
from mmrank.models.storage import load_tensors, save_tensors


def _centre_per_query(values: np.ndarray, rset: RankingSet) -> np.ndarray:
    qi = rset.query_index
    sizes = np.maximum(rset.group_sizes, 1).astype(np.float64)
    if values.ndim == 1:
        means = np.bincount(qi, weights=values, minlength=rset.n_queries) / sizes
        return values - means[qi]
    means = np.stack([np.bincount(qi, weights=values[:, j], minlength=rset.n_queries) for j in range(values.shape[1])], axis=1)
    return values - (means / sizes[:, None])[qi]


class LinearStudent(WithParams):
    """A ridge-regression ranker on the flat feature matrix (the distillation student)."""

    kind = "linear_student"

    class Params(Strict):
        alpha: float = Field(1.0, ge=0, description="ridge penalty")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.coef_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.input_dims_: dict[str, int] | None = None

    def _dims(self, rset: RankingSet) -> dict[str, int]:
        return {**{f"features.{k}": v for k, v in sorted(rset.modality_dims.items())},
                **{f"query_features.{k}": v for k, v in sorted(rset.query_feature_dims.items())}}

    def fit(self, train: RankingSet, valid: RankingSet | None = None, teacher_scores: np.ndarray | None = None) -> "LinearStudent":
        """Fit to ``teacher_scores (N,)`` of ``train``; without a teacher, to the labels (a plain
        linear ranker)."""
        target = train.labels if teacher_scores is None else np.asarray(teacher_scores, dtype=np.float64)
        if target.shape != (train.n_candidates,):
            raise DataError(f"teacher scores have shape {target.shape}, expected ({train.n_candidates},)")
        x = train.feature_matrix().astype(np.float64)
        self.input_dims_ = self._dims(train)
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        xc = _centre_per_query((x - self.mean_) / self.scale_, train)
        yc = _centre_per_query(target, train)
        d = xc.shape[1]
        # lstsq, not solve: with alpha = 0, columns that per-query centring zeroes (query
        # features) make the system singular; lstsq gives them weight 0.
        self.coef_ = np.linalg.lstsq(xc.T @ xc + self.params.alpha * np.eye(d), xc.T @ yc, rcond=None)[0]
        return self

    def score(self, rset: RankingSet) -> np.ndarray:
        """Score candidates with the fitted linear map on standardised features.

        No per-query centring at scoring time: it only shifts each query's scores by a constant, which
        does not change the order within a query.

        Args:
            rset: data with the same modalities and query features, at the same widths, as in ``fit``.

        Returns:
            (N,) float64 scores in ``rset``'s candidate order.

        Raises:
            DataError: when the student is not fitted or the data's modality widths differ.

        Example:
            >>> student = distill(teacher, train)  # doctest: +SKIP
            >>> scores = student.score(test)  # doctest: +SKIP
        """
        if self.coef_ is None:
            raise DataError("linear student is not fitted", hint="call fit() or load a trained run")
        dims = self._dims(rset)
        if dims != self.input_dims_:
            raise DataError(f"data modality dims {dims} differ from the student's {self.input_dims_}")
        x = rset.feature_matrix().astype(np.float64)
        return ((x - self.mean_) / self.scale_) @ self.coef_

    def save(self, directory: str | Path) -> None:
        """Write coefficients, mean and scale to ``model.safetensors`` and parameters plus input widths
        to ``model.json``.

        Args:
            directory: the run directory (created if needed).

        Raises:
            DataError: when the student is not fitted.
        """
        if self.coef_ is None:
            raise DataError("cannot save an unfitted linear student")
        save_tensors(directory, self.kind, {"coef": self.coef_, "mean": self.mean_, "scale": self.scale_},
                     {"params": self.get_params(), "input_dims": self.input_dims_})

    @classmethod
    def load(cls, directory: str | Path) -> "LinearStudent":
        """Read a student written by :meth:`save`, ready to score.

        Args:
            directory: the run directory.

        Returns:
            The fitted student.

        Raises:
            DataError: when ``model.json`` is missing or unreadable, names another kind, or the tensor
                file's checksum does not match.
        """
        tensors, meta = load_tensors(directory, cls.kind)
        model = cls(**meta["params"])
        model.coef_, model.mean_, model.scale_ = tensors["coef"], tensors["mean"], tensors["scale"]
        model.input_dims_ = {k: int(v) for k, v in meta["input_dims"].items()}
        return model


def distill(teacher, train: RankingSet, alpha: float = 1.0) -> LinearStudent:
    """A linear student fitted to ``teacher.score(train)``."""
    return LinearStudent(alpha=alpha).fit(train, teacher_scores=teacher.score(train))


def retention(student_ndcg: float, teacher_ndcg: float, baseline_ndcg: float) -> float | None:
    """Share of the teacher's gain over the baseline that the student keeps (None when the
    teacher gains nothing: the ratio would be meaningless)."""
    gain = teacher_ndcg - baseline_ndcg
    if abs(gain) < 1e-12:
        return None
    return float((student_ndcg - baseline_ndcg) / gain)


def latency_per_100(model, rset: RankingSet, repeats: int = 50) -> dict:
    """Median and p95 wall time (ms) of ``model.score`` on one query of 100 candidates (the
    largest query's candidates repeated/cut to 100), after one warm-up call."""
    q = rset.subset([int(np.argmax(rset.group_sizes))])
    rows = np.resize(np.arange(q.n_candidates), 100)
    one = RankingSet(query_ids=["latency"], offsets=[0, 100], candidate_ids=[f"c{i}" for i in range(100)],
                     labels=q.labels[rows], features={k: v[rows] for k, v in q.features.items()},
                     query_features=q.query_features)
    model.score(one)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.score(one)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)), "repeats": repeats}
