"""Faults planted on REAL data (MQ2008 folds, ML-100K): shared by the known-answer tests and
``benchmarks/audit_false_alarms.py``. Each function takes the real data and a seed that sets the
fault's size, and returns the faulty data; nothing here invents labels or features from scratch
except the planted fault itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmrank.data.model import Interactions, ItemFeatures, RankingSet, concat_ranking_sets


def noisy_copies(train: RankingSet, n_queries: int, noise: float, seed: int) -> RankingSet:
    """``n_queries`` training queries under new query and candidate ids, every feature perturbed by
    Gaussian noise of ``noise`` x that feature's training sd."""
    rng = np.random.default_rng(seed)
    picked = train.subset(rng.choice(train.n_queries, n_queries, replace=False))
    feats = {k: v + rng.normal(0.0, 1.0, v.shape) * noise * train.features[k].std(axis=0)
             for k, v in picked.features.items()}
    return RankingSet([f"copy{seed}-{q}" for q in picked.query_ids], picked.offsets,
                      [f"copy{seed}-c{i}" for i in range(picked.n_candidates)], picked.labels,
                      domains=picked.domains, features=feats)


def with_copies(test: RankingSet, train: RankingSet, n_queries: int, noise: float, seed: int) -> RankingSet:
    """The test set plus ``noisy_copies`` of training queries."""
    return concat_ranking_sets([test, noisy_copies(train, n_queries, noise, seed)])


def with_label_noise_column(rset: RankingSet, sigma: float, seed: int) -> RankingSet:
    """One extra modality ``zleak`` = label + N(0, sigma²) (a score computed with the judgements)."""
    rng = np.random.default_rng(seed)
    feats = dict(rset.features)
    feats["zleak"] = (rset.labels + rng.normal(0.0, sigma, rset.n_candidates))[:, None]
    return rset.with_features(feats)


def label_sorted(rset: RankingSet) -> RankingSet:
    """Each query's candidates in label order, best first: a file whose row order leaks labels."""
    order = np.lexsort((-rset.labels, rset.query_index))
    return RankingSet(rset.query_ids, rset.offsets, rset.candidate_ids[order], rset.labels[order],
                      domains=rset.domains, features={k: v[order] for k, v in rset.features.items()})


class CoarseRidge:
    """Ridge regression whose scores are rounded to ``decimals``: an honest but coarse model that
    ties many candidates — it gains from a label-sorted file through the evaluation's tie order."""

    def __init__(self, decimals: int = 1, alpha: float = 10.0) -> None:
        self.decimals, self.alpha = decimals, alpha

    def get_params(self) -> dict:
        return {"decimals": self.decimals, "alpha": self.alpha}

    def fit(self, train: RankingSet, valid: RankingSet | None = None) -> "CoarseRidge":
        x = train.feature_matrix(with_query_features=False).astype(np.float64)
        self.mu_, self.sd_ = x.mean(axis=0), np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        z = (x - self.mu_) / self.sd_
        y = train.labels - train.labels.mean()
        self.w_ = np.linalg.solve(z.T @ z + self.alpha * np.eye(z.shape[1]), z.T @ y)
        return self

    def score(self, rset: RankingSet) -> np.ndarray:
        z = (rset.feature_matrix(with_query_features=False).astype(np.float64) - self.mu_) / self.sd_
        return np.round(z @ self.w_, self.decimals)


# -- ML-100K --------------------------------------------------------------------------------------
def ml100k_events(data_dir: Path) -> Interactions:
    from mmrank.data.io_recbole import read_recbole

    events, _, _ = read_recbole(data_dir / "ml-100k")
    return events


