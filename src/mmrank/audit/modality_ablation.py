"""modality_ablation: does each modality measurably matter to the trained model?

Per modality, at evaluation time: (a) replace it by its training mean (the model sees "nothing
informative" in that slot), (b) shuffle its rows across the test set (right marginal, wrong
candidate). Optionally (c) retrain without it. ``drop = metric(full) - metric(ablated)`` per
query, with a paired bootstrap CI95. A modality matters when some ablation drops the metric by
at least ``min_drop`` with the CI above zero; one that changes nothing measurable is dead
weight (or the model ignores it): WARN with advice.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.jobs import run_jobs
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.data.model import RankingSet
from mmrank.stats import paired_bootstrap_ci

NAME = "modality_ablation"


def replaced_by_mean(test: RankingSet, train: RankingSet, modality: str) -> RankingSet:
    feats = dict(test.features)
    feats[modality] = np.broadcast_to(train.features[modality].mean(axis=0), feats[modality].shape).copy()
    return test.with_features(feats)


def shuffled(test: RankingSet, modality: str, seed: int) -> RankingSet:
    feats = dict(test.features)
    feats[modality] = feats[modality][np.random.default_rng(seed).permutation(test.n_candidates)]
    return test.with_features(feats)


def without(rset: RankingSet, modality: str) -> RankingSet:
    return rset.with_features({k: v for k, v in rset.features.items() if k != modality})


def fit_without_and_score(make_model: Callable[[], Any], train: RankingSet, test: RankingSet, modality: str,
                          fit_options: dict) -> np.ndarray:
    """One job: scores on the test set of a model retrained without ``modality``."""
    model = make_model().fit(without(train, modality), **fit_options)
    return np.asarray(model.score(without(test, modality)), float)


def check(ctx: AuditContext) -> CheckResult:
    p = ctx.policy[NAME]
    min_drop = float(p["min_drop"])
    modalities = sorted(set(ctx.test.features) & set(ctx.train.features) - {"conflict", "compliance"})
    if not modalities:
        return CheckResult.skip(NAME, "the data has no candidate modalities")
    keep = ctx.evaluable
    full = ctx.model_per_query[keep]
    variants: dict[str, dict[str, np.ndarray]] = {}
    for i, m in enumerate(modalities):
        variants[m] = {
            "train_mean": ctx.model.score(replaced_by_mean(ctx.test, ctx.train, m)),
            "shuffled": ctx.model.score(shuffled(ctx.test, m, ctx.seed + i)),
        }
    if p.get("retrain") and ctx.make_model is not None and len(modalities) > 1:
        jobs = [(ctx.make_model, ctx.train, ctx.test, m, ctx.fit_options) for m in modalities]
        for m, scores in zip(modalities, run_jobs(fit_without_and_score, jobs, engine=ctx.engine,
                                                  n_jobs=ctx.n_jobs, address=ctx.address)):
            variants[m]["retrained_without"] = scores
    per_modality, dead = {}, []
    for m, by_kind in variants.items():
        drops = {kind: paired_bootstrap_ci(full, ctx.per_query(ctx.test, s)[keep], **ctx.stats_options()).to_dict()
                 for kind, s in by_kind.items()}
        matters = any(d["low"] > 0 and d["mean"] >= min_drop for d in drops.values())
        per_modality[m] = {"drop": drops, "matters": matters}
        if not matters:
            dead.append(m)
    best_drop = {m: max(d["mean"] for d in v["drop"].values()) for m, v in per_modality.items()}
    ctx.extras["ablation"] = {m: {k: d["mean"] for k, d in v["drop"].items()} | {
        f"{k}_ci": [d["low"], d["high"]] for k, d in v["drop"].items()} for m, v in per_modality.items()}
    weakest = min(best_drop, key=best_drop.get)
    evidence = {"metric": ctx.metric, "full": float(full.mean()), "per_modality": per_modality}
    rule = f"WARN if a modality's largest drop < {min_drop:g} or its CI95 reaches 0"
    if dead:
        return CheckResult(NAME, WARN, best_drop[weakest], min_drop, rule, evidence | {"dead": dead},
                           f"removing {', '.join(dead)} changes nothing measurable: the model ignores it or it "
                           "carries no signal — check its features (constant? misaligned rows?) or drop it")
    return CheckResult(NAME, PASS, best_drop[weakest], min_drop, rule, evidence)
