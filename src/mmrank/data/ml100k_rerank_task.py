"""The ML-100K multimodal reranking task: per user, rerank later-watched movies among unseen ones.

Every query is one user at one *cut time* ``tau``. Everything about the query is computed from
interactions strictly before ``tau`` (what a model may train on); its targets are the user's
ratings in a window ``[tau, end)``. Two protocols place the cuts (``RerankTaskConfig.protocol``);
the full protocol, its leakage properties and the reasons for each choice are in
``docs/ml100k_tasks.md``. In short:

* ``per_user`` (default; 943 test queries on ML-100K): each user's own rating times are cut at
  their ``valid_quantile`` / ``test_quantile`` (``numpy.quantile(..., method="lower")``, an actual
  timestamp of the user): ``test`` targets are the user's ratings at or after ``tau_test(u)``,
  ``valid`` targets those in ``[tau_valid(u), tau_test(u))``. No event of a user that any
  training or validation query shows is at or after that user's test cut; other users' events
  can be (the usual per-user holdout: ``mmrank.data.ml100k_task_checks`` measures how much).
* ``global`` (89 test queries): the cuts are the quantiles of *all* rating timestamps, so no
  event shown in training or validation is at or after any test cut.
* ``train`` queries (both protocols) use only ratings before the user's valid cut ``V``: ``tau`` =
  the time of the user's rating at position ``max(min_history, floor(0.8 n))`` among their ``n``
  ratings before ``V``, targets in ``[tau, V)``.
* a user enters a split only with ``>= min_history`` ratings before ``tau`` and ``>= 1`` target;
* candidates: the first ``max_targets`` targets in time (label = the rating, 1..5) plus
  ``n_negatives`` movies the user never rated at all (label 0), drawn without replacement with a
  seeded generator per (seed, split, user), with probability proportional to 1 + the movie's
  rating count before ``tau`` (``negatives="popularity"``) or uniformly; candidates are shuffled.
* candidate modalities: every item modality (``text``, ``image``, ``image_effnet``, ``meta``, and
  ``clip_image``/``clip_text`` when built with CLIP) as rows of ItemFeatures, and ``pop``:
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
PROTOCOLS = ("per_user", "global")
# Bump when the protocol below changes what a query, candidate or feature is (invalidates caches).
TASK_VERSION = "2"
SHRINK_COUNT = 5.0  # pseudo-ratings at the global mean in the shrunk mean rating


@dataclass
class RerankTaskConfig:
    """The task's settings (``docs/ml100k_tasks.md`` explains each).

    ``valid_quantile`` / ``test_quantile`` are quantiles of each user's own rating times
    (``protocol="per_user"``) or of all rating times (``protocol="global"``)."""

    protocol: str = "per_user"
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
            ConfigError: when ``protocol`` is not ``per_user`` or ``global``, the cut quantiles are
                not ``0 < valid < test < 1``, ``train_cut_fraction`` is outside (0, 1),
                ``context_k`` / ``min_history`` / ``max_targets`` is below 1, ``n_negatives`` is
                negative, or ``negatives`` is neither ``"popularity"`` nor ``"uniform"``.
        """
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {self.protocol!r} — use one of {', '.join(PROTOCOLS)}")
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
    global mean rating before tau. The last cut is remembered (the global protocol's valid/test
    queries share one); per-user cuts are nearly all distinct, so nothing more is kept."""

    def __init__(self, ev: _Events) -> None:
        self.ev = ev
        self._last: tuple[float, tuple[np.ndarray, np.ndarray, float]] | None = None
        self._order = np.argsort(ev.time, kind="stable")
        self._sorted_time = ev.time[self._order]

    def __call__(self, tau: float) -> tuple[np.ndarray, np.ndarray, float]:
        if self._last is None or self._last[0] != tau:
            before = self._order[: np.searchsorted(self._sorted_time, tau, side="left")]
            counts = np.bincount(self.ev.item[before], minlength=self.ev.n_items)
            sums = np.bincount(self.ev.item[before], weights=self.ev.rating[before], minlength=self.ev.n_items)
            mean = float(sums.sum() / counts.sum()) if counts.sum() else 0.0
            self._last = (tau, (counts, sums, mean))
        return self._last[1]


def user_cuts(times: np.ndarray, config: RerankTaskConfig) -> tuple[float, float]:
    """A user's own valid and test cut under ``protocol="per_user"``.

    Args:
        times: the user's rating timestamps, in time order (non-empty).
        config: the task settings (``valid_quantile``, ``test_quantile``).

    Returns:
        ``(tau_valid, tau_test)``: ``numpy.quantile(times, q, method="lower")`` for each quantile,
        i.e. actual timestamps of the user (equal when a tie block spans both quantiles; the user
        then has no validation query).
    """
    return (float(np.quantile(times, config.valid_quantile, method="lower")),
            float(np.quantile(times, config.test_quantile, method="lower")))


def _train_spec(times: np.ndarray, end: float, cfg: RerankTaskConfig) -> float | None:
    """The train cut of one user whose training window ends at ``end`` (their valid cut), or None."""
    before_end = int(np.searchsorted(times, end, side="left"))
    if before_end <= cfg.min_history:
        return None
    tau = float(times[max(cfg.min_history, int(np.floor(cfg.train_cut_fraction * before_end)))])
    return tau if np.searchsorted(times, tau, side="left") >= cfg.min_history else None


def _query_specs(ev: _Events, cfg: RerankTaskConfig, global_cuts: tuple[float, float] | None) -> dict[str, list]:
    """Per split, ``(user index, tau, end)`` for every user that qualifies (``end`` = inf: open)."""
    specs: dict[str, list] = {s: [] for s in SPLITS}
    for u in range(len(ev.user_ids)):
        times = ev.time[ev.user_start[u]:ev.user_start[u + 1]]
        t_valid, t_test = global_cuts if global_cuts is not None else user_cuts(times, cfg)
        tau = _train_spec(times, t_valid, cfg)
        if tau is not None:
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
    windows: dict[str, list] = {}
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
        windows[qid] = [float(tau), None if np.isinf(end) else float(end)]
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
    return rset, contexts, windows


def build_rerank_task(
    inter: Interactions, items: ItemFeatures, config: RerankTaskConfig | None = None,
) -> tuple[dict[str, RankingSet], dict]:
    """Build the three splits of the task from ratings and item features.

    Args:
        inter: the ratings (user, item, timestamp, rating), e.g. ``read_recbole(DIR/"ml-100k")``.
        items: the item modalities (``text``, ``image``, ``meta`` at least), rows for every rated item.
        config: the protocol and its settings (default: ``per_user`` cuts, 20 popularity-weighted
            negatives, seed 0).

    Returns:
        ``({"train", "valid", "test"} -> RankingSet, info)``; ``info`` holds the protocol and
        settings, the cuts, per-split counts and fingerprints, each query's target window
        (``window_per_query``: ``[tau, end]``, end None = open), its context movie ids and the
        measured leakage properties (``leakage``, :func:`mmrank.data.ml100k_task_checks.leakage_properties`).

    Raises:
        ConfigError: for settings :meth:`RerankTaskConfig.check` rejects.
        DataError: when the ratings have no rating column, a rated item has no features, an item
            modality is missing, the global cuts coincide, or a split gets no query.
    """
    from mmrank.data.ml100k_task_checks import leakage_properties

    cfg = config or RerankTaskConfig()
    cfg.check()
    for name in ("text", "image", "meta"):
        if name not in items.features:
            raise DataError(f"item features lack the {name!r} modality",
                            hint="build them with mmrank data features --dataset ml100k")
    ev = _index_events(inter, items)
    global_cuts = None
    if cfg.protocol == "global":
        global_cuts = (float(np.quantile(ev.time, cfg.valid_quantile, method="lower")),
                       float(np.quantile(ev.time, cfg.test_quantile, method="lower")))
        if not global_cuts[0] < global_cuts[1]:
            raise DataError("the valid and test cuts fall on the same timestamp",
                            hint="spread valid_quantile and test_quantile further apart")
    specs = _query_specs(ev, cfg, global_cuts)
    sets, contexts, windows, counts = {}, {}, {}, {}
    popularity = _PopularityAsOf(ev)
    for split in SPLITS:
        rset, ctx, win = _build_split(ev, items, cfg, split, specs[split], popularity)
        sets[split] = rset
        contexts[split] = ctx
        windows[split] = win
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
        "protocol": cfg.protocol,
        "config": asdict(cfg),
        "cuts": _cuts_summary(windows, global_cuts),
        "interactions": {"ratings": len(inter), "users": len(ev.user_ids), "items": int(len(items)),
                         "fingerprint": inter.fingerprint()},
        "users_per_split": {s: len(specs[s]) for s in SPLITS},
        "counts": counts,
        "modalities": sets["test"].modality_dims,
        "query_features": sets["test"].query_feature_dims,
        "window_per_query": windows,
        "context_item_ids": contexts,
    }
    info["leakage"] = leakage_properties(info, inter)
    return sets, info


def _cuts_summary(windows: dict[str, dict], global_cuts: tuple[float, float] | None) -> dict:
    """The global cut times, or (per-user cuts) the earliest, median and latest cut per split."""
    if global_cuts is not None:
        return {"valid": _stamp(global_cuts[0]), "test": _stamp(global_cuts[1])}
    out = {}
    for split, win in windows.items():
        taus = np.array([w[0] for w in win.values()])
        out[split] = {k: _stamp(float(f(taus))) for k, f in
                      (("earliest", np.min), ("median", lambda t: np.quantile(t, 0.5, method="lower")), ("latest", np.max))}
    return out


def query_windows(info: dict) -> dict[str, dict[str, tuple[float, float]]] | None:
    """Each query's target window ``(tau, end)`` per split, from a task description (``task.json``
    or ``build_rerank_task``'s info); ``end`` is ``inf`` for an open window.

    Reads ``window_per_query``; task.json files of earlier releases hold ``cut_time_per_query``
    (global cuts only), whose ends are the next split's global cut — or ``inf`` when the file has
    no ``cuts`` (then only the taus mean anything). None when the description has neither."""
    if isinstance(info, dict) and isinstance(info.get("window_per_query"), dict):
        return {s: {str(q): (float(w[0]), np.inf if w[1] is None else float(w[1])) for q, w in v.items()}
                for s, v in info["window_per_query"].items()}
    if isinstance(info, dict) and isinstance(info.get("cut_time_per_query"), dict):
        cuts = info.get("cuts") or {}
        ends = {"train": (cuts.get("valid") or {}).get("timestamp", np.inf),
                "valid": (cuts.get("test") or {}).get("timestamp", np.inf)}
        return {s: {str(q): (float(t), float(ends.get(s, np.inf))) for q, t in v.items()}
                for s, v in info["cut_time_per_query"].items()}
    return None


def _stamp(t: float) -> dict:
    return {"timestamp": t, "utc": datetime.fromtimestamp(t, tz=timezone.utc).isoformat()}


def rerank_task_files(fmt: str = "parquet") -> list[str]:
    """List the files :func:`write_rerank_task` writes into its output folder.

    Args:
        fmt: the ranking format (file extension) the splits are written in.

    Returns:
        ``["train.<fmt>", "valid.<fmt>", "test.<fmt>", "task.json", "seen.inter", "held_out.inter"]``;
        a cached task counts as complete only when all of them exist.
    """
    from mmrank.data.ml100k_task_checks import EVENT_FILES

    return [f"{split}.{fmt}" for split in SPLITS] + ["task.json", *EVENT_FILES.values()]


def write_rerank_task(data_dir: str | Path, items: ItemFeatures, out_dir: str | Path,
                      config: RerankTaskConfig | None = None, fmt: str = "parquet") -> dict:
    """Read ``DIR/ml-100k`` (RecBole atomic files), build the task, write ``rerank_task_files``.

    Besides the three splits and ``task.json``, the events the task's training and validation
    queries show (``seen.inter``) and its test windows (``held_out.inter``) are written as RecBole
    atomic files, so the audit's ``temporal_leakage`` check can be given them
    (:func:`mmrank.data.ml100k_task_checks.read_task_events`).

    Returns:
        The task info (``task.json``'s content)."""
    from mmrank.data.io_recbole import read_recbole
    from mmrank.data.ml100k_task_checks import task_events, write_task_events

    out_dir = Path(out_dir)
    inter, _, read_report = read_recbole(Path(data_dir) / "ml-100k")
    sets, info = build_rerank_task(inter, items, config)
    info["interactions"]["read_report"] = read_report.summary()
    for split, rset in sets.items():
        write_ranking(rset, out_dir / f"{split}.{fmt}", fmt)
    write_task_events(out_dir, *task_events(info, inter))
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
