"""The cascade click model (CM), fitted by maximum likelihood.

Model (Craswell, Zoeter, Taylor & Ramsey 2008, "An experimental comparison of click
position-bias models", WSDM; Chuklin, Markov & de Rijke 2015 §3.4): the user scans the list top
down, clicks the first attractive candidate (probability ``r_qd``) and stops; every candidate above
the click was examined and not attractive, nothing below it was examined. A session without a
click examined the whole shown list.

Given the clicks, which candidates were examined is known, so the EM of Chuklin et al. (§4.1)
has a deterministic E-step and converges in one step to the counting estimate

    r_qd = (clicks on d at the session's first click + a) / (sessions that examined d + a + b)

with a Beta(a, b) prior. The cascade model explains one click per session; clicks after the first
are ignored here (the model says they cannot happen), which is the usual reading for logs with
several clicks.
"""

from __future__ import annotations

import numpy as np

from mmrank.clicks.base import ClickModel, index_pairs
from mmrank.clicks.log import ClickLog
from mmrank.errors import ConfigError, DataError


class CascadeModel(ClickModel):
    """Cascade model. After ``fit``: ``relevance_ (P,)`` attractiveness per (query, candidate)
    pair and ``examinations_ (P,)`` how many sessions examined it under the model.

    Example:
        >>> CascadeModel().fit(log).relevance_table().head()  # doctest: +SKIP
    """

    kind = "cascade"

    def __init__(self, prior: tuple[float, float] = (0.1, 0.1), min_dwell: float | None = None) -> None:
        super().__init__()
        if min(prior) < 0:
            raise ConfigError("the prior pseudo-counts must be non-negative")
        self.prior, self.min_dwell = (float(prior[0]), float(prior[1])), min_dwell
        self.examinations_: np.ndarray | None = None

    def fit(self, log: ClickLog) -> "CascadeModel":
        """Count, per pair, examinations (positions up to the session's first click, or the whole
        list when there is none) and first clicks; relevance = smoothed ratio.

        Raises:
            DataError: when the log has no impression.
        """
        if log.n_impressions == 0:
            raise DataError("the click log has no impression to fit", hint="check the log")
        clicks = log.satisfied_clicks(self.min_dwell)
        session = log.session_index
        pos = log.positions
        first = np.full(log.n_sessions, np.iinfo(np.int64).max)
        np.minimum.at(first, session[clicks], pos[clicks])
        examined = pos <= first[session]
        first_click = clicks & (pos == first[session])
        pairs = index_pairs(log)
        n_pairs = len(pairs.query_ids)
        a, b = self.prior
        n_examined = np.bincount(pairs.of_impression, weights=examined.astype(np.float64), minlength=n_pairs)
        n_clicked = np.bincount(pairs.of_impression, weights=first_click.astype(np.float64), minlength=n_pairs)
        self.query_ids_, self.candidate_ids_ = pairs.query_ids, pairs.candidate_ids
        self.relevance_ = (n_clicked + a) / (n_examined + a + b)
        self.examinations_ = n_examined.astype(np.int64)
        self.impressions_ = np.bincount(pairs.of_impression, minlength=n_pairs).astype(np.int64)
        return self

    def extra_state(self) -> dict:
        """Settings and per-pair examination counts, for :meth:`save`."""
        return {"examinations": self.examinations_.tolist(),
                "settings": {"prior": list(self.prior), "min_dwell": self.min_dwell}}

    def set_extra_state(self, state: dict) -> None:
        """Restore the settings and examination counts from a saved model."""
        self.examinations_ = np.asarray(state["examinations"], dtype=np.int64)
        self.prior = tuple(state["settings"]["prior"])
        self.min_dwell = state["settings"]["min_dwell"]
