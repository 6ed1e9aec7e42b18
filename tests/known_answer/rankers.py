"""Small but real rankers for the audit's tests (fitted by least squares, not hard-coded scores).

They stand where LambdaMART or CoTRR stand in production, fast enough to retrain dozens of times.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge

from mmrank.data.model import RankingSet


class RidgeRanker:
    """Pointwise ridge regression of the label on all candidate features."""

    kind = "ridge"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def get_params(self) -> dict:
        return {"alpha": self.alpha}

    def fit(self, train: RankingSet, valid: RankingSet | None = None) -> "RidgeRanker":
        self.model_ = Ridge(alpha=self.alpha).fit(train.feature_matrix(), train.labels)
        return self

    def score(self, rset: RankingSet) -> np.ndarray:
        return self.model_.predict(rset.feature_matrix()).astype(np.float64)


class ResidualOnFirstStage(RidgeRanker):
    """A reranker that adds a learned correction to the first-stage ``baseline_scores``.

    Honest when the first stage is honest; when the first-stage score was built from the labels,
    this model ranks well whatever it learned — exactly what the permutation control must catch."""

    kind = "residual"

    def score(self, rset: RankingSet) -> np.ndarray:
        return rset.baseline_scores + super().score(rset)


class GatedModalityRanker:
    """One ridge scorer per modality, mixed by softmax attention over modality tokens.

    The attention logit of a modality is ``temperature`` x its scorer's training R²: a modality
    that explains the labels takes the attention mass. ``attention_share`` reports the mean
    weight per modality token, as an attention model does."""

    kind = "gated"

    def __init__(self, temperature: float = 5.0, alpha: float = 1.0) -> None:
        self.temperature = temperature
        self.alpha = alpha

    def get_params(self) -> dict:
        return {"temperature": self.temperature, "alpha": self.alpha}

    def fit(self, train: RankingSet, valid: RankingSet | None = None) -> "GatedModalityRanker":
        self.names_ = sorted(train.features)
        self.scorers_ = {m: Ridge(alpha=self.alpha).fit(train.features[m], train.labels) for m in self.names_}
        r2 = np.array([self.scorers_[m].score(train.features[m], train.labels) for m in self.names_])
        logits = self.temperature * r2
        self.weights_ = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        return self

    def score(self, rset: RankingSet) -> np.ndarray:
        return sum(w * self.scorers_[m].predict(rset.features[m]) for m, w in zip(self.names_, self.weights_))

    def attention_share(self, rset: RankingSet) -> dict[str, float]:
        per_candidate = np.broadcast_to(self.weights_, (rset.n_candidates, len(self.names_)))
        return dict(zip(self.names_, per_candidate.mean(axis=0).tolist()))
