"""split_sensitivity: how much a split that is not by time overstates the metric.

**Interaction data** (``interactions`` + ``fit_evaluate``): each user holds out one event, their
last (temporal, leave-last-out) or a random one (seeded). The same ``fit_evaluate(train_events,
test_events) -> per-user metric`` runs on both (as two jobs of the audit's pool). A random split
lets the model train on each user's future and on items' later popularity; when it overstates
the temporal-split metric by more than ``max_relative_gap`` (paired CI95 of the per-user gap
above zero), WARN: quote the temporal one.

**Time-split reranking data** (queries with cut times, ``mmrank.audit.timed_queries``): when
every test query's cut is at or after every training query's cut, the audited split *is* the
temporal one — PASS, nothing to retrain. Otherwise the same model configuration is retrained on a
temporal re-split of the same queries (train + test pooled, the latest ``len(test)`` queries by
cut time held out) and the audited test metric is compared with the re-split's (an unpaired
bootstrap CI of the difference of means: different queries): WARN when the audited split
overstates it by more than ``max_relative_gap`` with the CI above zero.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.audit.rankers import fit_ranker
from mmrank.data.model import Interactions, RankingSet, concat_ranking_sets
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


def temporal_resplit(ctx: AuditContext) -> tuple[RankingSet, RankingSet]:
    """(train, test): the audit's train and test queries pooled and ordered by cut time (ties by
    query id); the latest ``len(test)`` queries are the test set."""
    times = ctx.query_times
    cuts = np.r_[times.of("train", ctx.train)[1], times.of("test", ctx.test)[1]]
    pool = concat_ranking_sets([ctx.train, ctx.test])
    order = np.lexsort((pool.query_ids.astype(str), cuts))
    held = len(order) - ctx.test.n_queries
    return pool.subset(np.sort(order[:held])), pool.subset(np.sort(order[held:]))


def fit_and_score(make_model: Callable, train: RankingSet, valid: RankingSet | None, test: RankingSet,
                  fit_options: dict) -> np.ndarray:
    """One job: a fresh model fitted on ``train`` (early stopping on ``valid``), its scores on ``test``."""
    return np.asarray(fit_ranker(make_model, train, valid, fit_options).score(test), float)


def plan(ctx: AuditContext) -> list[tuple]:
    """The jobs, ``(fn, args)`` each, for the audit's one job pool: the retrain on a temporal
    re-split (time-split reranking data whose audited split is not temporal), or the random and
    temporal holdouts (interaction data with a ``fit_evaluate`` function); else none."""
    times = getattr(ctx, "query_times", None)
    if times is not None:
        if times.is_temporal() or ctx.make_model is None:
            return []
        train, test = temporal_resplit(ctx)
        return [(fit_and_score, (ctx.make_model, train, ctx.valid, test, ctx.fit_options))]
    if ctx.interactions is None or ctx.fit_evaluate is None:
        return []
    return [(evaluate_split, (ctx.fit_evaluate, ctx.interactions, how, ctx.seed)) for how in ("random", "temporal")]


def unpaired_bootstrap_ci(a: np.ndarray, b: np.ndarray, ctx: AuditContext) -> dict:
    """CI of ``mean(a) - mean(b)`` for two independent samples (queries differ), by
    ``scipy.stats.bootstrap`` with the policy's bootstrap options."""
    from scipy import stats as sps

    opts = ctx.stats_options()
    res = sps.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis), paired=False,
                        vectorized=True, n_resamples=opts["n_resamples"], confidence_level=opts["confidence"],
                        method=opts["method"], rng=np.random.default_rng(opts["seed"]))
    return {"mean": float(a.mean() - b.mean()), "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high), "n": [int(len(a)), int(len(b))]}


def check_timed_queries(ctx: AuditContext) -> CheckResult:
    """The reranking variant (queries with cut times): see the module docstring."""
    limit = float(ctx.policy[NAME]["max_relative_gap"])
    rule = f"WARN if (audited - temporal re-split) / temporal > {limit:g} with CI95 above 0 (PASS: split is temporal)"
    if ctx.query_times.is_temporal():
        return CheckResult(NAME, PASS, 0.0, limit, rule, {"audited_split": "temporal: every test cut is at or "
                                                          "after every training cut — no re-split needed"})
    if ctx.make_model is None:
        return CheckResult.skip(NAME, "the audited split is not temporal and there is no model factory to retrain "
                                "on a temporal re-split", provide="pass make_model (or audit a model kind)")
    scores = ctx.job_results(NAME, plan)[0]
    _, temporal_test = temporal_resplit(ctx)
    temporal = ctx.per_query(temporal_test, scores)
    audited = ctx.model_per_query[ctx.evaluable]
    temporal = temporal[~np.isnan(temporal)]
    ci = unpaired_bootstrap_ci(audited, temporal, ctx)
    gap = ci["mean"] / abs(float(temporal.mean())) if temporal.mean() else float("inf")
    evidence = {"audited_split": "not temporal: some test cuts precede training cuts", "audited": float(audited.mean()),
                "temporal_resplit": float(temporal.mean()), "gap_ci": ci}
    ctx.extras["split_sensitivity"] = {"random": evidence["audited"], "temporal": evidence["temporal_resplit"]}
    if gap > limit and ci["low"] > 0:
        return CheckResult(NAME, WARN, gap, limit, rule, evidence,
                           "the audited split overstates a temporal re-split of the same queries: the model profits "
                           "from training on later periods — split by time and report that")
    return CheckResult(NAME, PASS, gap, limit, rule, evidence)


def check(ctx: AuditContext) -> CheckResult:
    """Measure how much a random leave-one-out split overstates the per-user metric of a
    temporal (leave-last-out) split: ``mean(random - temporal) / |mean(temporal)|``, with the
    paired bootstrap CI of the difference (policy ``significance`` options).

    Rule (policy ``split_sensitivity.max_relative_gap``): WARN when the relative gap exceeds it
    and the CI low bound is above 0 (quote the temporal split); PASS otherwise. SKIP without
    ``interactions`` and a ``fit_evaluate`` function. Never FAILs. Reranking queries with cut
    times (``query_times``) take the re-split variant instead (module docstring)."""
    if getattr(ctx, "query_times", None) is not None:
        return check_timed_queries(ctx)
    if ctx.interactions is None or ctx.fit_evaluate is None:
        return CheckResult.skip(NAME, "needs interaction data and a fit_evaluate function (recommenders), or "
                                "reranking queries with cut times (a time-split task's task.json)")
    p = ctx.policy[NAME]
    random_m, temporal_m = ctx.job_results(NAME, plan)
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
