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
    table = reliability_table(probs, y, n_bins)
    n = max(len(probs), 1)
    return float(sum(r["count"] / n * abs(r["positive_rate"] - r["mean_p"]) for r in table if r["count"]))


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(probs) - np.asarray(y)) ** 2))


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def calibration_report(probs: np.ndarray, labels: np.ndarray, relevance_threshold: float = 1.0) -> dict:
    y = _binary(labels, relevance_threshold)
    return {"ece": ece(probs, y), "brier": brier(probs, y), "log_loss": log_loss(probs, y),
            "reliability": reliability_table(probs, y), "n": int(len(y)), "positive_rate": float(y.mean()) if len(y) else None}


class Calibrator:
    """``fit(scores, labels)`` on validation data, ``transform(scores) -> probabilities``."""

    method = "identity"

    def __init__(self, relevance_threshold: float = 1.0) -> None:
        self.relevance_threshold = relevance_threshold

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> "Calibrator":
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        # Uncalibrated: the score read as a logit, the reading a ranker trained with a focal /
        # logistic term invites.
        return expit(np.asarray(scores, dtype=np.float64))

    def state(self) -> dict:
        return {}

    def to_json(self) -> dict:
        return {"method": self.method, "relevance_threshold": self.relevance_threshold, **self.state()}


class TemperatureCalibrator(Calibrator):
    method = "temperature"

    def __init__(self, relevance_threshold: float = 1.0, temperature: float = 1.0, bias: float = 0.0) -> None:
        super().__init__(relevance_threshold)
        self.temperature, self.bias = temperature, bias

    def fit(self, scores, labels) -> "TemperatureCalibrator":
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
        return expit((np.asarray(scores, dtype=np.float64) - self.bias) / self.temperature)

    def state(self) -> dict:
        return {"temperature": self.temperature, "bias": self.bias}


class IsotonicCalibrator(Calibrator):
    method = "isotonic"

    def __init__(self, relevance_threshold: float = 1.0, x: list | None = None, y: list | None = None) -> None:
        super().__init__(relevance_threshold)
        self.x = np.asarray(x if x is not None else [], dtype=np.float64)
        self.y = np.asarray(y if y is not None else [], dtype=np.float64)

    def fit(self, scores, labels) -> "IsotonicCalibrator":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
            np.asarray(scores, dtype=np.float64), _binary(labels, self.relevance_threshold))
        self.x, self.y = iso.X_thresholds_.astype(np.float64), iso.y_thresholds_.astype(np.float64)
        return self

    def transform(self, scores) -> np.ndarray:
        if len(self.x) == 0:
            raise DataError("isotonic calibrator is not fitted")
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def state(self) -> dict:
        return {"x": self.x.tolist(), "y": self.y.tolist()}


CALIBRATORS = {"temperature": TemperatureCalibrator, "isotonic": IsotonicCalibrator, "none": Calibrator, "identity": Calibrator}


def make_calibrator(method: str, relevance_threshold: float = 1.0) -> Calibrator:
    if method not in CALIBRATORS:
        raise ConfigError(f"calibration.method: {method!r} — allowed: {sorted(CALIBRATORS)}")
    return CALIBRATORS[method](relevance_threshold)


def save_calibrator(cal: Calibrator, path: str | Path, extra: dict | None = None) -> None:
    atomic_write_text(path, json.dumps({**cal.to_json(), **(extra or {})}, indent=2) + "\n")


def load_calibrator(path: str | Path) -> Calibrator:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read calibrator: {e}", path=path) from e
    method = data.pop("method", None)
    if method not in CALIBRATORS:
        raise DataError(f"unknown calibration method {method!r}", path=path)
    cls = CALIBRATORS[method]
    known = {"relevance_threshold"} | set(cls().state())
    return cls(**{k: v for k, v in data.items() if k in known})
