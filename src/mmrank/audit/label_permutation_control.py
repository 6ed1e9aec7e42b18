"""label_permutation_control: retrain on labels shuffled within each training query.

A model trained on permuted labels has nothing real to learn, so on the (unpermuted) test set
it must rank at chance: the metric of random scores. If it ranks clearly above chance, the
score reaches the labels some other way — a leaked feature, a first-stage score built from
labels, an evaluation that breaks ties by a label-sorted row order. Its training fit on the
permuted labels is reported too: deep models memorise random labels (Zhang et al. 2017), which
is expected and not a failure.

Decision: ``lift(x) = metric(x) - chance``. The permuted models' lift (mean over seeds, CI95 by
bootstrapping queries) is compared with the real model's lift: FAIL when the permuted models
recover at least ``fail_share`` of it *and* their CI lies above chance; WARN from ``warn_share``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.jobs import run_jobs
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.data.model import RankingSet
from mmrank.stats import paired_bootstrap_ci, seed_variance

NAME = "label_permutation_control"


def permute_within_queries(rset: RankingSet, seed: int) -> RankingSet:
    """The same set with each query's labels shuffled among its own candidates."""
    rng = np.random.default_rng(seed)
    keys = rng.random(rset.n_candidates)
    order = np.lexsort((keys, rset.query_index))  # stays inside each query, random order within
    return rset.with_labels(rset.labels[order])


def fit_permuted_and_score(make_model: Callable[[], Any], train: RankingSet, test: RankingSet,
                           seed: int, fit_options: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One job: (test scores, train scores, permuted train labels) of a model fit on permuted labels."""
    permuted = permute_within_queries(train, seed)
    model = make_model().fit(permuted, **fit_options)
    return np.asarray(model.score(test), float), np.asarray(model.score(permuted), float), permuted.labels


def chance_per_query(ctx: AuditContext, rset: RankingSet, draws: int, seed: int) -> np.ndarray:
    """(Q,) expected metric of uniformly random scores, averaged over ``draws`` draws."""
    rng = np.random.default_rng(seed)
    return np.mean([ctx.per_query(rset, rng.random(rset.n_candidates)) for _ in range(draws)], axis=0)


def check(ctx: AuditContext) -> CheckResult:
    if ctx.make_model is None:
        return CheckResult.skip(NAME, "no model factory to retrain with (pass make_model)")
    p = ctx.policy[NAME]
    seeds = [ctx.seed + 1000 + i for i in range(int(p["seeds"]))]
    jobs = [(ctx.make_model, ctx.train, ctx.test, s, ctx.fit_options) for s in seeds]
    results = run_jobs(fit_permuted_and_score, jobs, engine=ctx.engine, n_jobs=ctx.n_jobs, address=ctx.address)
    keep = ctx.evaluable
    chance = chance_per_query(ctx, ctx.test, int(p["chance_draws"]), ctx.seed)[keep]
    permuted = np.array([ctx.per_query(ctx.test, scores)[keep] for scores, _, _ in results])
    train_fit = [float(np.nanmean(ctx.per_query(ctx.train.with_labels(lab), tr))) for _, tr, lab in results]
    lift_ci = paired_bootstrap_ci(permuted.mean(axis=0), chance, **ctx.stats_options())
    model_lift = float(np.mean(ctx.model_per_query[keep] - chance))
    share = lift_ci.mean / model_lift if model_lift > 0 else (np.inf if lift_ci.mean > 0 else 0.0)
    evidence = {
        "metric": ctx.metric, "seeds": seeds, "chance": float(chance.mean()),
        "model": float(ctx.model_per_query[keep].mean()),
        "permuted_per_seed": seed_variance(permuted.mean(axis=1)),
        "permuted_lift_ci": lift_ci.to_dict(), "model_lift": model_lift,
        "train_fit_on_permuted_labels": seed_variance(train_fit),
    }
    ctx.extras["permutation"] = {"chance": evidence["chance"], "permuted": evidence["permuted_per_seed"]["mean"],
                                 "model": evidence["model"]}
    rule = (f"WARN if permuted lift >= {p['warn_share']:g} x model lift, FAIL if >= {p['fail_share']:g} x "
            "(and its CI95 above chance)")
    above_chance = lift_ci.low > 0
    advice = ("a model trained on shuffled labels still ranks above chance: look for label information in "
              "features, first-stage/baseline scores or the evaluation's tie order")
    if above_chance and share >= float(p["fail_share"]):
        return CheckResult(NAME, FAIL, share, float(p["fail_share"]), rule, evidence, advice)
    if above_chance and share >= float(p["warn_share"]):
        return CheckResult(NAME, WARN, share, float(p["warn_share"]), rule, evidence, advice)
    return CheckResult(NAME, PASS, share, float(p["fail_share"]), rule, evidence)
