"""The position-based click model (PBM), fitted by expectation-maximisation.

Model (Richardson et al. 2007; Craswell et al. 2008; Chuklin, Markov & de Rijke 2015, "Click
Models for Web Search", §3.3): a shown candidate is clicked iff it is *examined* and *relevant*
(attractive), independently::

    P(C = 1 | q, d, k) = theta_k * gamma_qd

``theta_k`` is the examination probability of position k, ``gamma_qd`` the relevance of
candidate d for query q. Neither is observed, so they are fitted by EM (Chuklin et al. 2015 §4.2;
the same updates are Wang et al. 2018, "Position Bias Estimation for Unbiased Learning to Rank in
Personal Search", WSDM, eqs. 5-7): for a non-click the posteriors are

    P(E = 1 | C = 0) = theta (1 - gamma) / (1 - theta gamma)
    P(R = 1 | C = 0) = (1 - theta) gamma / (1 - theta gamma)

(a click means E = R = 1), and the M-step sets ``theta_k`` to the mean posterior examination over
impressions at k and ``gamma_qd`` to the mean posterior relevance over impressions of (q, d),
with a Beta(a, b) prior on gamma (pseudo-counts; default a tenth of a click each way, so a pair
never clicked is not exactly 0). A heavier prior biases the position curve: pairs shown only a few
times at low positions are pulled towards a/(a+b) and theta compensates (Beta(1, 1) gave a
position-2 error of 0.046 on the MQ2008 known answer, Beta(0.1, 0.1) 0.006).

Identifiability: only the products are seen, so ``theta`` and ``gamma`` are determined up to a
common factor; the fit reports ``theta`` relative to position 1 (``theta_1 = 1``, the convention
of Joachims et al. 2017 and Wang et al. 2018). And a candidate must be seen at more than one
position for its relevance to be told apart from its position's examination:
``position_variety_`` (share of pairs shown at >= 2 positions) says how much the log allows.
Runs on aggregated (position, pair) cells, so a million impressions take well under a second
per dozen iterations.
"""

from __future__ import annotations

import numpy as np

from mmrank.clicks.base import ClickModel, index_pairs
from mmrank.clicks.log import ClickLog
from mmrank.errors import ConfigError, DataError

_EPS = 1e-9


