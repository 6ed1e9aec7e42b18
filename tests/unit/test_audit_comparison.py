"""Comparison checks: significance, baseline agreement, sample size, sampled metric, attention
share and split sensitivity — each shown to WARN/FAIL on the bad case and PASS on the good one."""

from __future__ import annotations

import numpy as np

from known_answer.rankers import GatedModalityRanker, RidgeRanker
from known_answer.simulator import simulate
from mmrank.audit import FAIL, PASS, SKIP, WARN, audit
from mmrank.data.model import Interactions
from mmrank.models.baselines import HeuristicBaseline

FAST = {"significance": {"bootstrap_resamples": 1000, "permutation_resamples": 1000}}


class FrozenScores:
    """Scores a fixed array (for the baseline side only: the first-stage column, transformed)."""

    def __init__(self, fn):
        self.fn = fn

    def score(self, rset):
        return self.fn(rset)


def run(sim, model, baseline, checks, policy=None, **kw):
    return audit(model, baseline, train=sim.train, test=sim.test, policy={**FAST, **(policy or {}), **sim.policy},
                 checks=checks, n_jobs=1, **kw)


def test_significance_pass_fail_warn():
    sim = simulate(0, n_train=150, n_test=120)
    good = RidgeRanker().fit(sim.train)
    heuristic = HeuristicBaseline().fit(sim.train)  # falls back to the text-only first stage
    better = run(sim, good, heuristic, ["significance"])["significance"]
    assert better.status == PASS and better.value > 0
    assert better.evidence["randomization_p"] < 0.01
    assert {d["domain"] for d in better.evidence["per_domain"]} == {"books", "film", "music", "news"}
    assert all(d["p_holm"] >= d["p"] for d in better.evidence["per_domain"])
    worse = run(sim, heuristic, good, ["significance"])["significance"]
    assert worse.status == FAIL and worse.evidence["delta_ci"]["high"] < 0
    # a model against a copy of itself with independent tie noise: no gain shown
    rng = np.random.default_rng(0)
    noisy = FrozenScores(lambda r: good.score(r) + rng.normal(0, 1e-3, r.n_candidates))
    same = run(sim, good, noisy, ["significance"])["significance"]
    assert same.status == WARN


def test_baseline_agreement_warns_on_a_linear_offset():
    sim = simulate(1, n_train=80, n_test=60)
    heuristic = HeuristicBaseline().fit(sim.train)
    offset = FrozenScores(lambda r: 3.0 * r.baseline_scores + 0.5)  # the seeds' "model"
    res = run(sim, offset, heuristic, ["baseline_agreement"])["baseline_agreement"]
    assert res.status == WARN and res.value > 0.999 and res.evidence["top1_same"] == 1.0
    honest = run(sim, RidgeRanker().fit(sim.train), heuristic, ["baseline_agreement"])["baseline_agreement"]
    assert honest.status == PASS and honest.value < 0.9
    assert honest.evidence["mean_rank_displacement"] > 1.0


def test_sample_size_warns_when_too_few_queries_for_the_effect():
    big = simulate(2, n_train=150, n_test=150)
    model, base = RidgeRanker().fit(big.train), HeuristicBaseline()
    assert run(big, model, base, ["sample_size"])["sample_size"].status == PASS
    # a small effect: the model barely differs from the baseline
    blend = FrozenScores(lambda r: r.baseline_scores + 0.05 * model.score(r))
    small = simulate(2, n_train=150, n_test=15)
    res = run(small, blend, base, ["sample_size"])["sample_size"]
    assert res.status == WARN
    assert res.threshold > 15 and res.evidence["power_at_n"] < 0.8


def test_sampled_metric_warns_on_sampled_negatives_and_passes_short_lists():
    sim = simulate(3, ["sampled_eval"], n_train=80, n_test=60)
    model = RidgeRanker().fit(sim.train)
    res = run(sim, model, HeuristicBaseline(), ["sampled_metric"])["sampled_metric"]
    assert res.status == WARN
    means = res.evidence["means"]
    assert means["model"]["sampled"] > means["model"]["full"]
    assert means["baseline"]["sampled"] > means["baseline"]["full"] * 1.05
    # lists no longer than positives + negatives: sampling drops nothing, the values agree
    short = simulate(3, n_train=80, n_test=60)
    same = run(short, RidgeRanker().fit(short.train), HeuristicBaseline(), ["sampled_metric"],
               policy={"sampled_metric": {"n_negatives": 20}})["sampled_metric"]
    assert same.status == PASS and same.value == 0.0
    assert run(short, model, None, ["sampled_metric"])["sampled_metric"].status == SKIP


