"""feature_label_leakage: an input that carries the label, alone or with one honest partner.

**Absolute rule** (a copy of the label). Every candidate feature column (both directions:
high-is-good and low-is-good) scores the test queries by itself. Ties are broken *against* the
feature (lower label first), so a constant or coarse column cannot look good thanks to the file's
row order. Queries whose candidates all share one label are left out: any order is perfect there.
The best column reaching ``fail_ndcg`` FAILs, ``warn_ndcg`` WARNs.

**Soft-leak rule** (label + noise, or a first-stage score computed with the judgements and
blended with an honest score — such a column can look ordinary on its own, yet beside its honest
partner it gives the label away). Honest inputs overlap: on real data the best of them, even
with its best partner, ranks *worse* than all the other inputs together (clean MQ2008 folds:
-0.036 to -0.061 nDCG@10). A label leak ranks *better* than everything else combined. Per
suspect column:

* **share** — the share of the audited model's lift over chance (random scores) that disappears
  when the column is shuffled across the test rows: does the *model* lean on it?
* **excess** — a small LambdaMART probe on the column alone, or on it and its partner (the other
  column most correlated with it on the training rows; of the two, the one better on validation),
  minus the same probe on *every other input*: test nDCG@k paired per query, with its CI95.
  ``marginal`` (the all-input probe minus the probe without the column) is reported beside it.

* **beyond the label** — how much of the column the other inputs explain beyond the label
  grades and its partner (out-of-sample partial R², least squares fitted on the training rows). A
  column *made from the labels* is fully explained by the grades and its partner (<= 0: MQ2008
  leaks -0.006 to 0.000); an honest input shares structure with the other inputs that the labels
  do not carry (clean MQ2008's best columns about 0.5; the fault simulator's features >= 0.02).

Suspects are the ``screen_columns`` columns an all-input probe gains most from, plus the best
column alone; the ``probe_units`` the model leans on most (share >= ``min_lift_share``) are
probed. A suspect whose excess is at least ``min_excess`` (CI95 low above 0) FAILs when nothing
but the labels explains it (beyond the label <= ``max_beyond_label``) and WARNs otherwise: an
honest input stronger than all the others together (the simulator draws one at 1 of 20 seeds:
excess +0.098) cannot be told from a leak by its strength; by its structure it can.
Measured before the rule was set (MQ2008 folds 1-5 clean: excess -0.036 to -0.061; label + noise
and blended first stages on folds 1 and 3: +0.10 to +0.33) and validated on held-out data in
``benchmarks/audit_soft_leak.py``. Not caught: a leak spread thinly over many columns (an
embedding fitted with the labels), a leaky score built from many inputs plus the label (it
shares their structure: WARN at most), a query-level feature (constant within a query it cannot
reorder candidates by itself; on MQ2008 the query's own label counts as query features change
LambdaMART's nDCG@10 by under 0.01), a leak the model does not use (it then fakes nothing), or
one the probe cannot decode.
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.jobs import run_pool
from mmrank.audit.result import FAIL, PASS, WARN, CheckResult
from mmrank.data.model import RankingSet
from mmrank.errors import DataError
from mmrank.stats import paired_bootstrap_ci

NAME = "feature_label_leakage"


def feature_columns(rset: RankingSet) -> tuple[np.ndarray, list[str]]:
    """The candidate features as one flat float64 matrix (query features left out) with a
    ``"modality[j]"`` name per column, modalities in sorted order.

    Returns:
        ``(x, names)``: x of shape (N, D) and D names."""
    names = [f"{m}[{j}]" for m in sorted(rset.features) for j in range(rset.features[m].shape[1])]
    return rset.feature_matrix(with_query_features=False).astype(np.float64), names


def pessimistic_scores(column: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``column`` with ties broken towards the lower label: rank order of (value, -label)."""
    order = np.lexsort((-labels, column))  # ascending value; among equal values higher label first
    scores = np.empty(len(column))
    scores[order] = np.arange(len(column), dtype=np.float64)
    return scores


def varied_queries(rset: RankingSet) -> np.ndarray:
    """(Q,) bool: queries whose candidates do not all share one label."""
    qi = rset.query_index
    lo = np.full(rset.n_queries, np.inf)
    hi = np.full(rset.n_queries, -np.inf)
    np.minimum.at(lo, qi, rset.labels)
    np.maximum.at(hi, qi, rset.labels)
    return hi > lo


def column_location(rset: RankingSet, j: int) -> tuple[str, int]:
    """(modality, column inside it) of flat column ``j`` of ``feature_columns``."""
    for m in sorted(rset.features):
        d = rset.features[m].shape[1]
        if j < d:
            return m, j
        j -= d
    raise IndexError(j)


