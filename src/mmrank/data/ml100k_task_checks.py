"""What a built ML-100K reranking task promises, and what its splits expose of each other.

* :func:`verify_rerank_task` recomputes every promise of the protocol query by query from the
  raw ratings with plain loops (independent of the vectorised builder) and lists what is broken.
* :func:`task_events` gives the events a run trained on this task has seen (``seen``: for each user,
  every rating before the end of their latest training or validation window — the history the
  query features summarise and the targets) and the events it is judged on (``held_out``: each
  test query's target window). They are what the audit's ``temporal_leakage`` check compares;
  ``write_rerank_task`` writes them next to the splits (``seen.inter``, ``held_out.inter``).
* :func:`leakage_properties` measures, on the built task, what the protocol leaks across time:
  same-user future (0 by construction in both protocols) and, for the per-user protocol, other
  users' later events that training sees and test targets counted in training-time popularity.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.data.ml100k_rerank_task import RerankTaskConfig, user_cuts
from mmrank.data.model import Interactions, ItemFeatures, RankingSet

EVENT_FILES = {"seen": "seen.inter", "held_out": "held_out.inter"}
_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _windows_by_user(info: dict) -> tuple[dict[str, float], dict[str, float]]:
    """``(end of the latest train/valid window per user, test cut per user)`` from ``info``."""
    seen_end: dict[str, float] = {}
    test_cut: dict[str, float] = {}
    for split, windows in info["window_per_query"].items():
        for qid, (tau, end) in windows.items():
            user = qid.rsplit("@", 1)[0]
            if split == "test":
                test_cut[user] = float(tau)
            else:
                seen_end[user] = max(seen_end.get(user, -np.inf), float(end))
    return seen_end, test_cut


def task_events(info: dict, inter: Interactions) -> tuple[Interactions, Interactions]:
    """The events a run on this task has seen and the events it is judged on.

    Args:
        info: the task info (``task.json``) of :func:`~mmrank.data.ml100k_rerank_task.build_rerank_task`.
        inter: the ratings the task was built from.

    Returns:
        ``(seen, held_out)``: ``seen`` = for each user with a training or validation query, their
        ratings before the end of their latest such window; ``held_out`` = for each test query's
        user, their ratings at or after the test cut. Both keep the input order.

    Example:
        >>> seen, held_out = task_events(info, inter)  # doctest: +SKIP
        >>> audit(model, baseline, train=tr, test=te, train_interactions=seen, test_interactions=held_out)  # doctest: +SKIP
    """
    seen_end, test_cut = _windows_by_user(info)
    users = inter.user_ids.astype(str)
    end = np.array([seen_end.get(u, -np.inf) for u in users])
    cut = np.array([test_cut.get(u, np.inf) for u in users])
    return inter.take(np.flatnonzero(inter.timestamps < end)), inter.take(np.flatnonzero(inter.timestamps >= cut))


def leakage_properties(info: dict, inter: Interactions) -> dict:
    """Measure what a built task's training and validation data know about its test period.

    Args:
        info: the task info (needs ``window_per_query``).
        inter: the ratings the task was built from.

    Returns:
        A JSON-ready dict:

        * ``same_user_future_events`` / ``_users``: seen events at or after their own user's test
          cut (the per-user leak the audit's ``temporal_leakage`` FAILs on; 0 by construction);
        * ``test_queries_with_later_seen_events``: share of test queries for which some seen event
          (of another user) is at or after the query's cut;
        * ``seen_events_after_test_cut_mean_share``: per test query, the share of all seen events at
          or after its cut, averaged over test queries;
        * ``held_out_events_in_training_popularity``: share of held-out events earlier than some
          training or validation query's cut, i.e. counted in that query's ``pop`` features;
        * ``time_consistent``: True when every seen event and every training/validation cut
          precede every test cut (the global protocol), so no input of training is from the test
          period of any user.
    """
    seen, held = task_events(info, inter)
    _, test_cut = _windows_by_user(info)
    own_cut = np.array([test_cut.get(u, np.inf) for u in seen.user_ids.astype(str)])
    future = seen.timestamps >= own_cut
    cuts = np.array(sorted(test_cut.values()))
    seen_sorted = np.sort(seen.timestamps)
    later = len(seen_sorted) - np.searchsorted(seen_sorted, cuts, side="left")
    train_cuts = [tau for split in ("train", "valid") for tau, _ in info["window_per_query"].get(split, {}).values()]
    latest_train_cut = max(train_cuts, default=-np.inf)
    first_test_cut = float(cuts[0]) if len(cuts) else np.inf
    return {
        "seen_events": len(seen),
        "held_out_events": len(held),
        "same_user_future_events": int(future.sum()),
        "same_user_future_users": int(len(np.unique(seen.user_ids[future]))),
        "test_queries_with_later_seen_events": float(np.mean(later > 0)) if len(cuts) else 0.0,
        "seen_events_after_test_cut_mean_share": float(np.mean(later) / max(len(seen_sorted), 1)) if len(cuts) else 0.0,
        "held_out_events_in_training_popularity": float(np.mean(held.timestamps < latest_train_cut)) if len(held) else 0.0,
        "time_consistent": bool(seen_sorted[-1:].max(initial=-np.inf) < first_test_cut and latest_train_cut <= first_test_cut),
    }


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_task_events(out_dir: str | Path, seen: Interactions, held_out: Interactions) -> list[Path]:
    """Write ``seen.inter`` and ``held_out.inter`` (RecBole atomic files) into ``out_dir``.

    Args:
        out_dir: the task folder.
        seen, held_out: the events of :func:`task_events`.

    Returns:
        The two paths written.
    """
    paths = []
    for name, events in (("seen", seen), ("held_out", held_out)):
        ratings = events.ratings if events.ratings is not None else np.zeros(len(events))
        lines = [_HEADER] + [f"{u}\t{i}\t{_number(r)}\t{_number(t)}\n" for u, i, r, t in
                             zip(events.user_ids, events.item_ids, ratings, events.timestamps)]
        paths.append(atomic_write_text(Path(out_dir) / EVENT_FILES[name], "".join(lines)))
    return paths


def read_task_events(task_dir: str | Path) -> tuple[Interactions, Interactions]:
    """Read the ``(seen, held_out)`` events a task folder holds (see :func:`write_task_events`).

    Args:
        task_dir: a folder written by ``mmrank data features`` (e.g. ``OUT/rerank``).

    Returns:
        ``(seen, held_out)`` as Interactions, ready for ``audit(..., train_interactions=seen,
        test_interactions=held_out)``.

    Raises:
        DataError: when a file is missing or malformed (one line naming the file and the fix).
    """
    from mmrank.data.io_recbole import read_recbole

    return tuple(read_recbole(Path(task_dir) / EVENT_FILES[name])[0] for name in ("seen", "held_out"))  # type: ignore[return-value]


def _expected_window(split: str, times: list[float], cfg: RerankTaskConfig, cuts: dict) -> tuple[float, float | None] | None:
    """The ``[tau, end]`` the protocol gives a user's query of ``split`` (None: no such query)."""
    if cfg.protocol == "global":
        t_valid, t_test = cuts["valid"]["timestamp"], cuts["test"]["timestamp"]
    else:
        t_valid, t_test = user_cuts(np.array(times), cfg)
    if split == "valid":
        return t_valid, t_test
    if split == "test":
        return t_test, None
    before_end = sum(t < t_valid for t in times)
    if before_end <= cfg.min_history:
        return None
    return times[max(cfg.min_history, int(np.floor(cfg.train_cut_fraction * before_end)))], t_valid


def verify_rerank_task(sets: dict[str, RankingSet], info: dict, inter: Interactions, items: ItemFeatures) -> list[str]:
    """Recompute the protocol's promises query by query from the raw ratings, with plain loops
    (independent of the vectorised builder); return the broken promises, [] when none.

    Checked per query: its target window is the one the protocol gives the user (global cuts, or
    the user's own quantile cuts); the context is the user's last ``context_k`` ratings before the
    cut; the positives are the user's first ``max_targets`` ratings in the window with the rating as
    label; every label-0 candidate was never rated by the user; ``pop`` and the baseline score count
    only ratings before the cut; query features are the (masked) context means.

    Args:
        sets: the built splits.
        info: the task info (``task.json``).
        inter: the ratings the task was built from.
        items: the item features it was built with.

    Returns:
        One ``"<split>/<query id>: what is broken"`` line per broken promise.
    """
    cfg = RerankTaskConfig(**info["config"])
    by_user: dict[str, list[tuple[float, int, str, float]]] = {}
    for n, (u, i, t, r) in enumerate(zip(inter.user_ids, inter.item_ids, inter.timestamps, inter.ratings)):
        by_user.setdefault(str(u), []).append((float(t), n, str(i), float(r)))
    for events in by_user.values():
        events.sort()
    times_of: dict[str, list[float]] = {}
    for i, t in zip(inter.item_ids, inter.timestamps):
        times_of.setdefault(str(i), []).append(float(t))
    for times in times_of.values():
        times.sort()
    row_of = items.row_of()
    problems: list[str] = []
    for split, rset in sets.items():
        for q in rset:
            user = q.query_id.rsplit("@", 1)[0]
            tau, end = info["window_per_query"][split][q.query_id]
            events = by_user[user]
            where = f"{split}/{q.query_id}"
            if [tau, end] != list(_expected_window(split, [e[0] for e in events], cfg, info["cuts"]) or [None, None]):
                problems.append(f"{where}: window [{tau}, {end}] is not the protocol's {cfg.protocol} window")
            before = [e for e in events if e[0] < tau]
            window = [e for e in events if tau <= e[0] and (end is None or e[0] < end)]
            context = [e[2] for e in before[-cfg.context_k:]][::-1]
            if context != info["context_item_ids"][split][q.query_id]:
                problems.append(f"{where}: context is not the last {cfg.context_k} ratings before the cut")
            if len(before) < cfg.min_history or not window:
                problems.append(f"{where}: fewer than min_history ratings before the cut or no target")
            expected = {e[2]: e[3] for e in window[:cfg.max_targets]}
            got = {c: lab for c, lab in zip(q.candidate_ids, q.labels) if lab > 0}
            if got != expected:
                problems.append(f"{where}: positives/labels differ from the target window")
            rated = {e[2] for e in events}
            if any(c in rated for c, lab in zip(q.candidate_ids, q.labels) if lab == 0):
                problems.append(f"{where}: a label-0 candidate was rated by the user")
            counts = np.array([bisect.bisect_left(times_of.get(c, []), tau) for c in q.candidate_ids])
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
