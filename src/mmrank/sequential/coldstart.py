"""Cold-start evaluation: a split whose test (and validation) targets include items never seen in
training, metrics reported for warm and cold targets separately and overall, and documented
fallbacks that let an ID-only model rank items it has no embedding for.

**The split** (``cold_start_split``; ``data.cold_start: {fraction, seed}`` in a sequential config):

1. Leave-one-out in time per user, exactly as the default protocol (``mmrank.data.splits.
   leave_one_out``): last event → test, second last → valid, the rest → train; users with fewer
   than 3 events go entirely to train.
2. The **held-out item set** C: a seeded random ``fraction`` of the distinct items that occur as a
   valid or test target (``numpy.random.default_rng(seed).permutation``, the first
   ``round(fraction * n)``).
3. Every *training* event of an item of C is taken out of training (all users). These events are
   not lost: they count as **seen** for their user, so evaluation masks them like any other item the
   user interacted with before the target (``SequenceSplit.seen_extra``); the model never reads them.
   A user whose every training event was an item of C has nothing left to learn from: the user's
   valid and test events are dropped too and counted (``users_dropped``).
4. A target is **cold** when its item has no training event (``split.cold_items``), which holds for
   every item of C and for any item whose only events are valid/test targets anyway; every other
   target is **warm**. Valid targets are split alike, so cold-start behaviour is tuned on validation.
5. Evaluation is the default one: full ranking over every catalogue item with the user's seen items
   masked, pessimistic ties. Overall metrics are the mean over all evaluated users;
   ``warm``/``cold`` are the means over the users whose target is warm/cold, so
   ``overall = (n_warm * warm + n_cold * cold) / n`` (tested).

**Fallbacks for ID-only models** (``id_fallback``): an ID-only SASRec has trained rows only for warm
items; a cold item's row was only ever pushed down as a softmax negative. Each fallback replaces the
cold items' rows (used for the input history and for scoring alike):

* ``untrained`` — the rows as trained (what you get with no fallback);
* ``popularity`` — every cold item gets the training-popularity-weighted mean of the warm rows (the
  ID model's "typical popular item"), plus seeded noise of 1e-4 of its norm so cold items tie-break
  at random instead of all ranking last;
* ``content_nearest`` — the similarity-weighted mean of the rows of the ``k`` warm items nearest in
  content (cosine over the per-modality standardised, L2-normalised, concatenated item features),
  rescaled to the neighbours' weighted mean norm (a plain mean of ``k`` rows is shorter than any of
  them and would sink in every ranking); needs ``data.item_features``.

The **best ID-only fallback** is the one with the highest *validation* cold-target NDCG@10 (ties —
e.g. all zero — broken by the lower mean validation rank of the cold targets); its test numbers are
the ones a content-aware model is compared with.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Iterable

import numpy as np
import torch

from mmrank.data.model import Interactions, hash_ids
from mmrank.data.splits import leave_one_out
from mmrank.errors import ConfigError, DataError
from mmrank.sequential.data import SequenceSplit, build_histories, make_split

FALLBACKS = ("untrained", "popularity", "content_nearest")
ID_ONLY_KINDS = ("sasrec",)


@dataclasses.dataclass
class ColdStartRows:
    """Row indices into the interactions of each part of a cold-start split, and what was held out."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    held_out: np.ndarray  # training events of held-out items: seen (masked), never read
    cold_items: np.ndarray  # raw ids of the held-out item set C
    users_dropped: int  # users left without a training event: their valid/test events are dropped
    events_dropped: int  # so that train + valid + test + held_out + events_dropped = every event

    def fingerprint(self, data_fingerprint: str, fraction: float, seed: int) -> dict:
        """Hashes of every part (as ``leave_one_out``'s), the held-out items and events, and the
        parameters: what ``fingerprint.json`` records for the split."""
        fp = {name: hash_ids(getattr(self, name)) for name in ("train", "valid", "test", "held_out")}
        fp["cold_items"] = hash_ids(sorted(map(str, self.cold_items)))
        fp["combined"] = hash_ids([f"data:{data_fingerprint}", f"fraction:{fraction}", f"seed:{seed}"]
                                  + [f"{k}:{v}" for k, v in fp.items()])
        return {"method": "cold_start_items", "fraction": fraction, "seed": seed,
                "n_cold_items": int(len(self.cold_items)), "held_out_events": int(len(self.held_out)),
                "users_dropped": self.users_dropped, "events_dropped": self.events_dropped, **fp}


