"""SIMULATOR of multimodal ranking data with switchable faults, for the audit's known-answer tests.

Every number it yields is synthetic: it exists to prove that each audit check fires on the fault
planted for it and stays quiet on clean data. It is never used to report model quality.

Clean data: queries of candidates with three informative modalities (``image``, ``text``,
``meta``); relevance is a noisy linear function of all three, graded 0/1/2 within each query.
A first-stage ``baseline_scores`` column uses the text modality only (so a model that uses every
modality beats it). Users: each test query is one user's latest request; training queries are
earlier requests of the same users (interaction events with timestamps).

Faults (any combination):
  ``query_leak``     a fifth of the test queries are copies of training queries (ids and rows)
  ``label_feature``  a ``meta`` column equal to the label plus small noise
  ``dead_modality``  ``image`` carries no signal (relevance ignores it)
  ``sampled_eval``   long candidate lists with few positives, evaluated on 5 sampled negatives
  ``temporal_leak``  15% of users have a training event after their test event
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmrank.data.model import Interactions, RankingSet

FAULTS = ("query_leak", "label_feature", "dead_modality", "sampled_eval", "temporal_leak")
DIMS = {"image": 6, "text": 6, "meta": 3}


@dataclass
class SimulatedAudit:
    train: RankingSet
    test: RankingSet
    train_events: Interactions
    test_events: Interactions
    policy: dict = field(default_factory=dict)   # audit policy overrides the scenario implies
    faults: tuple[str, ...] = ()


def _queries(rng, prefix: str, n_queries: int, per_query: int, weights: dict, faults, positive_share: float):
    n = n_queries * per_query
    feats = {m: rng.normal(size=(n, d)) for m, d in DIMS.items()}
    latent = sum(feats[m] @ w for m, w in weights.items()) + rng.normal(0, 0.5, n)
    # graded labels within each query: top positive_share/3 -> 2, next 2/3 of the share -> 1
    order = np.argsort(-latent.reshape(n_queries, per_query), axis=1)
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(per_query)[None, :].repeat(n_queries, 0), axis=1)
    top2 = max(1, int(round(per_query * positive_share / 3)))
    top1 = max(top2 + 1, int(round(per_query * positive_share)))
    labels = np.where(pos < top2, 2, np.where(pos < top1, 1, 0)).ravel().astype(float)
    if "label_feature" in faults:
        feats["meta"] = np.column_stack([feats["meta"], labels + rng.normal(0, 0.05, n)])
    baseline = feats["text"] @ weights["text"] + rng.normal(0, 0.5, n)
    return RankingSet(
        query_ids=[f"{prefix}{i}" for i in range(n_queries)],
        offsets=np.arange(0, n + 1, per_query),
        candidate_ids=[f"{prefix}{i}_d{j}" for i in range(n_queries) for j in range(per_query)],
        labels=labels,
        domains=rng.choice(["books", "film", "music", "news"], size=n_queries),
        baseline_scores=baseline,
        features=feats,
    )


def simulate(seed: int, faults: tuple[str, ...] | list[str] = (), n_train: int = 300, n_test: int = 200) -> SimulatedAudit:
    """A train/test pair with the given faults planted (``()``: clean)."""
    faults = tuple(faults)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
    rng = np.random.default_rng(seed)
    weights = {m: rng.normal(size=d) / np.sqrt(d) for m, d in DIMS.items()}
    if "dead_modality" in faults:
        weights["image"] = np.zeros(DIMS["image"])
    per_query, share = (60, 0.08) if "sampled_eval" in faults else (20, 0.3)
    train = _queries(rng, "tr", n_train, per_query, weights, faults, share)
    test = _queries(rng, "te", n_test, per_query, weights, faults, share)
    if "query_leak" in faults:
        from mmrank.data.model import concat_ranking_sets

        leaked = rng.choice(n_train, n_test // 5, replace=False)
        test = concat_ranking_sets([test.subset(np.arange(n_test - len(leaked))), train.subset(leaked)])
    train_events, test_events = _events(rng, train, test, "temporal_leak" in faults)
    policy = {"sampled_metric": {"n_negatives": 5}} if "sampled_eval" in faults else {}
    return SimulatedAudit(train, test, train_events, test_events, policy, faults)


def _events(rng, train: RankingSet, test: RankingSet, leak: bool) -> tuple[Interactions, Interactions]:
    """Each test query is user u's request at time T_u; training queries are earlier requests."""
    n_users = test.n_queries
    users = np.array([f"u{i}" for i in range(n_users)])
    t_test = 1_000.0 + rng.random(n_users) * 1_000.0
    owner = np.arange(train.n_queries) % n_users
    t_train = rng.random(train.n_queries) * t_test[owner]
    if leak:
        late = rng.choice(train.n_queries, max(1, int(0.15 * n_users)), replace=False)
        t_train[late] = t_test[owner[late]] + 1.0 + rng.random(len(late)) * 100.0
    return (Interactions(users[owner], train.query_ids, t_train),
            Interactions(users, test.query_ids, t_test))
