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


def best_single_column(rset: RankingSet) -> int:
    """The flat candidate column that ranks ``rset``'s queries best on its own (mean nDCG@10, ties
    broken against it): the honest score a leaky first stage would be built on."""
    from mmrank.audit.feature_label_leakage import feature_columns, pessimistic_scores
    from mmrank.metrics import per_query_metrics

    x, _ = feature_columns(rset)
    scores = [np.nanmean(per_query_metrics(rset.labels, pessimistic_scores(x[:, j], rset.labels), rset.offsets,
                                           ("ndcg@10",), no_relevant="skip")["ndcg@10"]) for j in range(x.shape[1])]
    return int(np.nanargmax(scores))


def blended_first_stage(parts: tuple, weight: float) -> tuple:
    """:func:`with_blended_first_stage` on each of (train, valid, test) (None stays None), built
    on the training set's best single column with the training label sd and column mean/sd."""
    train = parts[0]
    j = best_single_column(train)
    col = train.feature_matrix(with_query_features=False)[:, j].astype(np.float64)
    sd = float(train.labels.std())
    return tuple(None if r is None else with_blended_first_stage(r, j, weight, sd, col.mean(), col.std() or 1.0)
                 for r in parts)


def with_blended_first_stage(rset: RankingSet, column: int, weight: float, label_sd: float,
                             honest_mu: float, honest_sd: float) -> RankingSet:
    """One extra modality ``first_stage`` = an honest feature column (z-scored with the training
    mean/sd ``honest_mu``/``honest_sd``) + ``weight`` x label / ``label_sd``: a first-stage score
    that was tuned with the relevance judgements. On its own it looks ordinary; together with the
    honest column it gives the label away (their difference *is* the label)."""
    honest = (rset.feature_matrix(with_query_features=False)[:, column].astype(np.float64) - honest_mu) / honest_sd
    return rset.with_features({**rset.features, "first_stage": (honest + weight * rset.labels / label_sd)[:, None]})


# MQ2008 (LETOR 4.0) column layout: five fields (body, anchor, title, URL, whole document) for each
# of TF, IDF, TF*IDF, DL, BM25, LMIR.ABS, LMIR.DIR, LMIR.JM (columns 0-39, field-major within each
# feature), then PageRank, inlinks, outlinks, slashes, URL length, child pages (40-45).
_MQ_FEATURE = {"tf": 0, "idf": 5, "tfidf": 10, "dl": 15, "bm25": 20, "abs": 25, "dir": 30, "jm": 35}
_OHSUMED_FIELDS = {"title": 2, "abstract": 0, "title+abstract": 4}   # MQ2008 title, body, whole document


def ohsumed_like(rset: RankingSet) -> RankingSet:
    """The MQ2008 documents laid out as OHSUMED's 45 LETOR 3.0 features: for each of three fields
    (title, abstract, title + abstract <- MQ2008's title, body, whole document) ten low-level
    columns (tf, log tf, tf/dl, log tf/dl, idf, log idf, tf*idf, log tf*idf, log tf*idf/dl, dl)
    and five high-level ones (BM25, log BM25, LMIR.DIR, LMIR.JM, LMIR.ABS), all from the real
    feature values (logs as log1p: MQ2008's values are query-normalised into [0, 1])."""
    x = rset.feature_matrix(with_query_features=False).astype(np.float64)
    cols = []
    for field in _OHSUMED_FIELDS.values():
        f = {name: x[:, start + field] for name, start in _MQ_FEATURE.items()}
        per_dl = f["tf"] / (f["dl"] + 1e-3)
        cols += [f["tf"], np.log1p(f["tf"]), per_dl, np.log1p(per_dl), f["idf"], np.log1p(f["idf"]), f["tfidf"],
                 np.log1p(f["tfidf"]), np.log1p(f["tfidf"] / (f["dl"] + 1e-3)), f["dl"],
                 f["bm25"], np.log1p(f["bm25"]), f["dir"], f["jm"], f["abs"]]
    from dataclasses import replace

    return replace(rset, features={"letor": np.stack(cols, axis=1).astype(np.float32)}, query_features={})


def with_future_targets(train: RankingSet, test: RankingSet, share: float, rows: int, seed: int) -> tuple[RankingSet, int]:
    """The ML-100K reranking task's training set with, for ``share`` of the test users that also
    have a training query, ``rows`` of their test-period positives (the test query's own
    candidate rows: features and rating) appended to their training query — a target window
    that was not capped at the validation cut, so training saw those users' future. Returns the
    leaky training set and the number of users planted."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    user = lambda q: q.rsplit("@", 1)[0]  # noqa: E731  (query ids are <user>@<split>)
    train_of = {user(q): i for i, q in enumerate(train.query_ids.tolist())}
    extra: dict[int, np.ndarray] = {}
    for j, q in enumerate(test.query_ids.tolist()):
        if user(q) in train_of and rng.random() < share:
            a, b = test.offsets[j], test.offsets[j + 1]
            extra[train_of[user(q)]] = train.n_candidates + a + np.flatnonzero(test.labels[a:b] > 0)[:rows]
    take = np.concatenate([np.r_[np.arange(train.offsets[i], train.offsets[i + 1]), extra.get(i, [])]
                           for i in range(train.n_queries)]).astype(np.int64)
    sizes = [train.group_sizes[i] + len(extra.get(i, [])) for i in range(train.n_queries)]
    both = lambda a, b: np.concatenate([a, b])[take]  # noqa: E731
    base = None if train.baseline_scores is None else both(train.baseline_scores, test.baseline_scores)
    leaky = replace(train, offsets=np.r_[0, np.cumsum(sizes)], candidate_ids=both(train.candidate_ids, test.candidate_ids),
                    labels=both(train.labels, test.labels), baseline_scores=base,
                    features={m: both(v, test.features[m]) for m, v in train.features.items()})
    return leaky, len(extra)


def with_repeated_relevant_rows(test: RankingSet, share: float, seed: int) -> tuple[RankingSet, int]:
    """For ``share`` of the test queries, every relevant candidate row listed twice (a join that
    repeated judged documents: same query, same candidate id, same features and label). Returns
    the set and the number of repeated rows."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    rows, sizes = [], []
    for i in range(test.n_queries):
        own = np.arange(test.offsets[i], test.offsets[i + 1])
        again = own[test.labels[own] > 0] if rng.random() < share else own[:0]
        rows.append(np.r_[own, again])
        sizes.append(len(own) + len(again))
    take = np.concatenate(rows)
    base = None if test.baseline_scores is None else test.baseline_scores[take]
    out = replace(test, offsets=np.r_[0, np.cumsum(sizes)], candidate_ids=test.candidate_ids[take],
                  labels=test.labels[take], baseline_scores=base, features={m: v[take] for m, v in test.features.items()})
    return out, int(len(take) - test.n_candidates)
