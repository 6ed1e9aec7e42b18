"""modality_ablation: which modalities carry signal, and which does the model use?

Two different questions, kept apart:

* **carries signal** — a small probe (LambdaMART, ``probe_trees`` trees) trained on the training
  set with that modality *alone* (its candidate columns and its query-side columns of the same
  name) beats chance (random scores) on the held-out queries: validation and test together (the
  probe never sees either; this is a question about the data, not about the model's gain, and
  a test set of ~90 queries alone cannot show a weak but real modality);
* **used by the model** — at evaluation time the modality is (a) replaced by its training mean,
  (b) shuffled across test rows, optionally (c) retrained without; its query-side features (the
  query feature of the same name) are ablated *with* the candidate side, so the model cannot
  fall back on the copy carried by the query. ``drop = metric(full) - metric(ablated)`` per query.

Every comparison (one signal test per modality, one per ablation) is a one-sided paired
randomization test; the family is corrected with Holm (``mmrank.stats.holm``) before anything is
called significant; the CI95 of each difference is reported beside it (uncorrected, for size).
A modality counts as *signal* / *used* when its Holm-adjusted p < ``alpha`` and the effect is at
least ``min_drop``.

Findings (WARN for everything but "signal and used"): used without signal ("the model depends on
a modality that carries no signal on its own — noise it fits, or only an interaction"), signal
not used ("carries signal the model ignores"), neither: **dead** only when absence is shown (the
CI95 upper bounds of its signal and of every ablation drop lie below ``dead_share`` x the model's
lift over chance, at least ``min_drop``), otherwise
"not shown either way" (a weak modality on a small test set: the ML-100K task's ``pop`` on 170
held-out queries). A pure-noise modality is therefore never called useful, and the only
informative modality is never called dead.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import PASS, WARN, CheckResult
from mmrank.data.model import RankingSet
from mmrank.errors import DataError
from mmrank.stats import holm, paired_bootstrap_ci, randomization_test

NAME = "modality_ablation"


def _with(rset: RankingSet, m: str, cand: np.ndarray | None, query: np.ndarray | None) -> RankingSet:
    from dataclasses import replace

    feats, qfeats = dict(rset.features), dict(rset.query_features)
    if cand is not None:
        feats[m] = cand
    if query is not None and m in qfeats:
        qfeats[m] = query
    return replace(rset, features=feats, query_features=qfeats)


def replaced_by_mean(test: RankingSet, train: RankingSet, modality: str) -> RankingSet:
    """``modality`` (candidate side and its query side) replaced by its training mean."""
    cand = np.broadcast_to(train.features[modality].mean(axis=0), test.features[modality].shape).copy()
    query = None
    if modality in test.query_features and modality in train.query_features:
        query = np.broadcast_to(train.query_features[modality].mean(axis=0), test.query_features[modality].shape).copy()
    return _with(test, modality, cand, query)


def shuffled(test: RankingSet, modality: str, seed: int) -> RankingSet:
    """``modality`` rows permuted across test candidates (and its query side across queries)."""
    rng = np.random.default_rng(seed)
    cand = test.features[modality][rng.permutation(test.n_candidates)]
    query = test.query_features[modality][rng.permutation(test.n_queries)] if modality in test.query_features else None
    return _with(test, modality, cand, query)


def without(rset: RankingSet, modality: str) -> RankingSet:
    """The set with ``modality`` dropped from both the candidate and the query features."""
    from dataclasses import replace

    return replace(rset, features={k: v for k, v in rset.features.items() if k != modality},
                   query_features={k: v for k, v in rset.query_features.items() if k != modality})


def only(rset: RankingSet, modality: str) -> RankingSet:
    """The set restricted to one modality: its candidate columns and its query-side columns."""
    from dataclasses import replace

    return replace(rset, features={modality: rset.features[modality]},
                   query_features={k: v for k, v in rset.query_features.items() if k == modality},
                   baseline_scores=None)


def fit_without_and_score(make_model: Callable[[], Any], train: RankingSet, test: RankingSet, modality: str,
                          fit_options: dict) -> np.ndarray:
    """One job: scores on the test set of a model retrained without ``modality``."""
    model = make_model().fit(without(train, modality), **fit_options)
    return np.asarray(model.score(without(test, modality)), float)


def probe_scores(train: RankingSet, held_out: RankingSet, modality: str, trees: int, seed: int) -> np.ndarray | None:
    """Scores on ``held_out`` of a small LambdaMART trained on ``modality`` alone (fixed number of
    trees, no early stopping; None: labels LambdaMART cannot take)."""
    from mmrank.models.baselines import LambdaMART

    probe = LambdaMART(n_estimators=trees, num_leaves=15, learning_rate=0.1, min_data_in_leaf=20, seed=seed,
                       num_threads=1)
    try:
        probe.fit(only(train, modality))
    except DataError:
        return None
    return np.asarray(probe.score(only(held_out, modality)), float)


def held_out_for_probe(ctx: AuditContext) -> tuple[RankingSet, np.ndarray]:
    """(validation + test queries, their chance metric) restricted to queries with something to find."""
    from mmrank.data.model import concat_ranking_sets

    parts = [ctx.test] if ctx.valid is None or set(ctx.valid.features) != set(ctx.test.features) else [ctx.valid, ctx.test]
    try:
        held = concat_ranking_sets(parts) if len(parts) > 1 else ctx.test
    except DataError:
        held = ctx.test
    rng = np.random.default_rng(ctx.seed + 3)
    draws = int(ctx.policy["label_permutation_control"]["chance_draws"])
    chance = np.mean([ctx.per_query(held, rng.random(held.n_candidates)) for _ in range(draws)], axis=0)
    return held, chance


def _comparison(ctx: AuditContext, a: np.ndarray, b: np.ndarray) -> dict:
    """Mean difference a - b with its CI95 and one-sided randomization p (a > b)."""
    s = ctx.policy["significance"]
    ci = paired_bootstrap_ci(a, b, **ctx.stats_options()).to_dict()
    p = randomization_test(a, b, n_resamples=int(s["permutation_resamples"]), alternative="greater", seed=ctx.seed).pvalue
    return ci | {"p": float(p)}


def finding(m: str, signal: bool | None, used: bool, absent: bool) -> str | None:
    """The words for one modality (None when it carries signal and the model uses it).

    ``absent``: its signal and every ablation drop are shown negligible (CI95 high < dead_below)."""
    if signal and used:
        return None
    if signal:
        return f"{m}: carries signal on its own, but the model does not measurably use it"
    if used:
        return (f"{m}: carries no measurable signal on its own, yet the model depends on it — noise it fits, or "
                "signal only in interaction with other inputs; never call it useful without a retrain without it")
    if absent:
        return f"{m}: dead — shown to carry no signal and to change nothing when removed"
    return (f"{m}: not shown either way — no measurable signal or use, but the intervals are too wide to call it "
            "dead: evaluate on more queries")


def audited_modalities(ctx: AuditContext) -> list[str]:
    """The candidate modalities both splits have (the binary ``conflict``/``compliance`` flags left out)."""
    return sorted(set(ctx.test.features) & set(ctx.train.features) - {"conflict", "compliance"})


def plan(ctx: AuditContext) -> list[tuple]:
    """The model-independent jobs, ``(fn, args)`` each, for the audit's one job pool: one
    "carries signal" probe per modality, then (policy ``retrain``) one retrain without each."""
    p = ctx.policy[NAME]
    modalities = audited_modalities(ctx)
    if not modalities:
        return []
    held, _ = held_out_for_probe(ctx)
    jobs = [(probe_scores, (ctx.train, held, m, int(p["probe_trees"]), ctx.seed)) for m in modalities]
    if p.get("retrain") and ctx.make_model is not None and len(modalities) > 1:
        jobs += [(fit_without_and_score, (ctx.make_model, ctx.train, ctx.test, m, ctx.fit_options)) for m in modalities]
    return jobs


def check(ctx: AuditContext) -> CheckResult:
    """Measure, per candidate modality, whether it carries signal (a ``probe_trees``-tree
    LambdaMART on it alone beats chance on validation + test queries) and whether the model
    uses it (the per-query drop when it is replaced by its training mean, shuffled, or — with
    ``retrain`` — retrained without).

    Rule (policy ``modality_ablation.min_drop``, ``alpha``, ``dead_share``, ``probe_trees``,
    ``retrain``; resamples from ``significance``): a comparison is significant when its
    Holm-adjusted one-sided randomization p is below ``alpha`` and its mean is at least
    ``min_drop``. PASS when every modality both carries signal and is used; WARN otherwise, with
    a finding per modality (used without signal, signal not used, dead — CI95 highs below
    ``max(min_drop, dead_share x model lift)`` — or not shown either way). SKIP when the data
    has no candidate modalities. Never FAILs. ``value`` is the smallest best drop."""
    p = ctx.policy[NAME]
    min_drop, alpha = float(p["min_drop"]), float(p["alpha"])
    modalities = audited_modalities(ctx)
    if not modalities:
        return CheckResult.skip(NAME, "the data has no candidate modalities")
    keep = ctx.evaluable
    full = ctx.model_per_query[keep]
    chance = ctx.chance_per_query[keep]
    variants: dict[str, dict[str, np.ndarray]] = {}
    for i, m in enumerate(modalities):
        variants[m] = {
            "train_mean": ctx.model.score(replaced_by_mean(ctx.test, ctx.train, m)),
            "shuffled": ctx.model.score(shuffled(ctx.test, m, ctx.seed + i)),
        }
    jobs = ctx.job_results(NAME, plan)
    probes, retrained = jobs[:len(modalities)], jobs[len(modalities):]
    for m, scores in zip(modalities, retrained):
        variants[m]["retrained_without"] = scores
    tests: list[tuple[str, str, dict]] = []       # (modality, what, comparison)
    held, held_chance = held_out_for_probe(ctx)
    held_keep = ~np.isnan(held_chance)
    for m, probe in zip(modalities, probes):
        if probe is not None:
            probe_pq = ctx.per_query(held, probe)
            tests.append((m, "signal", _comparison(ctx, probe_pq[held_keep], held_chance[held_keep])))
        for kind, s in variants[m].items():
            tests.append((m, kind, _comparison(ctx, full, ctx.per_query(ctx.test, s)[keep])))
    for (_, _, c), adj in zip(tests, holm([c["p"] for _, _, c in tests])):
        c["p_holm"] = float(adj)
    significant = lambda c: c["p_holm"] < alpha and c["mean"] >= min_drop  # noqa: E731
    per_modality: dict[str, dict] = {m: {"drop": {}, "signal": None} for m in modalities}
    for m, what, c in tests:
        if what == "signal":
            per_modality[m]["signal"] = c
        else:
            per_modality[m]["drop"][what] = c
    # "dead" needs evidence of absence at the scale of what the model achieves: on a task where the
    # model beats chance by 0.02, an interval reaching 0.04 shows nothing
    model_lift = float(np.mean(full - chance))
    dead_below = max(min_drop, float(p["dead_share"]) * max(model_lift, 0.0))
    findings = []
    for m, v in per_modality.items():
        v["carries_signal"] = None if v["signal"] is None else bool(significant(v["signal"]))
        v["used"] = any(significant(d) for d in v["drop"].values())
        v["matters"] = v["used"]
        absent = v["signal"] is not None and all(c["high"] < dead_below for c in [v["signal"], *v["drop"].values()])
        v["finding"] = finding(m, v["carries_signal"], v["used"], absent)
        if v["finding"]:
            findings.append(v["finding"])
    best_drop = {m: max(d["mean"] for d in v["drop"].values()) for m, v in per_modality.items()}
    ctx.extras["ablation"] = {m: {k: d["mean"] for k, d in v["drop"].items()} | {
        f"{k}_ci": [d["low"], d["high"]] for k, d in v["drop"].items()} for m, v in per_modality.items()}
    weakest = min(best_drop, key=best_drop.get)
    evidence = {"metric": ctx.metric, "full": float(full.mean()), "chance": float(chance.mean()),
                "per_modality": per_modality, "comparisons_corrected": len(tests), "correction": "holm",
                "findings": findings, "dead_below": dead_below}
    rule = (f"per modality: signal = probe on it alone beats chance, used = an ablation drops the metric; each "
            f"by >= {min_drop:g} with Holm p < {alpha:g} over {len(tests)} comparisons; WARN unless signal and used")
    if findings:
        dead = [m for m, v in per_modality.items() if not v["used"]]
        return CheckResult(NAME, WARN, best_drop[weakest], min_drop, rule, evidence | {"dead": dead},
                           "; ".join(findings) + " — check these modalities' features, or train without them")
    return CheckResult(NAME, PASS, best_drop[weakest], min_drop, rule, evidence)
