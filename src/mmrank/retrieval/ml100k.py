"""First-stage retrieval for the ML-100K reranking task (docs/ml100k_tasks.md, docs/retrieval.md).

The task's queries (one user at one cut time tau, ``task.json``) keep their meaning, but the
candidates come from the index instead of "targets + sampled negatives": the user's history
(every rating before tau, most recent first) is embedded as the mean of its item vectors, the
items rated before tau are excluded, and the top ``k`` are kept. Labels: the user's rating when
the item was rated in the query's target window ``[tau, end)`` (train: end = the valid cut;
valid: the test cut; test: no end), else 0. **All** ratings in the window are targets (the task
keeps the first 20 as positives; a first stage is judged on finding any of them).

Candidate modalities are the task's own — every item modality, and ``pop`` (log1p of the rating
count and the shrunk mean rating, from ratings before tau only) — plus ``first_stage`` (the
similarity); query features and texts are copied from the task's split file. So a reranker
trained on the task scores these files as they are, and one trained on retrieved train
candidates sees exactly what it will see at serving time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmrank.data.formats import load_ranking
from mmrank.data.ml100k_rerank_task import SHRINK_COUNT, SPLITS, query_windows
from mmrank.data.model import Interactions, ItemFeatures, RankingSet
from mmrank.data.user_history import UserTimeline
from mmrank.errors import ConfigError, DataError
from mmrank.retrieval.candidates import candidate_set, retrieve
from mmrank.retrieval.index import VectorIndex
from mmrank.retrieval.vectors import history_vectors


@dataclass
class TaskQueries:
    """The queries of one split: ids, cut times, histories (index rows, most recent first) and
    targets (``{item id: rating}`` in the window)."""

    query_ids: list[str]
    taus: np.ndarray
    histories: list[np.ndarray]
    targets: list[dict[str, float]]


def read_task_info(task_dir: str | Path) -> dict:
    """``task.json`` of a built reranking task (``OUT/rerank`` of ``mmrank data features``)."""
    path = Path(task_dir) / "task.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the task description ({e})", path=path,
                        hint="point at OUT/rerank of `mmrank data features --dataset ml100k`") from None


def task_queries(index: VectorIndex, inter: Interactions, info: dict, split: str) -> TaskQueries:
    """The split's queries with their histories and target windows, from the raw ratings."""
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} — use one of {', '.join(SPLITS)}")
    windows = (query_windows(info) or {}).get(split)
    if windows is None:
        raise DataError(f"the task description lists no {split!r} query windows",
                        hint="rebuild the task with `mmrank data features --dataset ml100k`")
    row_of = {str(i): r for r, i in enumerate(index.item_ids)}
    timeline = UserTimeline(inter)
    out = TaskQueries([], np.zeros(len(windows)), [], [])
    for n, (qid, (tau, end)) in enumerate(windows.items()):
        user = qid.rsplit("@", 1)[0]
        before, window = timeline.before(user, tau), timeline.window(user, tau, end)
        missing = [i for i in inter.item_ids[before] if i not in row_of]
        if missing:
            raise DataError(f"rated item {missing[0]!r} is not in the index", hint="build the index from the task's items")
        out.query_ids.append(qid)
        out.taus[n] = tau
        out.histories.append(np.array([row_of[i] for i in inter.item_ids[before]], dtype=np.int64))
        out.targets.append({str(i): float(r) for i, r in zip(inter.item_ids[window], inter.ratings[window])})
    return out


def _popularity(inter: Interactions, ids_per_query: list[np.ndarray], taus: np.ndarray) -> list[np.ndarray]:
    """The task's ``pop`` modality: ``[log1p(count), shrunk mean rating]`` from ratings before tau."""
    items, item_idx = np.unique(inter.item_ids, return_inverse=True)
    position = {str(i): n for n, i in enumerate(items)}
    memo: dict[float, tuple[np.ndarray, np.ndarray, float]] = {}
    out = []
    for ids, tau in zip(ids_per_query, taus):
        if tau not in memo:
            before = inter.timestamps < tau
            counts = np.bincount(item_idx[before], minlength=len(items)).astype(np.float64)
            sums = np.bincount(item_idx[before], weights=inter.ratings[before], minlength=len(items))
            memo[tau] = (counts, sums, float(sums.sum() / max(counts.sum(), 1.0)))
        counts, sums, mean = memo[tau]
        idx = np.array([position.get(str(i), -1) for i in ids], dtype=np.int64)
        c = np.where(idx >= 0, counts[idx], 0.0)
        s = np.where(idx >= 0, sums[idx], 0.0)
        out.append(np.stack([np.log1p(c), (s + SHRINK_COUNT * mean) / (c + SHRINK_COUNT)], axis=1))
    return out


def ml100k_candidates(index: VectorIndex, task_dir: str | Path, inter: Interactions, items: ItemFeatures, split: str,
                      k: int = 100, recency_decay: float = 1.0) -> tuple[RankingSet, list[dict[str, float]]]:
    """Retrieved candidates of one split of the ML-100K task, and each query's targets.

    Args:
        index: an index over the task's items (same ids).
        task_dir: ``OUT/rerank`` (``task.json`` and ``<split>.parquet`` for the query features).
        inter: the ratings the task was built from.
        items: the item features (``OUT`` of ``mmrank data features``).
        split: train, valid or test.
        k: candidates per query.
        recency_decay: history weighting of the query vector (``history_vectors``).

    Returns:
        ``(rset, targets)``: the candidate RankingSet (layout in the module docstring) and per
        query ``{item id: rating}`` of every target in its window (for recall and end-to-end nDCG).
    """
    info = read_task_info(task_dir)
    queries = task_queries(index, inter, info, split)
    task = _task_split(Path(task_dir), split)
    pos = {q: n for n, q in enumerate(task.query_ids)}
    if any(q not in pos for q in queries.query_ids):
        raise DataError(f"the {split} split file and task.json list different queries", path=task_dir,
                        hint="rebuild the task with `mmrank data features`")
    qrows = np.array([pos[q] for q in queries.query_ids], dtype=np.int64)
    vectors = history_vectors(index.vectors, queries.histories, recency_decay)
    found = retrieve(index, vectors, k, queries.query_ids, exclude=queries.histories)
    ids = [found.candidate_ids(index, q) for q in range(len(queries.query_ids))]
    rset = candidate_set(
        index, found, targets=queries.targets, items=items, modalities=sorted(items.features),
        extra_features={"pop": _popularity(inter, ids, queries.taus)},
        query_features={name: m[qrows] for name, m in task.query_features.items()},
        query_texts=None if task.query_texts is None else task.query_texts[qrows], domain="ml100k",
    )
    return rset, queries.targets


def _task_split(task_dir: Path, split: str) -> RankingSet:
    for ext in ("parquet", "jsonl"):
        if (task_dir / f"{split}.{ext}").is_file():
            return load_ranking(task_dir / f"{split}.{ext}")
    raise DataError(f"no {split}.parquet or {split}.jsonl", path=task_dir,
                    hint="point at OUT/rerank of `mmrank data features --dataset ml100k`")
