"""Simulated click logs from real relevance labels, with a known position bias (the click
models' known answer).

A *logging policy* shows each session the top ``top_n`` of a noisy version of a first-stage
ranking: per session, candidate scores are standardised within the query and perturbed with
Gumbel noise of scale ``noise`` before sorting (a Plackett-Luce sample; ``noise = 0`` is the
deterministic first stage). The perturbation is what lets a click model tell position from
relevance: the same candidate is seen at several positions. A shown candidate at position k
is examined with probability ``examination[k]`` and clicked, when examined, with probability
``click_probability(label)``:

    click_probability(l) = epsilon + (1 - epsilon) (2^l - 1) / (2^l_max - 1)

(the graded-relevance click noise of Ai et al. 2018 "Unbiased Learning to Rank with Unbiased
Propensity Estimation", SIGIR, used across the unbiased-LTR literature), and examination
``(1 / k) ** eta`` (Joachims, Swaminathan & Schnabel 2017, "Unbiased Learning-to-Rank with Biased
Feedback", WSDM).
"""

from __future__ import annotations

import numpy as np

from mmrank.clicks.log import ClickLog
from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError


def power_law_examination(n_positions: int, eta: float = 1.0) -> np.ndarray:
    """``(1 / k) ** eta`` for positions ``k = 1..n_positions``."""
    return (1.0 / np.arange(1, n_positions + 1)) ** float(eta)


def click_probability(labels: np.ndarray, max_label: float, epsilon: float = 0.1) -> np.ndarray:
    """Probability that an examined candidate of graded ``labels`` is clicked (module docstring)."""
    labels = np.asarray(labels, dtype=np.float64)
    return epsilon + (1.0 - epsilon) * (2.0**labels - 1.0) / (2.0**max_label - 1.0)


def simulate_sessions(
    rset: RankingSet,
    first_stage: np.ndarray,
    n_sessions: int,
    examination: np.ndarray,
    *,
    epsilon: float = 0.1,
    noise: float = 1.0,
    seed: int = 0,
    behaviour: str = "pbm",
) -> ClickLog:
    """Simulate ``n_sessions`` sessions over the queries of ``rset`` (drawn uniformly).

    Args:
        rset: queries with graded labels (the truth the clicks are drawn from).
        first_stage: (N,) scores of the logging ranker in ``rset``'s candidate order.
        n_sessions: number of sessions.
        examination: (K,) examination probability of positions 1..K; each session shows the
            top ``min(K, candidates)``.
        epsilon: click probability of an examined label-0 candidate.
        noise: scale of the Gumbel perturbation of the standardised first-stage scores.
        seed: seed of ``numpy.random.default_rng``.
        behaviour: ``"pbm"`` (examination by position, as above) or ``"cascade"`` (the user scans
            top down and clicks only the first attractive candidate, Craswell et al. 2008;
            ``examination`` then only sets how many are shown).

    Returns:
        The simulated ClickLog, sessions grouped by query (``session_id`` = ``s<number>``).

    Raises:
        ConfigError: for a bad examination curve, negative noise or no queries.
    """
    examination = np.asarray(examination, dtype=np.float64)
    if examination.ndim != 1 or len(examination) == 0 or np.any((examination < 0) | (examination > 1)):
        raise ConfigError("examination must be a non-empty vector of probabilities")
    if behaviour not in ("pbm", "cascade"):
        raise ConfigError(f"behaviour {behaviour!r} — use 'pbm' or 'cascade'")
    if noise < 0 or n_sessions < 1 or rset.n_queries == 0:
        raise ConfigError("need noise >= 0, n_sessions >= 1 and at least one query")
    first_stage = np.asarray(first_stage, dtype=np.float64)
    rng = np.random.default_rng(seed)
    per_query = rng.multinomial(n_sessions, np.full(rset.n_queries, 1.0 / rset.n_queries))
    gamma_all = click_probability(rset.labels, float(rset.labels.max(initial=0.0)) or 1.0, epsilon)
    parts = {"query": [], "shown": [], "clicks": [], "sizes": []}
    for q, n_q in enumerate(per_query):
        a, b = int(rset.offsets[q]), int(rset.offsets[q + 1])
        if n_q == 0 or b == a:
            continue
        s = first_stage[a:b]
        z = (s - s.mean()) / (s.std() or 1.0)
        top = min(len(examination), b - a)
        keys = z[None, :] + noise * rng.gumbel(size=(n_q, b - a))
        shown = np.argsort(-keys, axis=1, kind="stable")[:, :top]
        examined = rng.random((n_q, top)) < examination[:top][None, :]
        attractive = rng.random((n_q, top)) < gamma_all[a:b][shown]
        if behaviour == "cascade":  # examined down to (and including) the first attractive one
            examined = np.cumsum(attractive, axis=1) - attractive == 0
        parts["query"].append(np.full(n_q, q))
        parts["shown"].append((shown + a).ravel())
        parts["clicks"].append((examined & attractive).ravel())
        parts["sizes"].append(np.full(n_q, top))
    sizes = np.concatenate(parts["sizes"])
    rows = np.concatenate(parts["shown"])
    return ClickLog(
        session_ids=np.array([f"s{i}" for i in range(len(sizes))], dtype=object),
        query_ids=rset.query_ids[np.concatenate(parts["query"])],
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        candidate_ids=rset.candidate_ids[rows],
        clicks=np.concatenate(parts["clicks"]),
        dwell=np.full(len(rows), np.nan),
    )