def shuffled_column(rset: RankingSet, j: int, seed: int) -> RankingSet:
    """``rset`` with flat feature column ``j`` permuted across all rows (right marginal, wrong rows)."""
    m, c = column_location(rset, j)
    feats = dict(rset.features)
    feats[m] = feats[m].copy()
    feats[m][:, c] = feats[m][np.random.default_rng(seed).permutation(rset.n_candidates), c]
    return rset.with_features(feats)


def without_column(rset: RankingSet, j: int) -> RankingSet:
    """``rset`` with flat feature column ``j`` removed (its modality keeps its other columns)."""
    m, c = column_location(rset, j)
    feats = dict(rset.features)
    rest = np.delete(feats[m], c, axis=1)
    if rest.shape[1]:
        feats[m] = rest
    else:
        del feats[m]
    return rset.with_features(feats)


def only_columns(rset: RankingSet, columns: list[int]) -> RankingSet:
    """``rset`` reduced to the flat candidate ``columns`` (one modality ``probe``, no query features)."""
    from dataclasses import replace

    x, _ = feature_columns(rset)
    return replace(rset, features={"probe": x[:, columns]}, query_features={}, baseline_scores=None)


def probe_fit(train: RankingSet, valid: RankingSet | None, test: RankingSet, seed: int,
              drop: int | None = None, columns: list[int] | None = None) -> dict | None:
    """One job: a small LambdaMART (100 trees, early-stopped on ``valid``) trained on every input,
    every input but flat candidate column ``drop``, or only the flat candidate ``columns``.

    Returns:
        ``{"test": scores on test, "gain": gain per input column, "select": its mean nDCG@10 on
        valid (train without one)}`` — None when LambdaMART cannot take the labels or no input is
        left."""
    from mmrank.metrics import per_query_metrics
    from mmrank.models.baselines import LambdaMART

    if drop is not None:
        train, test, valid = (None if r is None else without_column(r, drop) for r in (train, test, valid))
    if columns is not None:
        train, test, valid = (None if r is None else only_columns(r, columns) for r in (train, test, valid))
    if not train.features:
        return None
    probe = LambdaMART(n_estimators=100, num_leaves=15, learning_rate=0.1, seed=seed, num_threads=1)
    try:
        probe.fit(train, valid)
    except (DataError, ValueError):
        return None
    chosen_on = valid if valid is not None and valid.n_queries else train
    select = per_query_metrics(chosen_on.labels, probe.score(chosen_on), chosen_on.offsets, ("ndcg@10",),
                               no_relevant="skip")["ndcg@10"]
    return {"test": np.asarray(probe.score(test), float), "gain": probe.booster_.feature_importance("gain"),
            "select": float(np.nanmean(select))}


def partner_of(train: RankingSet, j: int) -> int | None:
    """The other candidate column most correlated with column ``j`` on the training rows (the
    honest half of a blended score), None when there is no other varying column."""
    x, _ = feature_columns(train)
    x = x - x.mean(axis=0)
    norms = np.linalg.norm(x, axis=0)
    if norms[j] == 0:
        return None
    corr = np.abs(x.T @ x[:, j]) / np.where(norms > 0, norms * norms[j], np.inf)
    corr[j] = -1.0
    best = int(np.argmax(corr))
    return best if corr[best] > 0 else None


def beyond_label(train: RankingSet, test: RankingSet, j: int, partner: int | None) -> float:
    """How much of column ``j`` the other inputs explain *beyond* the label grades and its partner:
    out-of-sample partial R² (least squares fitted on ``train``, measured on ``test``).

    A column made from the labels — label + noise, or an honest column + a label term — is fully
    explained by the grades and its partner: the other inputs add nothing (<= 0 out of sample).
    An honest input shares structure with the other inputs that the labels do not carry (clean
    MQ2008's best columns: about 0.5; the simulator's dominant features: >= 0.02)."""
    grades = np.unique(train.labels)

    def design(rset: RankingSet, full: bool) -> tuple[np.ndarray, np.ndarray]:
        x, _ = feature_columns(rset)
        cols = [(rset.labels == g).astype(np.float64) for g in grades[1:]]
        cols += [x[:, k] for k in range(x.shape[1]) if k == partner or (full and k != j)]
        return (np.column_stack(cols) if cols else np.zeros((rset.n_candidates, 0))), x[:, j]

    def r2(full: bool) -> float:
        (a, c), (b, ct) = design(train, full), design(test, full)
        mu, sd = a.mean(axis=0), a.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        a, b = np.c_[np.ones(len(a)), (a - mu) / sd], np.c_[np.ones(len(b)), (b - mu) / sd]
        w = np.linalg.solve(a.T @ a + 1e-3 * np.eye(a.shape[1]), a.T @ c)
        return 1.0 - float(np.mean((ct - b @ w) ** 2)) / max(float(np.var(ct)), 1e-12)

    base = r2(False)
    if 1.0 - base < 1e-3:   # the grades and the partner already determine it: nothing left to explain
        return 0.0
    return (r2(True) - base) / (1.0 - base)