def test_attention_share_warns_when_one_modality_takes_the_mass():
    # one modality (meta, which here holds a label-like column) explains the labels far better
    lopsided = simulate(4, ["label_feature"], n_train=100, n_test=40)
    sharp = run(lopsided, GatedModalityRanker(temperature=10.0).fit(lopsided.train), None, ["attention_share"])["attention_share"]
    assert sharp.status == WARN and sharp.value > 0.6 and "meta" in sharp.advice
    sim = simulate(4, n_train=100, n_test=40)
    assert abs(sum(sharp.evidence["shares"].values()) - 1) < 1e-9
    soft = run(sim, GatedModalityRanker(temperature=1.0).fit(sim.train), None, ["attention_share"])["attention_share"]
    assert soft.status == PASS and soft.value < 0.6
    assert run(sim, RidgeRanker().fit(sim.train), None, ["attention_share"])["attention_share"].status == SKIP


# -- split sensitivity: a co-occurrence recommender on chains of items --------------------------------
def cooccurrence_hit_at_5(train: Interactions, test: Interactions) -> np.ndarray:
    """Item-to-item co-occurrence recommender; per test user: 1 if the held-out item is in the top 5."""
    items = {i: k for k, i in enumerate(sorted(set(train.item_ids) | set(test.item_ids)))}
    users = {u: k for k, u in enumerate(sorted(set(train.user_ids) | set(test.user_ids)))}
    m = np.zeros((len(users), len(items)))
    m[[users[u] for u in train.user_ids], [items[i] for i in train.item_ids]] = 1.0
    cooc = m.T @ m
    np.fill_diagonal(cooc, 0)
    rows = np.array([users[u] for u in test.user_ids])
    scores = m[rows] @ cooc
    scores[m[rows] > 0] = -np.inf
    target = np.array([items[i] for i in test.item_ids])
    # ties count against the target (pessimistic), so an item nobody co-consumed cannot rank first
    rank = (scores >= scores[np.arange(len(rows)), target][:, None]).sum(axis=1) - 1
    return (rank < 5).astype(float)


def _chains(seed: int, chained: bool) -> Interactions:
    """Users walk one of 4 item chains in order (chained) or draw items iid from a popularity law."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(240):
        g = rng.integers(4)
        for step in range(8):
            item = 10 * g + step if chained else int(rng.zipf(1.5) % 40)
            users.append(f"u{u}")
            items.append(f"i{item}")
            times.append(step + rng.random() * 0.5)
    return Interactions(users, items, times)


def test_split_sensitivity_warns_when_a_random_split_overstates():
    sim = simulate(5, n_train=30, n_test=20)
    model = RidgeRanker().fit(sim.train)
    chained = run(sim, model, None, ["split_sensitivity"], interactions=_chains(0, True),
                  fit_evaluate=cooccurrence_hit_at_5)["split_sensitivity"]
    assert chained.status == WARN
    assert chained.evidence["random_split"] > chained.evidence["temporal_split"] + 0.2
    iid = run(sim, model, None, ["split_sensitivity"], interactions=_chains(1, False),
              fit_evaluate=cooccurrence_hit_at_5)["split_sensitivity"]
    assert iid.status == PASS, iid.evidence
    assert run(sim, model, None, ["split_sensitivity"])["split_sensitivity"].status == SKIP


def label_sorted(rset):
    """The same queries with each query's candidates sorted by label, best first (a leaky file order)."""
    order = np.lexsort((-rset.labels, rset.query_index))
    from mmrank.data.model import RankingSet

    return RankingSet(rset.query_ids, rset.offsets, rset.candidate_ids[order], rset.labels[order],
                      domains=rset.domains, baseline_scores=rset.baseline_scores[order],
                      features={k: v[order] for k, v in rset.features.items()})


def test_a_gain_made_by_the_tie_order_is_not_significant_and_a_constant_model_warns():
    sim = simulate(5, n_train=80, n_test=80)
    sim.test = label_sorted(sim.test)
    heuristic = HeuristicBaseline().fit(sim.train)
    coarse = FrozenScores(lambda r: np.round(r.baseline_scores * 0.3))  # few distinct values: many ties
    res = run(sim, coarse, heuristic, ["significance", "baseline_agreement"])
    sig = res["significance"]
    assert sig.evidence["ties"]["tie_share"]["model"] > 0.5
    assert sig.evidence["delta_ci"]["low"] > 0                       # by row position: a "gain"
    assert sig.status == WARN and "tie order" in sig.advice
    assert not sig.evidence["ties"]["significant"]
    constant = run(sim, FrozenScores(lambda r: np.zeros(r.n_candidates)), heuristic, ["baseline_agreement"])
    assert constant["baseline_agreement"].status == WARN
    assert constant["baseline_agreement"].evidence["constant_scores"] == ["model"]
    honest = run(sim, RidgeRanker().fit(sim.train), heuristic, ["significance"])["significance"]
    assert honest.evidence["ties"] == {"tie_share": {"model": 0.0, "baseline": 0.0}, "significant": True}