def cold_start_rows(interactions: Interactions, fraction: float = 0.2, seed: int = 0) -> ColdStartRows:
    """Steps 1–3 of the protocol (module docstring) as row indices."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"data.cold_start.fraction: {fraction} — use a share of the target items in (0, 1)")
    loo = leave_one_out(interactions)
    train, valid, test = (loo.parts[p] for p in ("train", "valid", "test"))
    items = np.asarray(interactions.item_ids).astype(str)
    targets = np.unique(items[np.concatenate([valid, test])])
    n_cold = int(round(fraction * len(targets)))
    if n_cold == 0:
        raise DataError(f"cold-start split: {fraction} of {len(targets)} target items rounds to none",
                        hint="raise data.cold_start.fraction or use more users")
    cold = targets[np.random.default_rng(seed).permutation(len(targets))[:n_cold]]
    is_cold = np.isin(items, cold)
    held = train[is_cold[train]]
    train = train[~is_cold[train]]
    users = np.asarray(interactions.user_ids).astype(str)
    kept_users = set(users[train])
    keep = np.array([u in kept_users for u in users], dtype=bool)
    evaluated = np.concatenate([valid, test])
    dropped_users = len(set(users[evaluated]) - kept_users)
    events_dropped = int((~keep[evaluated]).sum() + (~keep[held]).sum())
    return ColdStartRows(train, valid[keep[valid]], test[keep[test]], held[keep[held]], cold, dropped_users, events_dropped)


def cold_start_split(interactions: Interactions, fraction: float = 0.2, seed: int = 0,
                     catalogue: Iterable | None = None, source: str = "<input>") -> tuple[SequenceSplit, ColdStartRows]:
    """The cold-start ``SequenceSplit`` (vocabularies from the kept training events, plus the
    catalogue and every target item, so cold items are ranked too) and its rows."""
    rows = cold_start_rows(interactions, fraction, seed)
    target_items = np.asarray(interactions.item_ids)[np.concatenate([rows.valid, rows.test])]
    catalogue = list(catalogue if catalogue is not None else []) + [str(i) for i in target_items]
    split = make_split(interactions, rows.train, rows.valid, rows.test, catalogue=catalogue, source=source)
    held = interactions.take(rows.held_out)
    split.seen_extra = build_histories(held, split.users, split.items, source)
    return split, rows


def cold_start_data(seq, fraction: float = 0.2, seed: int = 0):
    """A ``SequenceData`` (``mmrank.sequential.dataset``) re-split for cold-start evaluation: the
    split, its fingerprint and the parts (``train`` = the kept training events) replaced."""
    catalogue = None if seq.catalogue is None else seq.catalogue.item_ids
    split, rows = cold_start_split(seq.interactions, fraction, seed, catalogue, seq.inter_path)
    parts = {name: seq.interactions.take(getattr(rows, name)) for name in ("train", "valid", "test")}
    fingerprint = rows.fingerprint(seq.data_fingerprint, fraction, seed)
    protocol = dataclasses.replace(
        seq.protocol, name="cold_start_items",
        params={**seq.protocol.params, **{k: fingerprint[k] for k in ("fraction", "seed", "n_cold_items",
                                                                        "held_out_events", "users_dropped")}},
        description=f"{seq.protocol.description}; then {fingerprint['n_cold_items']} target items "
                    f"({fraction:g} of them, seed {seed}) held out of training (cold-start split)")
    return dataclasses.replace(seq, split=split, parts=parts, protocol=protocol, split_fingerprint=fingerprint)


# -- metrics: warm, cold, overall -------------------------------------------------------------------
def cold_mask(split: SequenceSplit, stage: str, users: np.ndarray) -> np.ndarray:
    """Per evaluated user (dense ``users``), True when the stage's target item (the first one for a
    user with several; the cold-start split has one per user) has no training event."""
    return split.cold_items[split.target_for(stage)[users]]


def warm_cold_breakdown(per_user: dict[str, np.ndarray], cold: np.ndarray) -> dict:
    """Mean of every per-user metric overall, over warm-target users and over cold-target users
    (``None`` for a group without users), and the group sizes."""
    groups = {"overall": np.ones_like(cold, dtype=bool), "warm": ~cold, "cold": cold}
    out: dict = {"users": {g: int(sel.sum()) for g, sel in groups.items()}}
    for g, sel in groups.items():
        out[g] = {k: (float(v[sel].mean()) if sel.any() else None) for k, v in per_user.items() if k != "users"}
    return out


# -- fallbacks for ID-only models -------------------------------------------------------------------
def content_matrix(feats: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> np.ndarray:
    """``(n_items+1, sum d)``: per modality z-scored over the items having it, rows L2-normalised,
    missing rows zero, modalities concatenated (the space ``content_nearest`` measures cosines in)."""
    blocks = []
    for m in sorted(feats):
        x, have = np.asarray(feats[m], dtype=np.float64), np.asarray(masks[m], dtype=bool)
        z = np.zeros_like(x)
        if have.any():
            rows = x[have]
            z[have] = (rows - rows.mean(0)) / np.maximum(rows.std(0), 1e-9)
            z[have] /= np.maximum(np.linalg.norm(z[have], axis=1, keepdims=True), 1e-12)
        blocks.append(z)
    return np.concatenate(blocks, axis=1)


def _imputed_rows(kind: str, table: np.ndarray, warm: np.ndarray, cold: np.ndarray, popularity: np.ndarray,
                  content: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    if kind == "popularity":
        w = popularity[warm] / max(popularity[warm].sum(), 1e-12)
        mean = (w[:, None] * table[warm]).sum(0)
        noise = np.random.default_rng(seed).normal(size=(len(cold), table.shape[1]))
        return mean[None] + noise * 1e-4 * np.linalg.norm(mean)
    if content is None:
        raise ConfigError("content_nearest fallback needs item features (data.item_features)")
    c = content / np.maximum(np.linalg.norm(content, axis=1, keepdims=True), 1e-12)
    sims = c[cold] @ c[warm].T  # (n_cold, n_warm) cosines
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    w = np.maximum(np.take_along_axis(sims, top, 1), 0.0)
    w = np.where(w.sum(1, keepdims=True) > 0, w, 1.0)  # no positive neighbour: plain mean of the k
    w = w / w.sum(1, keepdims=True)
    neighbours = table[warm][top]  # (n_cold, k, d)
    mean = np.einsum("ck,ckd->cd", w, neighbours)
    norm = np.einsum("ck,ck->c", w, np.linalg.norm(neighbours, axis=2))
    return mean * (norm / np.maximum(np.linalg.norm(mean, axis=1), 1e-12))[:, None]


def id_fallback(ranker, kind: str, split: SequenceSplit, content: np.ndarray | None = None, k: int = 10, seed: int = 0):
    """A copy of an ID-only SASRec whose cold items' embedding rows follow fallback ``kind``
    (``untrained`` | ``popularity`` | ``content_nearest``; see the module docstring)."""
    if kind not in FALLBACKS:
        raise ConfigError(f"unknown cold-start fallback {kind!r}; use one of {FALLBACKS}")
    if kind == "untrained":
        return ranker
    out = copy.deepcopy(ranker)
    table = out.net_.item_emb.weight.detach().cpu().double().numpy()
    cold = np.flatnonzero(split.cold_items[1:]) + 1
    warm = np.flatnonzero(~split.cold_items[1:]) + 1
    if len(cold) == 0:
        return out
    popularity = np.bincount(split.train.items, minlength=split.n_items + 1).astype(np.float64)
    rows = _imputed_rows(kind, table, warm, cold, popularity, content, k, seed)
    with torch.no_grad():
        out.net_.item_emb.weight[torch.from_numpy(cold)] = torch.from_numpy(rows).to(out.net_.item_emb.weight.dtype)
    return out


def fallback_report(ranker, split: SequenceSplit, ks=(5, 10, 20), content: np.ndarray | None = None,
                    seed: int = 0, chunk_size: int = 64) -> tuple[dict, list[dict]]:
    """Every fallback of an ID-only ranker on the split's valid and test targets: warm / cold /
    overall means per fallback and stage, the best fallback (highest validation cold NDCG@10), and
    per-user rows (for paired comparisons with a content-aware model)."""
    from mmrank.sequential.evaluation import evaluate_stage

    kinds = [f for f in FALLBACKS if f != "content_nearest" or content is not None]
    report: dict = {"fallbacks": {}}
    rows: list[dict] = []
    for kind in kinds:
        model = id_fallback(ranker, kind, split, content, seed=seed)
        report["fallbacks"][kind] = {}
        for stage in ("valid", "test"):
            per_user = evaluate_stage(model, split, stage, ks, chunk_size=chunk_size)
            cold = cold_mask(split, stage, per_user["users"])
            report["fallbacks"][kind][stage] = warm_cold_breakdown(per_user, cold)
            rows += prediction_rows(per_user, split, stage, cold, fallback=kind)
    def key(kind: str) -> tuple[float, float]:
        cold = report["fallbacks"][kind]["valid"]["cold"]
        return (cold.get("ndcg@10") or 0.0, -(cold.get("rank") or float("inf")))

    report["best_fallback"] = max(report["fallbacks"], key=key)
    report["chosen_on"] = "validation cold-target NDCG@10 (ties: lower mean cold-target rank)"
    return report, rows


def prediction_rows(per_user: dict[str, np.ndarray], split: SequenceSplit, stage: str, cold: np.ndarray,
                    **extra) -> list[dict]:
    """One ``predictions.parquet``-style row per evaluated user: ids, (first) target, ``n_targets``,
    ``cold_target``, every metric (a user with several targets: the mean over them), plus ``extra``
    columns."""
    targets = split.targets_for(stage)
    first, counts = targets.first(), targets.counts()
    out = []
    for j, u in enumerate(per_user["users"]):
        out.append({**extra, "user_id": str(split.users.ids[u]), "stage": stage,
                    "target_item": str(split.items.ids[first[u] - 1]), "n_targets": int(counts[u]),
                    "cold_target": bool(cold[j]), **{k: float(v[j]) for k, v in per_user.items() if k != "users"}})
    return out


__all__ = ["FALLBACKS", "ColdStartRows", "cold_mask", "cold_start_data", "cold_start_rows", "cold_start_split",
           "content_matrix", "fallback_report", "id_fallback", "prediction_rows",
           "warm_cold_breakdown"]
