"""The one decision every rerank path makes: given what the model produced for a query's top-M
candidates (scores, or why there are none), which order goes back to the caller.

Pure and model-free, so the invariant the whole service promises — the answer is a permutation
of the request's candidates, whatever the model did — is property-tested here directly, with
faults injected as data (an exception's reason, NaN scores, the wrong number of scores).

Reasons are short fixed codes (they label Prometheus series, so their number must stay small);
the human-readable part goes in ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RERANKED, FALLBACK, SHADOW = "reranked", "fallback", "shadow"

# Why a query got the order it got.
OK = "ok"
SHADOW_MODE = "shadow_mode"
OUTSIDE_ROLLOUT = "outside_rollout"
MODEL_ERROR = "model_error"
TIMEOUT = "timeout"
NON_FINITE = "non_finite_scores"
WRONG_LENGTH = "wrong_length"
UNCERTAINTY = "uncertainty"
FALLBACK_REASONS = (OUTSIDE_ROLLOUT, MODEL_ERROR, TIMEOUT, NON_FINITE, WRONG_LENGTH, UNCERTAINTY)
ALL_REASONS = (OK, SHADOW_MODE) + FALLBACK_REASONS


@dataclass(frozen=True)
class ModelOutput:
    """What scoring the top-M candidates gave: scores (and MC-dropout stds), or a fault code."""

    scores: np.ndarray | None = None
    std: np.ndarray | None = None
    fault: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    """``order[k]`` is the original position of the candidate returned at rank ``k + 1``.

    ``scores`` is aligned with the original positions; NaN where the model gave no usable score
    (candidates past top-M, or every candidate when the model failed)."""

    order: np.ndarray
    scores: np.ndarray
    status: str
    reason: str
    detail: str = ""
    uncertainty: float | None = None
    model_order: np.ndarray | None = None


def n_scored(n: int, top_m: int | None) -> int:
    """How many leading candidates the model reorders (all of them when ``top_m`` is None/0)."""
    return n if not top_m or top_m <= 0 else min(n, int(top_m))


def original_order(n: int, reason: str, detail: str = "", status: str = FALLBACK) -> Decision:
    """The request's own order, no scores, with the reason it was kept."""
    return Decision(np.arange(n), np.full(n, np.nan), status, reason, detail)


def decide(
    n: int,
    top_m: int | None,
    output: ModelOutput,
    *,
    shadow: bool = False,
    uncertainty_threshold: float | None = None,
) -> Decision:
    """The order to return for a query of ``n`` candidates whose first ``n_scored(n, top_m)``
    were scored into ``output``. The model's order applies only to those; the rest follow in
    their original order. Ties keep the original order (stable sort)."""
    m = n_scored(n, top_m)
    if output.fault is not None:
        return original_order(n, output.fault, output.detail)
    scores = _as_vector(output.scores)
    if scores is None or scores.shape != (m,):
        got = "nothing" if scores is None else f"shape {scores.shape}"
        return original_order(n, WRONG_LENGTH, f"model returned {got} for {m} candidates")
    if not np.all(np.isfinite(scores)):
        bad = int(np.count_nonzero(~np.isfinite(scores)))
        return original_order(n, NON_FINITE, f"{bad} of {m} scores are NaN or infinite")
    uncertainty = None
    if output.std is not None:
        std = _as_vector(output.std)
        if std is None or std.shape != (m,):
            return original_order(n, WRONG_LENGTH, f"model returned uncertainty of shape {np.shape(output.std)} for {m} candidates")
        # Query-level uncertainty: the mean MC-dropout std of the reranked candidates' scores.
        with np.errstate(over="ignore", invalid="ignore"):  # huge stds → inf → caught just below
            uncertainty = float(np.mean(std)) if m else 0.0
        if not np.isfinite(uncertainty):
            return original_order(n, NON_FINITE, "uncertainty is NaN or infinite")
        if uncertainty_threshold is not None and uncertainty > uncertainty_threshold:
            d = original_order(n, UNCERTAINTY, f"uncertainty {uncertainty:.4g} > threshold {uncertainty_threshold:g}")
            return Decision(d.order, d.scores, d.status, d.reason, d.detail, uncertainty)
    all_scores = np.full(n, np.nan)
    all_scores[:m] = scores
    model_order = np.concatenate([np.argsort(-scores, kind="stable"), np.arange(m, n)])
    if shadow:
        return Decision(np.arange(n), all_scores, SHADOW, SHADOW_MODE, "", uncertainty, model_order)
    return Decision(model_order, all_scores, RERANKED, OK, "", uncertainty, model_order)


def _as_vector(values) -> np.ndarray | None:
    """Scores as a float64 vector, or None when they are not numbers at all (a model bug)."""
    if values is None:
        return None
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr.reshape(-1) if arr.ndim == 2 and arr.shape[1] == 1 else arr


def is_permutation(order, n: int) -> bool:
    """True when ``order`` holds each of ``0..n-1`` exactly once."""
    arr = np.asarray(order)
    if arr.shape != (n,):
        return False
    if n == 0:
        return True
    if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n:
        return False
    return bool(np.bincount(arr, minlength=n).max() == 1)  # O(n), no sort: n values in range, none twice


def answer_candidates(candidates: list[dict], decision: Decision) -> list[dict]:
    """The HTTP answer's candidate objects in returned order: ``{"candidate_id", "score", "rank",
    "original_rank"}``, one per row of ``ranked_entries``."""
    return [{"candidate_id": candidates[pos]["candidate_id"], "score": score, "rank": rank, "original_rank": orig}
            for pos, score, rank, orig in ranked_entries(decision)]


def ranked_entries(decision: Decision) -> list[tuple[int, float | None, int, int]]:
    """``(original position, score or None, rank, original_rank)`` in returned order — the rows
    both the batch output and the HTTP response are made of (JSON has no NaN: no score → None).
    Built from whole arrays (one ``tolist`` each, not numpy scalars per candidate: the HTTP hot path)."""
    order = np.asarray(decision.order, dtype=np.int64)
    scores = np.asarray(decision.scores, dtype=np.float64)[order]
    finite = np.isfinite(scores).tolist()
    return [(pos, score if ok else None, rank, pos + 1)
            for rank, (pos, score, ok) in enumerate(zip(order.tolist(), scores.tolist(), finite), start=1)]
