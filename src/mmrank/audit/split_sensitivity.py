"""split_sensitivity (interaction data): the metric under a random vs a temporal split.

Each user holds out one event: their last (temporal, leave-last-out) or a random one
(seeded). The same ``fit_evaluate(train_events, test_events) -> per-user metric`` runs on both
(as two parallel jobs). A random split lets the model train on each user's future and on
items' later popularity; when it overstates the temporal-split metric by more than
``max_relative_gap`` (paired CI95 of the per-user gap above zero), WARN: quote the temporal one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.jobs import run_jobs
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.data.model import Interactions
from mmrank.stats import paired_bootstrap_ci

NAME = "split_sensitivity"


def holdout_one_per_user(events: Interactions, how: str, seed: int) -> tuple[Interactions, Interactions]:
    """(train, test): one held-out event per user with >= 2 events, the last or a random one.

    Test rows come out in sorted-user order in both modes, so per-user metrics pair up."""
    ev = events.sorted()
    users = ev.user_ids.astype(str)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    multi = ends - starts >= 2
    if how == "temporal":
        held = ends[multi] - 1
    else:
        rng = np.random.default_rng(seed)
        held = starts[multi] + (rng.random(multi.sum()) * (ends - starts)[multi]).astype(np.int64)
    mask = np.zeros(len(ev), bool)
    mask[held] = True
    return ev.take(np.flatnonzero(~mask)), ev.take(np.flatnonzero(mask))


def evaluate_split(fit_evaluate: Callable, events: Interactions, how: str, seed: int) -> np.ndarray:
    """One job: hold out one event per user (``how``: ``"temporal"`` or ``"random"``) and return
    ``fit_evaluate(train, test)`` as a (U,) float array, users in sorted order."""
    train, test = holdout_one_per_user(events, how, seed)
    return np.asarray(fit_evaluate(train, test), float)


def check(ctx: AuditContext) -> CheckResult:
    """Measure how much a random leave-one-out split overstates the per-user metric of a
    temporal (leave-last-out) split: ``mean(random - temporal) / |mean(temporal)|``, with the
    paired bootstrap CI of the difference (policy ``significance`` options).

    Rule (policy ``split_sensitivity.max_relative_gap``): WARN when the relative gap exceeds it
    and the CI low bound is above 0 (quote the temporal split); PASS otherwise. SKIP without
    ``interactions`` and a ``fit_evaluate`` function. Never FAILs."""
    if ctx.interactions is None or ctx.fit_evaluate is None:
        return CheckResult.skip(NAME, "needs interaction data and a fit_evaluate function (recommenders)")
    p = ctx.policy[NAME]
    jobs = [(ctx.fit_evaluate, ctx.interactions, how, ctx.seed) for how in ("random", "temporal")]
    random_m, temporal_m = run_jobs(evaluate_split, jobs, engine=ctx.engine, n_jobs=ctx.n_jobs, address=ctx.address)
    ci = paired_bootstrap_ci(random_m, temporal_m, **ctx.stats_options())
    temporal = float(temporal_m.mean())
    gap = ci.mean / abs(temporal) if temporal else float("inf")
    limit = float(p["max_relative_gap"])
    evidence = {"random_split": float(random_m.mean()), "temporal_split": temporal, "gap_ci": ci.to_dict(),
                "users": int(len(temporal_m))}
    ctx.extras["split_sensitivity"] = {"random": evidence["random_split"], "temporal": temporal}
    rule = f"WARN if (random - temporal) / temporal > {limit:g} with CI95 above 0"
    if gap > limit and ci.low > 0:
        return CheckResult(NAME, WARN, gap, limit, rule, evidence,
                           "a random split overstates the metric: the model profits from seeing the future — "
                           "report the temporal (leave-last-out) split")
    return CheckResult(NAME, PASS, gap, limit, rule, evidence)
