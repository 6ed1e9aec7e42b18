"""The ML-100K multimodal reranking task: per user, rerank later-watched movies among unseen ones.

Every query is one user at one *cut time* ``tau``. Everything about the query is computed from
interactions strictly before ``tau`` (what a model may train on); its targets are the user's
ratings at or after ``tau``. The full protocol, with the reasons for each choice, is in
``docs/ml100k_tasks.md``; in short:

* global cuts ``T_valid`` / ``T_test`` = the 80% / 90% quantiles of all rating timestamps;
  ``valid`` queries: ``tau = T_valid``, targets in ``[T_valid, T_test)``; ``test`` queries:
  ``tau = T_test``, targets in ``[T_test, end]``; ``train`` queries use only ratings before
  ``T_valid``: per user, ``tau`` = the time of the user's rating at position
  ``max(min_history, floor(0.8 n))`` among their ``n`` pre-``T_valid`` ratings, targets in
  ``[tau, T_valid)``. So no train target is later than any valid/test target's cut.
* a user enters a split only with ``>= min_history`` ratings before ``tau`` and ``>= 1`` target;
* candidates: the first ``max_targets`` targets in time (label = the rating, 1..5) plus
  ``n_negatives`` movies the user never rated at all (label 0), drawn without replacement with a
  seeded generator per (seed, split, user), with probability proportional to 1 + the movie's
  rating count before ``tau`` (``negatives="popularity"``) or uniformly; candidates are shuffled.
* candidate modalities: every item modality (``text``, ``image``, ``meta``, and ``clip_image``/
  ``clip_text`` when built with CLIP) as rows of ItemFeatures, and ``pop``:
  ``[log1p(count), shrunk mean rating]`` from ratings before ``tau`` only;
  baseline score = ``log1p(count)`` (the popularity ranking);
* query features: masked means over the user's last ``context_k`` rated movies before ``tau``
  of every item modality, and ``history = [log1p(#ratings before tau), mean rating]``;
  the query text lists those movies' titles (most recent first); their ids are in the info.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mmrank.data.formats import read_bytes, write_ranking
from mmrank.data.model import Interactions, ItemFeatures, RankingSet
from mmrank.atomic_io import atomic_write_text
from mmrank.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")
# Bump when the protocol below changes what a query, candidate or feature is (invalidates caches).
TASK_VERSION = "1"
SHRINK_COUNT = 5.0  # pseudo-ratings at the global mean in the shrunk mean rating


@dataclass
class RerankTaskConfig:
    valid_quantile: float = 0.8
    test_quantile: float = 0.9
    train_cut_fraction: float = 0.8
    context_k: int = 10
    min_history: int = 5
    max_targets: int = 20
    n_negatives: int = 20
    negatives: str = "popularity"
    seed: int = 0

    def check(self) -> None:
        """Reject settings the task protocol cannot work with, before any data is read.

        ``seed`` is not checked (any int works).

        Raises:
            ConfigError: when the cut quantiles are not ``0 < valid < test < 1``,
                ``train_cut_fraction`` is outside (0, 1), ``context_k`` / ``min_history`` /
                ``max_targets`` is below 1, ``n_negatives`` is negative, or ``negatives`` is neither
                ``"popularity"`` nor ``"uniform"``.
        """
        if not 0.0 < self.valid_quantile < self.test_quantile < 1.0:
            raise ConfigError("need 0 < valid_quantile < test_quantile < 1")
        if not 0.0 < self.train_cut_fraction < 1.0:
            raise ConfigError("train_cut_fraction must be in (0, 1)")
        if min(self.context_k, self.min_history, self.max_targets) < 1 or self.n_negatives < 0:
            raise ConfigError("context_k, min_history, max_targets must be >= 1 and n_negatives >= 0")
        if self.negatives not in ("popularity", "uniform"):
            raise ConfigError(f"negatives must be 'popularity' or 'uniform', got {self.negatives!r}")


@dataclass
class _Events:
    """Interactions as dense indices, grouped by user and ordered by time within each user."""

    user_ids: np.ndarray      # (U,) sorted unique user ids (strings)
    user_start: np.ndarray    # (U+1,) CSR bounds into the per-user arrays
    item: np.ndarray          # (n,) item row (into ItemFeatures)
    time: np.ndarray          # (n,) timestamps
    rating: np.ndarray        # (n,)
    n_items: int


def _index_events(inter: Interactions, items: ItemFeatures) -> _Events:
    if inter.ratings is None:
        raise DataError("the reranking task needs ratings (labels are graded from them)",
                        hint="read an interaction file that has a rating column")
    row_of = items.row_of()
    unknown = sorted({i for i in np.unique(inter.item_ids) if i not in row_of})
    if unknown:
        raise DataError(f"{len(unknown)} rated item id(s) have no item features, e.g. {unknown[:5]}",
                        hint="build the item features from the same data set as the interactions")
    item = np.array([row_of[i] for i in inter.item_ids], dtype=np.int64)
    users, user_idx = np.unique(inter.user_ids.astype(str), return_inverse=True)
    order = np.lexsort((np.arange(len(item)), inter.timestamps, user_idx))  # stable: file order breaks ties
    user_start = np.searchsorted(user_idx[order], np.arange(len(users) + 1))
    return _Events(
        user_ids=users, user_start=user_start,
        item=item[order], time=inter.timestamps[order], rating=inter.ratings[order], n_items=len(items),
    )


class _PopularityAsOf:
    """Per-item rating count and rating sum over all users' ratings with time < tau, and the
    global mean rating before tau; memoised per tau (valid/test share one cut)."""

    def __init__(self, ev: _Events) -> None:
        self.ev = ev
        self._memo: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}

    def __call__(self, tau: float) -> tuple[np.ndarray, np.ndarray, float]:
        if tau not in self._memo:
            before = self.ev.time < tau
            counts = np.bincount(self.ev.item[before], minlength=self.ev.n_items)
            sums = np.bincount(self.ev.item[before], weights=self.ev.rating[before], minlength=self.ev.n_items)
            mean = float(sums.sum() / counts.sum()) if counts.sum() else 0.0
            self._memo[tau] = (counts, sums, mean)
        return self._memo[tau]


def _query_specs(ev: _Events, cfg: RerankTaskConfig, t_valid: float, t_test: float) -> dict[str, list]:
    """Per split, ``(user index, tau, tau_end)`` for every user that qualifies."""
    specs: dict[str, list] = {s: [] for s in SPLITS}
    for u in range(len(ev.user_ids)):
        a, b = ev.user_start[u], ev.user_start[u + 1]
        times = ev.time[a:b]
        before_valid = int(np.searchsorted(times, t_valid, side="left"))
        if before_valid > cfg.min_history:
            pos = max(cfg.min_history, int(np.floor(cfg.train_cut_fraction * before_valid)))
            tau = float(times[pos])
            if np.searchsorted(times, tau, side="left") >= cfg.min_history:
                specs["train"].append((u, tau, t_valid))
        for split, tau, end in (("valid", t_valid, t_test), ("test", t_test, np.inf)):
            n_before = int(np.searchsorted(times, tau, side="left"))
            n_target = int(np.searchsorted(times, end, side="left")) - n_before
            if n_before >= cfg.min_history and n_target >= 1:
                specs[split].append((u, tau, end))
    return specs


def _masked_mean(matrix: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> np.ndarray:
    keep = rows[mask[rows]]
    return matrix[keep].mean(axis=0) if len(keep) else np.zeros(matrix.shape[1], dtype=np.float32)


def _build_split(ev: _Events, items: ItemFeatures, cfg: RerankTaskConfig, split: str, specs: list,
                 popularity: _PopularityAsOf):
    n_items = len(items)
    titles = items.titles if items.titles is not None else items.item_ids
    all_rows = np.arange(n_items)
    q_ids, sizes, cand_rows, labels, pops, base, texts = [], [], [], [], [], [], []
    modalities = sorted(items.features)  # text, image, meta (+ clip_image, clip_text when built)
    qf = {name: [] for name in [*modalities, "history"]}
    contexts: dict[str, list[str]] = {}
    cut_times: dict[str, float] = {}
    for u, tau, end in specs:
        a, b = ev.user_start[u], ev.user_start[u + 1]
        times, urows, uratings = ev.time[a:b], ev.item[a:b], ev.rating[a:b]
        n_before = int(np.searchsorted(times, tau, side="left"))
        n_end = int(np.searchsorted(times, end, side="left"))
        context = urows[max(0, n_before - cfg.context_k):n_before][::-1]  # most recent first
        target_rows = urows[n_before:n_end][:cfg.max_targets]
        target_labels = uratings[n_before:n_end][:cfg.max_targets]

        pop_counts, pop_sums, global_mean = popularity(tau)
        rng = np.random.default_rng([cfg.seed, SPLITS.index(split), u])
        never = np.setdiff1d(all_rows, urows, assume_unique=False)
        k = min(cfg.n_negatives, len(never))
        if cfg.negatives == "popularity":
            weights = pop_counts[never] + 1.0
            negatives = rng.choice(never, size=k, replace=False, p=weights / weights.sum())
        else:
            negatives = rng.choice(never, size=k, replace=False)
        rows = np.concatenate([target_rows, negatives])
        labs = np.concatenate([target_labels, np.zeros(k)])
        perm = rng.permutation(len(rows))
        rows, labs = rows[perm], labs[perm]

        counts, sums = pop_counts[rows], pop_sums[rows]
        shrunk = (sums + SHRINK_COUNT * global_mean) / (counts + SHRINK_COUNT)
        pops.append(np.stack([np.log1p(counts), shrunk], axis=1))
        base.append(np.log1p(counts))

        qid = f"{ev.user_ids[u]}@{split}"
        q_ids.append(qid)
        sizes.append(len(rows))
        cand_rows.append(rows)
        labels.append(labs)
        contexts[qid] = [str(items.item_ids[r]) for r in context]
        cut_times[qid] = float(tau)
        texts.append("Recently rated: " + "; ".join(str(titles[r]) for r in context))
        for name in modalities:
            mask = items.masks.get(name, np.ones(n_items, dtype=bool))
            qf[name].append(_masked_mean(items.features[name], mask, context))
        qf["history"].append([np.log1p(n_before), float(uratings[:n_before].mean())])

    if not q_ids:
        raise DataError(f"the {split!r} split has no queries",
                        hint="lower min_history or move the time cuts (valid_quantile/test_quantile)")
    rows = np.concatenate(cand_rows)
    rset = RankingSet(
        query_ids=q_ids,
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        candidate_ids=items.item_ids[rows],
        labels=np.concatenate(labels),
        domains=["ml100k"] * len(q_ids),
        baseline_scores=np.concatenate(base),
        features={**{name: items.features[name][rows] for name in modalities}, "pop": np.concatenate(pops)},
        query_features={k: np.asarray(v, dtype=np.float32) for k, v in qf.items()},
        query_texts=texts,
    )
    return rset, contexts, cut_times


def build_rerank_task(
    inter: Interactions, items: ItemFeatures, config: RerankTaskConfig | None = None,
) -> tuple[dict[str, RankingSet], dict]:
    """``{"train", "valid", "test"} -> RankingSet`` and the task info (protocol, cuts, counts,
    context item ids per query) that ``docs/ml100k_tasks.md`` explains."""
    cfg = config or RerankTaskConfig()
    cfg.check()
    for name in ("text", "image", "meta"):
        if name not in items.features:
            raise DataError(f"item features lack the {name!r} modality",
                            hint="build them with mmrank data features --dataset ml100k")
    ev = _index_events(inter, items)
    t_valid = float(np.quantile(ev.time, cfg.valid_quantile, method="lower"))
    t_test = float(np.quantile(ev.time, cfg.test_quantile, method="lower"))
    if not t_valid < t_test:
        raise DataError("the valid and test cuts fall on the same timestamp",
                        hint="spread valid_quantile and test_quantile further apart")
    specs = _query_specs(ev, cfg, t_valid, t_test)
    sets, contexts, cut_times, counts = {}, {}, {}, {}
    popularity = _PopularityAsOf(ev)
    for split in SPLITS:
        rset, ctx, taus = _build_split(ev, items, cfg, split, specs[split], popularity)
        sets[split] = rset
        contexts[split] = ctx
        cut_times[split] = taus
        counts[split] = {
            "queries": rset.n_queries,
            "candidates": rset.n_candidates,
            "positives": int((rset.labels > 0).sum()),
            "negatives": int((rset.labels == 0).sum()),
            "label_counts": {str(int(v)): int(c) for v, c in zip(*np.unique(rset.labels, return_counts=True))},
            "fingerprint": rset.fingerprint(),
        }
    info = {
        "task": "ml100k-multimodal-rerank",
        "config": asdict(cfg),
        "cuts": {"valid": _stamp(t_valid), "test": _stamp(t_test)},
        "interactions": {"ratings": len(inter), "users": len(ev.user_ids), "items": int(len(items)),
                         "fingerprint": inter.fingerprint()},
        "users_per_split": {s: len(specs[s]) for s in SPLITS},
        "counts": counts,
        "modalities": sets["test"].modality_dims,
        "query_features": sets["test"].query_feature_dims,
        "cut_time_per_query": cut_times,
        "context_item_ids": contexts,
    }
    return sets, info


def _stamp(t: float) -> dict:
    return {"timestamp": t, "utc": datetime.fromtimestamp(t, tz=timezone.utc).isoformat()}


def rerank_task_files(fmt: str = "parquet") -> list[str]:
    """List the files :func:`write_rerank_task` writes into its output folder.

    Args:
        fmt: the ranking format (file extension) the splits are written in.

    Returns:
        ``["train.<fmt>", "valid.<fmt>", "test.<fmt>", "task.json"]``; a cached task counts as
        complete only when all of them exist.
    """
    return [f"{split}.{fmt}" for split in SPLITS] + ["task.json"]


def write_rerank_task(data_dir: str | Path, items: ItemFeatures, out_dir: str | Path,
                      config: RerankTaskConfig | None = None, fmt: str = "parquet") -> dict:
    """Read ``DIR/ml-100k`` (RecBole atomic files), build the task, write ``rerank_task_files``."""
    from mmrank.data.io_recbole import read_recbole

    out_dir = Path(out_dir)
    inter, _, read_report = read_recbole(Path(data_dir) / "ml-100k")
    sets, info = build_rerank_task(inter, items, config)
    info["interactions"]["read_report"] = read_report.summary()
    for split, rset in sets.items():
        write_ranking(rset, out_dir / f"{split}.{fmt}", fmt)
    atomic_write_text(out_dir / "task.json", json.dumps(info, indent=1) + "\n")
    return info


def rerank_task_key(data_dir: str | Path, items_file: str | Path, config: RerankTaskConfig, fmt: str) -> str:
    """Hash of everything the task depends on: the ratings file, the item features file, the
    settings, the output format and ``TASK_VERSION`` (a cache key for the written task)."""
    h = hashlib.sha256()
    for part in (TASK_VERSION, fmt, json.dumps(asdict(config), sort_keys=True)):
        h.update(part.encode())
        h.update(b"\0")
    for path in (Path(data_dir) / "ml-100k" / "ml-100k.inter", Path(items_file)):
        h.update(hashlib.sha256(read_bytes(path)).digest())
    return f"ml100k-task-{h.hexdigest()[:24]}"


def verify_rerank_task(sets: dict[str, RankingSet], info: dict, inter: Interactions, items: ItemFeatures) -> list[str]:
    """Recompute the protocol's promises query by query from the raw ratings, with plain loops
    (independent of the vectorised builder above); returns the broken promises, [] when none.

    Checked per query: the context is the user's last ``context_k`` ratings before the cut; the
    positives are the user's first ``max_targets`` ratings in the target window with the rating
    as label; every label-0 candidate was never rated by the user; ``pop`` and the baseline score
    count only ratings before the cut; query features are the (masked) context means."""
    cfg = RerankTaskConfig(**info["config"])
    t_valid, t_test = info["cuts"]["valid"]["timestamp"], info["cuts"]["test"]["timestamp"]
    by_user: dict[str, list[tuple[float, int, str, float]]] = {}
    for n, (u, i, t, r) in enumerate(zip(inter.user_ids, inter.item_ids, inter.timestamps, inter.ratings)):
        by_user.setdefault(str(u), []).append((float(t), n, str(i), float(r)))
    for events in by_user.values():
        events.sort()
    times_of: dict[str, list[float]] = {}
    for u, i, t in zip(inter.user_ids, inter.item_ids, inter.timestamps):
        times_of.setdefault(str(i), []).append(float(t))
    row_of = items.row_of()
    problems: list[str] = []
    for split, rset in sets.items():
        ends = {"train": t_valid, "valid": t_test, "test": np.inf}
        for q in rset:
            user = q.query_id.rsplit("@", 1)[0]
            tau = info["cut_time_per_query"][split][q.query_id]
            events = by_user[user]
            before = [e for e in events if e[0] < tau]
            window = [e for e in events if tau <= e[0] < ends[split]]
            where = f"{split}/{q.query_id}"
            if split != "train" and tau != (t_valid if split == "valid" else t_test):
                problems.append(f"{where}: cut {tau} is not the global {split} cut")
            if split == "train" and tau >= t_valid:
                problems.append(f"{where}: train cut {tau} not before the valid cut")
            context = [e[2] for e in before[-cfg.context_k:]][::-1]
            if context != info["context_item_ids"][split][q.query_id]:
                problems.append(f"{where}: context is not the last {cfg.context_k} ratings before the cut")
            if len(before) < cfg.min_history or not window:
                problems.append(f"{where}: fewer than min_history ratings before the cut or no target")
            expected = {e[2]: e[3] for e in window[:cfg.max_targets]}
            got = {c: l for c, l in zip(q.candidate_ids, q.labels) if l > 0}
            if got != expected:
                problems.append(f"{where}: positives/labels differ from the target window")
            rated = {e[2] for e in events}
            if any(c in rated for c, l in zip(q.candidate_ids, q.labels) if l == 0):
                problems.append(f"{where}: a label-0 candidate was rated by the user")
            counts = np.array([sum(t < tau for t in times_of.get(c, [])) for c in q.candidate_ids])
            if not np.allclose(q.features["pop"][:, 0], np.log1p(counts), atol=1e-5):
                problems.append(f"{where}: pop counts use ratings at or after the cut")
            if q.baseline_scores is not None and not np.allclose(q.baseline_scores, np.log1p(counts), atol=1e-5):
                problems.append(f"{where}: baseline score is not log1p(count before the cut)")
            rows = np.array([row_of[c] for c in context], dtype=np.int64)
            for name in items.features:
                mask = items.masks.get(name, np.ones(len(items), dtype=bool))
                keep = rows[mask[rows]]
                want = items.features[name][keep].mean(axis=0) if len(keep) else 0.0
                if not np.allclose(q.query_features[name], want, atol=1e-5):
                    problems.append(f"{where}: query feature {name!r} is not the masked context mean")
    return problems
