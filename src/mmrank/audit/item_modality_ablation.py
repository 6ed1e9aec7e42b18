"""modality_ablation, for recommenders: does each item modality of a multimodal recommender
measurably matter to its full-ranking metric?

The recommender form of ``modality_ablation`` (same name, same policy section): per modality
the trained model scores every user again with that modality treated as missing for every item
(``ranker.set_ablation({m})``: the cross-modal gate renormalises over the rest, as it does for an
item without a poster), and ``drop = metric(full) - metric(ablated)`` per user gets a paired
bootstrap CI95. All content removed at once is reported beside it. A modality matters when its
drop is at least ``min_drop`` with the CI above zero; one that changes nothing measurable is dead
weight: WARN. Models without item modalities (ID-only SASRec, baselines): SKIP.
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.recommender_context import RecommenderAuditContext
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.stats import paired_bootstrap_ci

NAME = "modality_ablation"
ALL_CONTENT = "all content"


def ablated_metric(ctx: RecommenderAuditContext, modalities: set[str]) -> np.ndarray:
    """Per-user audit metric with ``modalities`` treated as missing for every item."""
    ctx.model.set_ablation(modalities)
    try:
        return ctx.evaluate(ctx.model, ctx.split)[ctx.metric]
    finally:
        ctx.model.set_ablation(set())


def check(ctx: RecommenderAuditContext) -> CheckResult:
    """Measure, per item modality of a recommender, the drop of the per-user audit metric when
    that modality is treated as missing for every item (paired bootstrap CI, policy
    ``significance`` options), plus all content removed at once.

    Rule (policy ``modality_ablation.min_drop``): a modality matters when its mean drop is at
    least ``min_drop`` and its CI low bound is above 0; WARN when any modality does not (dead
    weight); PASS when all matter. SKIP when the model has no item modalities or no
    ``set_ablation``. Never FAILs. ``value`` is the smallest mean drop."""
    modalities = list(getattr(ctx.model, "modalities", []) or [])
    if not modalities or not hasattr(ctx.model, "set_ablation"):
        return CheckResult.skip(NAME, f"{type(ctx.model).__name__} uses no item modalities")
    min_drop = float(ctx.policy[NAME]["min_drop"])
    full = ctx.model_per_query
    variants = {m: {m} for m in modalities}
    if len(modalities) > 1:
        variants[ALL_CONTENT] = set(modalities)
    drops = {name: paired_bootstrap_ci(full, ablated_metric(ctx, removed), **ctx.stats_options()).to_dict()
             for name, removed in variants.items()}
    per_modality = {m: {"drop": drops[m], "matters": drops[m]["low"] > 0 and drops[m]["mean"] >= min_drop}
                    for m in modalities}
    dead = [m for m in modalities if not per_modality[m]["matters"]]
    ctx.extras["ablation"] = {name: {"treated_as_missing": d["mean"], "treated_as_missing_ci": [d["low"], d["high"]]}
                              for name, d in drops.items()}
    weakest = min(modalities, key=lambda m: drops[m]["mean"])
    evidence = {"metric": ctx.metric, "full": float(full.mean()), "users": int(full.size),
                "per_modality": per_modality, "all_content_drop": drops.get(ALL_CONTENT)}
    rule = f"WARN if a modality's drop < {min_drop:g} or its CI95 reaches 0"
    if dead:
        return CheckResult(NAME, WARN, drops[weakest]["mean"], min_drop, rule, evidence | {"dead": dead},
                           f"treating {', '.join(dead)} as missing changes {ctx.metric} by nothing measurable: the "
                           "model ignores it or it carries no signal — check its features or train without it")
    return CheckResult(NAME, PASS, drops[weakest]["mean"], min_drop, rule, evidence)
