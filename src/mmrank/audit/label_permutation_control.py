"""label_permutation_control: retrain on labels shuffled within each training query.

A model trained on permuted labels has nothing real to learn, so on the (unpermuted) test set
it must rank at chance: the metric of random scores. If it ranks clearly above chance, the
score reaches the labels some other way — a leaked feature, a first-stage score built from
labels, an evaluation that breaks ties by a label-sorted row order. Its training fit on the
permuted labels is reported too: deep models memorise random labels (Zhang et al. 2017), which
is expected and not a failure.

Each retrain is independent: its own permutation *and* its own training seed (the model's
``seed`` attribute, or the ``seed`` of its train settings), so one unlucky initialisation is not
counted ``seeds`` times. It is fit with the same validation rows as the original fit (early
stopping), their labels permuted too — a permuted model must not select its epoch on real labels.

Decision: ``lift(x) = metric(x) - chance``. The permuted models' lift is "above chance" only
when both the query bootstrap CI95 of the seed-averaged lift *and* the one-sided 95% t bound
over the retrains' lifts (the spread between retrains) lie above zero; then it is compared with
the real model's lift: FAIL from ``fail_share`` of it, WARN from ``warn_share``.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import numpy as np
from scipy import stats as sps

from mmrank.audit.context import AuditContext
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


def seeded(model: Any, fit_options: dict, seed: int) -> tuple[Any, dict, bool]:
    """(model, fit options) with the training seed set to ``seed``, and whether a seed was found:
    a ``seed`` constructor parameter (``get_params``: GBDTs) and/or ``settings["seed"]`` (neural
    rankers' train settings)."""
    options, found = copy.deepcopy(fit_options), False
    params = model.get_params() if callable(getattr(model, "get_params", None)) else {}
    if "seed" in params:
        model, found = type(model)(**{**params, "seed": int(seed)}), True
    settings = options.get("settings")
    if isinstance(settings, dict):
        options["settings"], found = {**settings, "seed": int(seed)}, True
    elif settings is not None and hasattr(settings, "seed"):
        options["settings"], found = settings.model_copy(update={"seed": int(seed)}), True
    return model, options, found


def takes_valid(model: Any) -> bool:
    """True when ``model.fit`` accepts a validation set as its second argument."""
    params = [p for p in inspect.signature(model.fit).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(params) >= 2


def fit_permuted_and_score(make_model: Callable[[], Any], train: RankingSet, test: RankingSet,
                           seed: int, fit_options: dict, valid: RankingSet | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """One job: (test scores, train scores, permuted train labels, seed set) of a model fit on
    labels permuted with ``seed``, trained with seed ``seed`` (validation labels permuted too)."""
    permuted = permute_within_queries(train, seed)
    model, options, found = seeded(make_model(), fit_options, seed)
    if valid is not None and takes_valid(model):
        model = model.fit(permuted, permute_within_queries(valid, seed + 1), **options)
    else:
        model = model.fit(permuted, **options)
    return np.asarray(model.score(test), float), np.asarray(model.score(permuted), float), permuted.labels, found


def retrain_bound(lifts: np.ndarray, confidence: float = 0.95) -> float:
    """One-sided lower confidence bound of the mean lift over retrains (t, k-1 df); -inf for k < 2."""
    k = len(lifts)
    if k < 2:
        return -np.inf
    sd = float(np.std(lifts, ddof=1))
    return float(np.mean(lifts) - sps.t.ppf(confidence, k - 1) * sd / np.sqrt(k))


def plan(ctx: AuditContext) -> list[tuple]:
    """The retrains, ``(fn, args)`` each (policy ``seeds`` of them, seeds ``seed + 1000 + i``), for
    the audit's one job pool; none without a model factory."""
    if ctx.make_model is None:
        return []
    return [(fit_permuted_and_score, (ctx.make_model, ctx.train, ctx.test, s, ctx.fit_options, ctx.valid))
            for s in retrain_seeds(ctx)]


def retrain_seeds(ctx: AuditContext) -> list[int]:
    """One independent seed per permuted retrain: ``policy seed + 1000 + i``."""
    return [ctx.seed + 1000 + i for i in range(int(ctx.policy[NAME]["seeds"]))]


def check(ctx: AuditContext) -> CheckResult:
    """Measure how much of the real model's lift over chance a model retrained on labels
    permuted within each training query keeps on the real test labels (``value``: the
    permuted models' mean lift divided by the model's lift).

    Rule (policy ``label_permutation_control.seeds`` retrains, ``chance_draws`` for chance,
    ``warn_share`` / ``fail_share``): the permuted lift counts as above chance only when its
    query bootstrap CI95 low bound (policy ``significance`` options) and the one-sided t bound
    over retrains are both above 0; then FAIL when the share is at least ``fail_share`` (label
    information reaches the score some other way — NO_GO), WARN when at least ``warn_share``;
    PASS otherwise. SKIP when there is no ``make_model`` to retrain with."""
    if ctx.make_model is None:
        return CheckResult.skip(NAME, "no model factory to retrain with (pass make_model)")
    p = ctx.policy[NAME]
    seeds = retrain_seeds(ctx)
    results = ctx.job_results(NAME, plan)
    keep = ctx.evaluable
    chance = ctx.chance_per_query[keep]
    permuted = np.array([ctx.per_query(ctx.test, scores)[keep] for scores, _, _, _ in results])
    train_fit = [float(np.nanmean(ctx.per_query(ctx.train.with_labels(lab), tr))) for _, tr, lab, _ in results]
    lift_ci = paired_bootstrap_ci(permuted.mean(axis=0), chance, **ctx.stats_options())
    per_retrain_lift = permuted.mean(axis=1) - chance.mean()
    bound = retrain_bound(per_retrain_lift)
    model_lift = float(np.mean(ctx.model_per_query[keep] - chance))
    share = lift_ci.mean / model_lift if model_lift > 0 else (np.inf if lift_ci.mean > 0 else 0.0)
    evidence = {
        "metric": ctx.metric, "seeds": seeds, "chance": float(chance.mean()),
        "model": float(ctx.model_per_query[keep].mean()),
        "permuted_per_seed": seed_variance(permuted.mean(axis=1)),
        "permuted_lift_ci": lift_ci.to_dict(), "model_lift": model_lift,
        "train_fit_on_permuted_labels": seed_variance(train_fit),
        "per_retrain_lift": per_retrain_lift, "retrain_lift_lower_bound": bound,
        "training_seed_per_retrain": all(found for *_, found in results),
        "validation": ctx.valid is not None,
    }
    ctx.extras["permutation"] = {"chance": evidence["chance"], "permuted": evidence["permuted_per_seed"]["mean"],
                                 "model": evidence["model"]}
    rule = (f"WARN if permuted lift >= {p['warn_share']:g} x model lift, FAIL if >= {p['fail_share']:g} x "
            "(and both its query CI95 and the t bound over retrains above chance)")
    above_chance = lift_ci.low > 0 and bound > 0
    advice = ("a model trained on shuffled labels still ranks above chance: look for label information in "
              "features, first-stage/baseline scores or the evaluation's tie order")
    if above_chance and share >= float(p["fail_share"]):
        return CheckResult(NAME, FAIL, share, float(p["fail_share"]), rule, evidence, advice)
    if above_chance and share >= float(p["warn_share"]):
        return CheckResult(NAME, WARN, share, float(p["warn_share"]), rule, evidence, advice)
    return CheckResult(NAME, PASS, share, float(p["fail_share"]), rule, evidence)