class PositionBasedModel(ClickModel):
    """PBM fitted by EM; it stops when no relative examination probability moves by more than
    ``tol`` in an iteration (the likelihood creeps along the scale ridge long after the curve has
    settled). After ``fit``: ``theta_ (K,)`` examination per position (relative to
    position 1), ``relevance_ (P,)`` per (query, candidate) pair, ``n_iter_``,
    ``log_likelihood_``, ``converged_`` and ``position_variety_``.

    Example:
        >>> model = PositionBasedModel().fit(log)  # doctest: +SKIP
        >>> model.theta_[:3], model.relevance_table().head()  # doctest: +SKIP
    """

    kind = "pbm"

    def __init__(self, max_iter: int = 500, tol: float = 1e-5, prior: tuple[float, float] = (0.1, 0.1),
                 max_position: int | None = None, min_dwell: float | None = None) -> None:
        super().__init__()
        if max_iter < 1 or tol <= 0 or min(prior) < 0:
            raise ConfigError("max_iter >= 1, tol > 0 and non-negative prior pseudo-counts are needed")
        self.max_iter, self.tol, self.prior = int(max_iter), float(tol), (float(prior[0]), float(prior[1]))
        self.max_position, self.min_dwell = max_position, min_dwell
        self.theta_: np.ndarray | None = None
        self.n_iter_ = 0
        self.converged_ = False
        self.log_likelihood_ = float("nan")
        self.position_variety_ = float("nan")

    def fit(self, log: ClickLog) -> "PositionBasedModel":
        """Fit ``theta`` and ``gamma`` to the impressions of ``log`` by EM.

        Args:
            log: sessions with their shown lists and clicks. With ``max_position`` only the first
                positions are used; with ``min_dwell`` only clicks with at least that dwell count.

        Returns:
            ``self``, fitted.

        Raises:
            DataError: when the log has no impression or no click.
        """
        pos = log.positions - 1
        clicks = log.satisfied_clicks(self.min_dwell)
        pairs = index_pairs(log)
        keep = np.ones(log.n_impressions, dtype=bool) if self.max_position is None else pos < self.max_position
        if not keep.any() or not clicks[keep].any():
            raise DataError("the click log has no impression or no click to fit",
                            hint="check the log (and --max-position / --min-dwell)")
        n_pos, n_pairs = int(pos[keep].max()) + 1, len(pairs.query_ids)
        cell = pos[keep] * n_pairs + pairs.of_impression[keep]
        cells, inverse = np.unique(cell, return_inverse=True)
        shown = np.bincount(inverse).astype(np.float64)
        clicked = np.bincount(inverse, weights=clicks[keep].astype(np.float64))
        cpos, cpair = cells // n_pairs, cells % n_pairs
        self._em(cpos, cpair, shown, clicked, n_pos, n_pairs)
        self.query_ids_, self.candidate_ids_ = pairs.query_ids, pairs.candidate_ids
        self.impressions_ = np.bincount(cpair, weights=shown, minlength=n_pairs).astype(np.int64)
        self.position_variety_ = float(np.mean(np.bincount(cpair, minlength=n_pairs) >= 2))
        return self

    def _em(self, cpos, cpair, shown, clicked, n_pos: int, n_pairs: int) -> None:
        a, b = self.prior
        not_clicked = shown - clicked
        per_pos = np.bincount(cpos, weights=shown, minlength=n_pos)
        per_pair = np.bincount(cpair, weights=shown, minlength=n_pairs)
        theta = np.full(n_pos, 0.5)
        gamma = np.full(n_pairs, 0.5)
        previous = None
        self.converged_ = False
        for it in range(1, self.max_iter + 1):
            t, g = theta[cpos], gamma[cpair]
            denom = np.maximum(1.0 - t * g, _EPS)
            examined = clicked + not_clicked * t * (1.0 - g) / denom
            relevant = clicked + not_clicked * (1.0 - t) * g / denom
            theta = np.bincount(cpos, weights=examined, minlength=n_pos) / np.maximum(per_pos, _EPS)
            gamma = (np.bincount(cpair, weights=relevant, minlength=n_pairs) + a) / (per_pair + a + b)
            theta, gamma = np.clip(theta, _EPS, 1.0), np.clip(gamma, _EPS, 1.0 - _EPS)
            relative = theta / theta[0]
            if previous is not None and np.max(np.abs(relative - previous)) < self.tol:
                self.converged_ = True
                break
            previous = relative
        self.n_iter_ = it
        p = np.clip(theta[cpos] * gamma[cpair], _EPS, 1.0 - _EPS)
        self.log_likelihood_ = float(np.sum(clicked * np.log(p) + not_clicked * np.log1p(-p)))
        # Report examination relative to position 1; the products theta * gamma are unchanged.
        self.theta_ = theta / theta[0]
        self.relevance_ = np.clip(gamma * theta[0], 0.0, 1.0)

    def extra_state(self) -> dict:
        """Settings and the fitted position curve, for :meth:`save`."""
        return {"theta": [float(v) for v in self.theta_], "n_iter": self.n_iter_, "converged": self.converged_,
                "log_likelihood": self.log_likelihood_, "position_variety": self.position_variety_,
                "settings": {"max_iter": self.max_iter, "tol": self.tol, "prior": list(self.prior),
                             "max_position": self.max_position, "min_dwell": self.min_dwell}}

    def set_extra_state(self, state: dict) -> None:
        """Restore the position curve and fit diagnostics from a saved model."""
        self.theta_ = np.asarray(state["theta"], dtype=np.float64)
        self.n_iter_, self.converged_ = int(state["n_iter"]), bool(state["converged"])
        self.log_likelihood_, self.position_variety_ = float(state["log_likelihood"]), float(state["position_variety"])
        settings = state["settings"]
        self.max_iter, self.tol, self.prior = int(settings["max_iter"]), float(settings["tol"]), tuple(settings["prior"])
        self.max_position, self.min_dwell = settings["max_position"], settings["min_dwell"]