def plant_test_item_in_history(events: Interactions, share: float, seed: int) -> tuple[Interactions, np.ndarray]:
    """For ``share`` of the users, a copy of their last (test) event placed before their first
    event: the leave-one-out test item then also sits in their training history. Returns the
    leaked events and the ids of the users planted."""
    rng = np.random.default_rng(seed)
    ev = events.sorted()
    users = ev.user_ids.astype(str)
    last = np.r_[users[1:] != users[:-1], True]
    first = np.r_[True, users[1:] != users[:-1]]
    pick = rng.random(int(last.sum())) < share
    planted_users = users[last][pick]
    copies = Interactions(users[last][pick], ev.item_ids[last][pick], ev.timestamps[first][pick] - 1.0)
    both = Interactions(np.concatenate([ev.user_ids, copies.user_ids]), np.concatenate([ev.item_ids, copies.item_ids]),
                        np.concatenate([ev.timestamps, copies.timestamps]))
    return both.sorted(), planted_users


def write_recbole_folder(events: Interactions, folder: Path, catalogue: Path | None = None) -> Path:
    """``events`` as a RecBole dataset folder ``folder/<name>.inter`` (user, item, rating 1,
    timestamp), with ``catalogue`` (a RecBole ``.item`` file) copied beside it: what a run reads
    through ``data.path``."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    if catalogue is not None:
        shutil.copyfile(catalogue, folder / f"{folder.name}.item")
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"{u}\t{i}\t1\t{t:.0f}" for u, i, t in zip(events.user_ids, events.item_ids, events.timestamps)]
    (folder / f"{folder.name}.inter").write_text("\n".join(rows) + "\n")
    return folder


class OwnHistoryScorer:
    """Ranks each user's own history first (most recent highest), popularity after: it can only
    score well when the test item is already in the user's history."""

    def __init__(self, split) -> None:
        self.n = split.n_items + 1
        self.pop = np.bincount(split.train.items, minlength=self.n).astype(np.float64)
        self.pop /= self.pop.max() + 1.0

    def score_users(self, users: torch.Tensor, histories) -> torch.Tensor:
        out = np.tile(self.pop, (len(users), 1))
        for row, u in enumerate(users.tolist()):
            items = histories.of(int(u))
            out[row, items] = 2.0 + np.arange(len(items)) / max(len(items), 1)
        out[:, 0] = -np.inf
        return torch.from_numpy(out)


def loo_context(events: Interactions, policy: dict, model_factory=None, baseline: str = "popularity"):
    """A recommendation audit context on the leave-one-out split of ``events``: the model
    (``model_factory(split)``, default the own-history scorer) vs popularity, with the training
    (train + valid) and test events of the split — what a run records in its provenance."""
    from mmrank.audit.recommender_context import RecommenderAuditContext
    from mmrank.data.splits import leave_one_out
    from mmrank.sequential.baselines import PopularityRanker
    from mmrank.sequential.data import make_split

    loo = leave_one_out(events)
    split = make_split(events, loo.parts["train"], loo.parts["valid"], loo.parts["test"],
                       catalogue=np.unique(events.item_ids))
    model = (model_factory or OwnHistoryScorer)(split)
    train_rows = np.concatenate([loo.parts["train"], loo.parts["valid"]])
    return RecommenderAuditContext(
        model=model, baseline=PopularityRanker().fit(split), split=split, baseline_split=split, policy=policy,
        train_interactions=events.take(train_rows), test_interactions=events.take(loo.parts["test"]),
        sampled_negatives=0)


def noise_items(item_ids: np.ndarray, dims: dict[str, int], seed: int) -> ItemFeatures:
    """Item modalities of Gaussian noise, to build the task with (then ``noised`` per row: a fixed
    random vector per *item* is an item-id code a model can learn popularity from)."""
    rng = np.random.default_rng(seed)
    return ItemFeatures(item_ids, {m: rng.normal(size=(len(item_ids), d)).astype(np.float32) for m, d in dims.items()})


def noised(rset: RankingSet, modalities: tuple[str, ...], seed: int) -> RankingSet:
    """``modalities`` (candidate rows and the query side of the same name) replaced by fresh
    Gaussian noise per row: no information about labels, items or users."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    feats = {k: (rng.normal(size=v.shape).astype(np.float32) if k in modalities else v) for k, v in rset.features.items()}
    qfeats = {k: (rng.normal(size=v.shape).astype(np.float32) if k in modalities else v)
              for k, v in rset.query_features.items()}
    return replace(rset, features=feats, query_features=qfeats)