def plan(ctx: AuditContext) -> list[tuple]:
    """The check's model-independent job (the all-input probe): ``(fn, args)`` for the audit's
    one job pool."""
    return [(probe_fit, (ctx.train, ctx.valid, mixed_label_queries(ctx.test), ctx.seed))]


def mixed_label_queries(test: RankingSet) -> RankingSet:
    """The test queries whose candidates do not all share one label (the only ones a feature can order)."""
    return test.subset(np.flatnonzero(varied_queries(test)))


def lift_lost_when_shuffled(ctx: AuditContext, j: int) -> float:
    """Share of the model's test lift over chance that disappears when column ``j`` is shuffled."""
    keep = ctx.evaluable
    chance = ctx.chance_per_query[keep]
    model = ctx.model_per_query[keep]
    shuffled = ctx.per_query(ctx.test, np.asarray(ctx.model.score(shuffled_column(ctx.test, j, ctx.seed)), float))[keep]
    lift = float(np.mean(model - chance))
    return float(np.mean(model - shuffled)) / lift if lift > 0 else 0.0


def suspects(importance: np.ndarray | None, best_alone: int, n_columns: int, how_many: int) -> list[int]:
    """Flat candidate columns to screen: the ``how_many`` the all-input probe gained most from
    (query-feature columns, which come after the candidate ones, left out), then the best column alone."""
    out = [] if importance is None else [int(j) for j in np.argsort(-importance[:n_columns], kind="stable")[:how_many]
                                          if importance[j] > 0]
    return out + ([best_alone] if best_alone not in out else [])


def soft_leak_evidence(ctx: AuditContext, test: RankingSet, names: list[str], best_j: int, k: int) -> dict:
    """The soft-leak rule's measurements: per suspect column its share of the model's lift lost
    when shuffled; for the ``probe_units`` suspects with the largest share (at least
    ``min_lift_share``), per query on the test set: a probe on the column alone or with its
    partner (the one of the two chosen on validation) minus a probe on every other input
    (``excess``), and the all-input probe minus that (``marginal``), each with its CI95, and the
    share of the column the other inputs explain beyond the labels (``explained_beyond_label``)."""
    p = ctx.policy[NAME]
    full = ctx.job_results(NAME, plan)[0]
    if full is None:
        return {"probe_all_inputs": None}
    ndcg = lambda scores: ctx.per_query(test, pessimistic_scores(scores, test.labels), metric=f"ndcg@{k}",  # noqa: E731
                                        no_relevant="skip")
    full_pq, importance = ndcg(full["test"]), full["gain"]
    screened = {j: lift_lost_when_shuffled(ctx, j) for j in suspects(importance, best_j, len(names), int(p["screen_columns"]))}
    order = sorted(screened, key=lambda j: (-screened[j], j))
    out: dict = {"probe_all_inputs": float(np.nanmean(full_pq)),
                 "lift_share_when_shuffled": {names[j]: screened[j] for j in order}, "suspects": {}}
    probed = [j for j in order if screened[j] >= float(p["min_lift_share"])][: int(p["probe_units"])]
    partners = {j: partner_of(ctx.train, j) for j in probed}
    # the probes of every suspect (without it; it alone; it with its partner) are independent: one pool
    tasks = [(j, what, (probe_fit, (ctx.train, ctx.valid, test, ctx.seed, *args)))
             for j in probed for what, args in (("without", (j, None)), ("alone", (None, [j])),
                                                 ("with_partner", (None, [j, partners[j]])))
             if what != "with_partner" or partners[j] is not None]
    fitted = run_pool([t for _, _, t in tasks], engine=ctx.engine, n_jobs=ctx.n_jobs, address=ctx.address) if tasks else []
    probes = {(j, what): result for (j, what, _), (result, _) in zip(tasks, fitted)}
    for j in probed:
        without, partner = probes[(j, "without")], partners[j]
        if without is None:
            continue
        others = ndcg(without["test"])
        small = [probes.get((j, what)) for what in ("alone", "with_partner")]
        small = max((s for s in small if s is not None), key=lambda s: s["select"], default=None)
        keep = ~np.isnan(full_pq) & ~np.isnan(others)
        entry = {"share": screened[j], "partner": None if partner is None else names[partner],
                 "explained_beyond_label": beyond_label(ctx.train, test, j, partner),
                 "probe_without": float(np.mean(others[keep])),
                 "marginal": paired_bootstrap_ci(full_pq[keep], others[keep], **ctx.stats_options()).to_dict()}
        if small is not None:
            mine = ndcg(small["test"])
            keep &= ~np.isnan(mine)
            entry["probe_it_with_partner"] = float(np.mean(mine[keep]))
            entry["excess"] = paired_bootstrap_ci(mine[keep], others[keep], **ctx.stats_options()).to_dict()
        out["suspects"][names[j]] = entry
    return out


