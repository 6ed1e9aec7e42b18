"""Simulated A/B logs with planted effects, in the schema the server writes (``events``): the
known answers of the analysis (a planted lift must be found, a planted sample-ratio mismatch
flagged, and neither when none is planted)."""

from __future__ import annotations

import numpy as np

from mmrank.ab.events import assignment_event, outcome_event


def simulate_ab_log(n: int, *, expected_share: float = 0.5, observed_share: float | None = None,
                    ctr: tuple[float, float] = (0.10, 0.10), latency_ms: tuple[float, float] = (5.0, 8.0),
                    fault_rate: float = 0.0, n_candidates: int = 10, shadow: bool = False, seed: int = 0) -> list[dict]:
    """``n`` assignments (and their outcomes) as log events.

    Args:
        n: assignments.
        expected_share: the rollout share the server was configured with (logged).
        observed_share: the share actually assigned to treatment (default: ``expected_share``;
            another value plants a sample-ratio mismatch).
        ctr: click-through rate of control and treatment (a difference plants a lift).
        latency_ms: mean latency of control and treatment (gamma-distributed, shape 4).
        fault_rate: share of treatment queries that fall back on a model fault (``timeout``).
        n_candidates: shown list length.
        shadow: log the treatment as shadow-scored (original order shown, model order logged).
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    share = expected_share if observed_share is None else observed_share
    events = []
    for i in range(n):
        treated = rng.random() < share
        shown = [f"c{j}" for j in range(n_candidates)]
        model = list(rng.permutation(shown)) if treated else None
        fault = treated and rng.random() < fault_rate
        status, reason = ("fallback", "outside_rollout") if not treated else (
            ("fallback", "timeout") if fault else (("shadow", "shadow_mode") if shadow else ("reranked", "ok")))
        if treated and not fault and not shadow:
            shown = model
        ts = 1_700_000_000.0 + i
        events.append(assignment_event(ts=ts, query_id=f"q{i}", arm="treatment" if treated else "control",
                                       bucket=int(rng.integers(0, 10_000)), rollout_percent=100 * expected_share,
                                       status=status, reason=reason,
                                       latency_ms=float(rng.gamma(4.0, latency_ms[int(treated)] / 4.0)),
                                       model_id="sim", model_version="0", shown=shown, model_order=None if fault else model))
        if rng.random() < ctr[int(treated and not fault and not shadow)]:
            position = min(int(rng.geometric(0.4)) - 1, n_candidates - 1)
            events.append(outcome_event(ts=ts + 0.5, query_id=f"q{i}", clicks=[shown[position]]))
    return events
