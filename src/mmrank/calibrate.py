"""Turning ranking scores into relevance probabilities, and measuring how honest they are.

Two calibrators, fitted on validation data and stored as JSON (never pickle):

* ``temperature``: ``p = σ((s − b) / T)`` with T > 0 and a bias b fitted by minimising log-loss
  (Guo et al. 2017 temperature scaling; the bias is needed because ranking losses leave the
  score's offset free, which makes this Platt's two-parameter form).
* ``isotonic``: scikit-learn's ``IsotonicRegression`` (monotone, piecewise linear); its
  thresholds are stored and re-applied with ``np.interp``, exactly as sklearn predicts.

A candidate counts as relevant when ``label >= relevance_threshold`` (default 1).

Measures: **ECE** with 10 equal-width probability bins ``[0, .1), [.1, .2), ..., [.9, 1.0]``:
``Σ_b (n_b / N) · |mean(y in b) − mean(p in b)|`` (Naeini et al. 2015; empty bins add 0);
**Brier** ``mean((p − y)²)``; **log-loss** ``−mean(y log p + (1 − y) log(1 − p))`` with p clipped
to [1e-7, 1 − 1e-7]. The per-bin table (reliability-diagram data) is kept for reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from mmrank.atomic_io import atomic_write_text
from mmrank.errors import ConfigError, DataError

EPS = 1e-7
N_BINS = 10


def _binary(labels: np.ndarray, threshold: float) -> np.ndarray:
    return (np.asarray(labels, dtype=np.float64) >= threshold).astype(np.float64)


def reliability_table(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> list[dict]:
    """Per equal-width bin: lower/upper edge, count, mean predicted p, observed positive rate."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y, dtype=np.float64)
    idx = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        rows.append({
            "lower": b / n_bins, "upper": (b + 1) / n_bins, "count": n,
            "mean_p": float(probs[sel].mean()) if n else None,
            "positive_rate": float(y[sel].mean()) if n else None,
        })
    return rows


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error over equal-width probability bins.

    ``Σ_b (n_b / N) · |positive_rate_b − mean_p_b|``; empty bins add 0, and an empty input gives 0.0
    (the divisor is clamped to 1 rather than raising).

    Args:
        probs: (N,) predicted probabilities in [0, 1].
        y: (N,) binary targets (0.0 / 1.0), already thresholded.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        ECE in [0, 1]; 0 means every bin's mean prediction equals its observed positive rate.

    Example:
        >>> round(ece(np.array([0.1, 0.9]), np.array([0.0, 1.0])), 6)
        0.1
    """
    table = reliability_table(probs, y, n_bins)
    n = max(len(probs), 1)
    return float(sum(r["count"] / n * abs(r["positive_rate"] - r["mean_p"]) for r in table if r["count"]))


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Brier score: the mean squared difference between probability and binary outcome.

    Args:
        probs: (N,) predicted probabilities.
        y: (N,) binary targets (0.0 / 1.0).

    Returns:
        ``mean((p − y)²)`` in [0, 1], lower is better; NaN (with a numpy warning) for empty input.
    """
    return float(np.mean((np.asarray(probs) - np.asarray(y)) ** 2))


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    """Binary cross-entropy of probabilities against binary outcomes.

    Probabilities are clipped to ``[1e-7, 1 − 1e-7]`` so a confident miss costs a large but finite
    amount instead of ``inf``.

    Args:
        probs: (N,) predicted probabilities.
        y: (N,) binary targets (0.0 / 1.0).

    Returns:
        ``−mean(y log p + (1 − y) log(1 − p))`` in nats, lower is better.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_report(probs: np.ndarray, labels: np.ndarray, relevance_threshold: float = 1.0) -> dict:
    """Summarise how well probabilities match graded labels: ECE, Brier, log-loss and the bin table.

    Labels are binarised first (``label >= relevance_threshold`` counts as relevant), so graded
    relevance (e.g. MQ2008's 0/1/2) can be used directly.

    Args:
        probs: (N,) predicted probabilities, e.g. from ``Calibrator.transform``.
        labels: (N,) graded relevance labels.
        relevance_threshold: smallest label that counts as relevant.

    Returns:
        A JSON-ready dict with keys ``ece``, ``brier``, ``log_loss``, ``reliability`` (the rows of
        :func:`reliability_table`), ``n`` and ``positive_rate`` (None when empty).

    Example:
        >>> cal = make_calibrator("temperature").fit(val_scores, val_labels)  # doctest: +SKIP
        >>> calibration_report(cal.transform(test_scores), test_labels)["ece"]  # doctest: +SKIP
    """
    y = _binary(labels, relevance_threshold)
    return {"ece": ece(probs, y), "brier": brier(probs, y), "log_loss": log_loss(probs, y),
            "reliability": reliability_table(probs, y), "n": int(len(y)), "positive_rate": float(y.mean()) if len(y) else None}


class Calibrator:
    """``fit(scores, labels)`` on validation data, ``transform(scores) -> probabilities``."""

    method = "identity"

    def __init__(self, relevance_threshold: float = 1.0) -> None:
        self.relevance_threshold = relevance_threshold

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> "Calibrator":
        """Fit on validation scores and labels; the base (identity) calibrator learns nothing.

        Args:
            scores: (N,) raw ranking scores.
            labels: (N,) graded relevance labels, binarised with ``relevance_threshold``.

        Returns:
            ``self``, so that ``make_calibrator(...).fit(s, y).transform(s)`` chains.
        """
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Map raw scores to probabilities; the base calibrator reads the score as a logit.

        Args:
            scores: (N,) raw ranking scores.

        Returns:
            (N,) float64 probabilities ``σ(score)`` in (0, 1).
        """
        # Uncalibrated: the score read as a logit, the reading a ranker trained with a focal /
        # logistic term invites.
        return expit(np.asarray(scores, dtype=np.float64))

    def state(self) -> dict:
        """Return the fitted parameters that :meth:`to_json` stores (none for the identity calibrator).

        Returns:
            A dict whose keys are constructor arguments, so ``cls(**state)`` rebuilds the calibrator.
        """
        return {}

    def to_json(self) -> dict:
        """Describe the calibrator as a JSON-ready dict: method name, relevance threshold and state.

        Returns:
            ``{"method": ..., "relevance_threshold": ..., **state()}``; :func:`load_calibrator` reads it back.
        """
        return {"method": self.method, "relevance_threshold": self.relevance_threshold, **self.state()}


class TemperatureCalibrator(Calibrator):
    method = "temperature"

    def __init__(self, relevance_threshold: float = 1.0, temperature: float = 1.0, bias: float = 0.0) -> None:
        super().__init__(relevance_threshold)
        self.temperature, self.bias = temperature, bias

    def fit(self, scores, labels) -> "TemperatureCalibrator":
        """Fit temperature ``T`` and bias ``b`` of ``p = σ((s − b) / T)`` by minimising log-loss.

        Nelder-Mead over ``(log T, b)``: optimising ``log T`` keeps ``T`` positive without a constraint,
        and the start point (score std, score median) puts the sigmoid over the scores' range.

        Args:
            scores: (N,) raw ranking scores of validation candidates.
            labels: (N,) graded relevance labels, binarised with ``relevance_threshold``.

        Returns:
            ``self`` with ``temperature`` and ``bias`` set.

        Raises:
            DataError: when there are no candidates, or all are relevant or all non-relevant (the
                optimum would then be at infinity).

        Example:
            >>> cal = TemperatureCalibrator().fit(val_scores, val_labels)  # doctest: +SKIP
            >>> probs = cal.transform(test_scores)  # doctest: +SKIP
        """
        s, y = np.asarray(scores, dtype=np.float64), _binary(labels, self.relevance_threshold)
        if len(s) == 0 or y.min() == y.max():
            raise DataError("calibration needs both relevant and non-relevant validation candidates",
                            hint="use a validation set with both kinds, or calibration.method: none")

        def nll(theta):  # theta = (log T, b); log T keeps T positive
            z = (s - theta[1]) / np.exp(theta[0])
            return float(np.mean(np.logaddexp(0.0, z) - y * z))

        best = minimize(nll, x0=np.array([np.log(max(s.std(), 1e-3)), float(np.median(s))]), method="Nelder-Mead",
                        options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
        self.temperature, self.bias = float(np.exp(best.x[0])), float(best.x[1])
        return self

    def transform(self, scores) -> np.ndarray:
        """Map raw scores to probabilities with the fitted temperature and bias.

        Args:
            scores: (N,) raw ranking scores.

        Returns:
            (N,) float64 probabilities ``σ((s − bias) / temperature)``; monotone in the score, so the
            ranking is unchanged.
        """
        return expit((np.asarray(scores, dtype=np.float64) - self.bias) / self.temperature)

    def state(self) -> dict:
        """Return ``{"temperature": T, "bias": b}``, the two fitted parameters.

        Returns:
            A dict of constructor arguments for :func:`load_calibrator`.
        """
        return {"temperature": self.temperature, "bias": self.bias}


class IsotonicCalibrator(Calibrator):
    method = "isotonic"

    def __init__(self, relevance_threshold: float = 1.0, x: list | None = None, y: list | None = None) -> None:
        super().__init__(relevance_threshold)
        self.x = np.asarray(x if x is not None else [], dtype=np.float64)
        self.y = np.asarray(y if y is not None else [], dtype=np.float64)

    def fit(self, scores, labels) -> "IsotonicCalibrator":
        """Fit a monotone, piecewise linear map from score to probability with scikit-learn.

        Only the isotonic regression's thresholds are kept, so the calibrator stores as plain JSON and
        :meth:`transform` needs no sklearn object. Scores outside the fitted range are clipped to the end
        values.

        Args:
            scores: (N,) raw ranking scores of validation candidates.
            labels: (N,) graded relevance labels, binarised with ``relevance_threshold``.

        Returns:
            ``self`` with the threshold arrays ``x`` (scores) and ``y`` (probabilities in [0, 1]) set.
        """
        from sklearn.isotonic import IsotonicRegression

        if len(np.asarray(scores)) == 0:
            raise DataError("isotonic calibration needs validation scores, got none",
                            hint="add validation queries or set calibration.method: none")
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
            np.asarray(scores, dtype=np.float64), _binary(labels, self.relevance_threshold))
        self.x, self.y = iso.X_thresholds_.astype(np.float64), iso.y_thresholds_.astype(np.float64)
        return self

    def transform(self, scores) -> np.ndarray:
        """Map raw scores to probabilities by linear interpolation between the fitted thresholds.

        This is what ``IsotonicRegression.predict`` does with ``out_of_bounds="clip"``.

        Args:
            scores: (N,) raw ranking scores.

        Returns:
            (N,) float64 probabilities in [0, 1]; non-decreasing in the score (ties possible).

        Raises:
            DataError: when the calibrator has not been fitted (no thresholds).
        """
        if len(self.x) == 0:
            raise DataError("isotonic calibrator is not fitted")
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def state(self) -> dict:
        """Return the fitted thresholds as lists: ``{"x": scores, "y": probabilities}``.

        Returns:
            A dict of constructor arguments for :func:`load_calibrator`.
        """
        return {"x": self.x.tolist(), "y": self.y.tolist()}


CALIBRATORS = {"temperature": TemperatureCalibrator, "isotonic": IsotonicCalibrator, "none": Calibrator, "identity": Calibrator}


def make_calibrator(method: str, relevance_threshold: float = 1.0) -> Calibrator:
    """Build an unfitted calibrator by its config name.

    Args:
        method: ``"temperature"``, ``"isotonic"``, or ``"none"`` / ``"identity"`` (both give the base
            :class:`Calibrator`, which is ``σ(score)``, not the raw score).
        relevance_threshold: smallest label that counts as relevant when fitting.

    Returns:
        A new, unfitted calibrator.

    Raises:
        ConfigError: when ``method`` is not one of the names above.

    Example:
        >>> cal = make_calibrator("isotonic").fit(val_scores, val_labels)  # doctest: +SKIP
    """
    if method not in CALIBRATORS:
        raise ConfigError(f"calibration.method: {method!r} — allowed: {sorted(CALIBRATORS)}")
    return CALIBRATORS[method](relevance_threshold)


def save_calibrator(cal: Calibrator, path: str | Path, extra: dict | None = None) -> None:
    """Write a calibrator as indented JSON, atomically (a crash never leaves a half-written file).

    Args:
        cal: the (fitted) calibrator.
        path: destination file.
        extra: additional keys merged into the JSON (e.g. validation metrics); they win over the
            calibrator's own keys on a name clash, and :func:`load_calibrator` ignores them.
    """
    atomic_write_text(path, json.dumps({**cal.to_json(), **(extra or {})}, indent=2) + "\n")


def load_calibrator(path: str | Path) -> Calibrator:
    """Read a calibrator written by :func:`save_calibrator`.

    Keys other than the method's constructor arguments (such as ``extra`` from saving) are ignored.

    Args:
        path: the JSON file.

    Returns:
        The calibrator, ready for ``transform``.

    Raises:
        DataError: when the file cannot be read or is not JSON, or names an unknown method.

    Example:
        >>> probs = load_calibrator("run/calibrator.json").transform(scores)  # doctest: +SKIP
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read calibrator: {e}", path=path) from e
    if not isinstance(data, dict):
        raise DataError(f"a calibrator file holds a JSON object, not a {type(data).__name__}", path=path,
                        hint="point at the calibrator.json a run wrote")
    method = data.pop("method", None)
    if method not in CALIBRATORS:
        raise DataError(f"unknown calibration method {method!r}", path=path)
    cls = CALIBRATORS[method]
    known = {"relevance_threshold"} | set(cls().state())
    return cls(**{k: v for k, v in data.items() if k in known})