def check(ctx: AuditContext) -> CheckResult:
    """Measure the best mean per-query nDCG@k that one candidate feature reaches alone as the
    score (either direction, ties broken against it), on test queries with mixed labels, and for
    the suspect columns how they compare with all other inputs together (the soft-leak rule).

    Rules (policy ``feature_label_leakage.*``): FAIL when the best single column reaches
    ``fail_ndcg`` (a label copy). Otherwise, for a suspect the model leans on (shuffling it
    removes at least ``min_lift_share`` of the model's lift over chance) that alone or with its
    partner beats a probe on all other inputs by at least ``min_excess`` nDCG (CI95 low bound
    above 0): FAIL when the other inputs explain no more of it than the labels do (partial R² at
    most ``max_beyond_label``), WARN otherwise. WARN also when the best single column reaches
    ``warn_ndcg``. PASS otherwise (``value`` the best single-column nDCG, or the flagged column's
    excess). SKIP when no test query has mixed labels or there are no features. A FAIL marks a
    leakage check (NO_GO)."""
    p = ctx.policy[NAME]
    fail_at, warn_at, k = float(p["fail_ndcg"]), float(p["warn_ndcg"]), int(p["k"])
    rule = (f"FAIL if one feature alone reaches nDCG@{k} >= {fail_at:g} (WARN >= {warn_at:g}); soft leak: a feature "
            f"the model leans on (>= {float(p['min_lift_share']):g} of its lift) that alone or with one partner beats all "
            f"other inputs together by >= {float(p['min_excess']):g} nDCG@{k} (CI95 above 0): FAIL when nothing but the "
            f"labels explains it (partial R2 of the others <= {float(p['max_beyond_label']):g}), else WARN")
    test = mixed_label_queries(ctx.test)
    if test.n_queries == 0 or not test.features:
        return CheckResult.skip(NAME, "no test query with mixed labels, or no features")
    x, names = feature_columns(test)
    per_feature = []
    for j, name in enumerate(names):
        for sign in (1.0, -1.0):
            s = pessimistic_scores(sign * x[:, j], test.labels)
            v = ctx.per_query(test, s, metric=f"ndcg@{k}", no_relevant="skip")
            per_feature.append((float(np.nanmean(v)), name, sign, j))
    per_feature.sort(key=lambda e: (-e[0], e[3]))
    best, best_name, _, best_j = per_feature[0]
    evidence = {"queries_scored": test.n_queries, "features_scored": len(names),
                "top_features": [{"feature": n, "direction": "+" if s > 0 else "-", "ndcg": v}
                                 for v, n, s, _ in per_feature[:10]]}
    if best >= fail_at:
        return CheckResult(NAME, FAIL, best, fail_at, rule, evidence, copy_advice(best_name, best, k))
    evidence.update(soft_leak_evidence(ctx, test, names, best_j, k))
    hits = {n: m for n, m in evidence.get("suspects", {}).items() if "excess" in m
            and m["excess"]["mean"] >= float(p["min_excess"]) and m["excess"]["low"] > 0}
    if hits:
        name, m = max(hits.items(), key=lambda kv: kv[1]["excess"]["mean"])
        e, helper = m["excess"], (f" (with {m['partner']})" if m.get("partner") else "")
        label_like = m["explained_beyond_label"] <= float(p["max_beyond_label"])
        why = ("and nothing else in the data explains it beyond the labels: it is made from the judgements (alone, or "
               "blended with an honest score) — drop it or recompute it without them" if label_like else
               "but it shares structure with the other inputs, as honest features do: an honest input stronger than all "
               "others together, or a leak mixed with them — check how it is made; if it is honest, say why")
        advice = (f"feature {name}{helper} ranks the test queries {e['mean']:+.3f} nDCG@{k} [CI95 {e['low']:+.3f}, "
                  f"{e['high']:+.3f}] better than all the other inputs together, the model leans on it ({m['share']:.0%} "
                  f"of its lift), {why}")
        return CheckResult(NAME, FAIL if label_like else WARN, e["mean"], float(p["min_excess"]), rule, evidence, advice)
    if best >= warn_at:
        return CheckResult(NAME, WARN, best, warn_at, rule, evidence, copy_advice(best_name, best, k))
    return CheckResult(NAME, PASS, best, fail_at, rule, evidence)


def copy_advice(name: str, ndcg: float, k: int) -> str:
    """What to do about a column that alone ranks (almost) like the label."""
    return (f"feature {name} alone ranks test queries at nDCG@{k} {ndcg:.3f}: it is (derived from) the label — drop "
            "it, or recompute it without access to relevance judgements")
