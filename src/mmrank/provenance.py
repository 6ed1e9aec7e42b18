"""What a run was trained and validated on, kept as compact hashes, and whether new data overlaps it.

``write_provenance(run_dir, {"train": ..., "valid": ..., "test": ...})`` records per split, for a
``RankingSet``: a 64-bit hash of every query id, of every (query id, candidate id) pair, of every
candidate's feature row (rounded to ``CONTENT_DECIMALS``) and of every query's content (its
candidates' row hashes, sorted: order-free); for ``Interactions``: a hash of every (user, item)
and every (user, item, time) event. Hashes only, never copies of the data: ``RUN/provenance.safetensors``
(the arrays) and ``RUN/provenance.json`` (what each split is, its sizes). No pickle.

``overlap_with_training(run_dir, data)`` counts the rows of ``data`` found in the run's *training*
splits (``train`` and ``valid``: early stopping and calibration fit on valid, so it is seen data
too) with examples; ``refuse_if_trained_on`` turns an overlap into a one-line ``DataError`` unless
explicitly allowed. Old runs without the files give ``None``: nothing can be compared, and the
callers say so.

A test query is "trained on" when its id, any of its (query, candidate) pairs or its whole content
was in a training split, or when at least ``COPIED_QUERY_SHARE`` of its candidate feature rows are
exact copies of training rows (a query copied under new ids). Single copied rows are counted and
reported but decide nothing alone: on clean MQ2008 no test row equals a training row, but other
data may hold legitimately identical rows (all-zero feature vectors).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.data.model import Interactions, RankingSet
from mmrank.errors import DataError

VERSION = 1
TENSORS = "provenance.safetensors"
META = "provenance.json"
CONTENT_DECIMALS = 6
COPIED_QUERY_SHARE = 0.5          # a query with this share of its rows copied from training is trained on
TRAINING_SPLITS = ("train", "valid")
N_EXAMPLES = 5

RANKING, INTERACTIONS = "ranking", "interactions"
# the hash arrays recorded per kind of data
RANKING_KEYS = ("query_id", "pair", "row_content", "query_content")
INTERACTION_KEYS = ("user_item", "event")


# -- hashing ----------------------------------------------------------------------------------
def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def hash_strings(values: Iterable[str]) -> np.ndarray:
    """(n,) int64: a 64-bit blake2b hash of each string."""
    return np.fromiter((_h64(str(v).encode("utf-8")) for v in values), dtype=np.int64)


def hash_rows(matrix: np.ndarray, decimals: int = CONTENT_DECIMALS) -> np.ndarray:
    """(N,) int64: a hash of each row rounded to ``decimals`` (so float32 vs float64 reads agree)."""
    x = np.ascontiguousarray(np.round(np.asarray(matrix, dtype=np.float64), decimals) + 0.0)  # -0.0 -> 0.0
    return np.fromiter((_h64(row.tobytes()) for row in x), dtype=np.int64, count=len(x))


def _joined(*columns: np.ndarray) -> list[str]:
    return ["\t".join(parts) for parts in zip(*(np.asarray(c).astype(str) for c in columns))]


def ranking_hashes(rset: RankingSet, decimals: int = CONTENT_DECIMALS) -> dict[str, np.ndarray]:
    """The per-query and per-candidate hashes of a RankingSet (see the module docstring)."""
    qids = rset.query_ids.astype(str)
    rows = hash_rows(rset.feature_matrix(with_query_features=False), decimals)
    query_content = np.array([
        _h64(np.sort(rows[rset.offsets[i]:rset.offsets[i + 1]]).tobytes()) for i in range(rset.n_queries)
    ], dtype=np.int64)
    return {"query_id": hash_strings(qids), "pair": hash_strings(_joined(qids[rset.query_index], rset.candidate_ids)),
            "row_content": rows, "query_content": query_content}


def interaction_hashes(events: Interactions) -> dict[str, np.ndarray]:
    """(user, item) and (user, item, time) hashes of every event."""
    times = np.array([f"{t:.6f}" for t in events.timestamps], dtype=object)
    return {"user_item": hash_strings(_joined(events.user_ids, events.item_ids)),
            "event": hash_strings(_joined(events.user_ids, events.item_ids, times))}


def _kind(data: Any) -> str:
    if isinstance(data, RankingSet):
        return RANKING
    if isinstance(data, Interactions):
        return INTERACTIONS
    raise TypeError(f"provenance records RankingSet or Interactions, not {type(data).__name__}")


def hashes_of(data: RankingSet | Interactions) -> dict[str, np.ndarray]:
    """The provenance hashes of a split: :func:`ranking_hashes` for a RankingSet (keys
    ``RANKING_KEYS``), :func:`interaction_hashes` for Interactions (keys ``INTERACTION_KEYS``).

    Returns:
        ``{key: int64 array}`` — (Q,) for per-query keys, (N,) per candidate/event keys.

    Raises:
        TypeError: ``data`` is neither a RankingSet nor Interactions."""
    return ranking_hashes(data) if _kind(data) == RANKING else interaction_hashes(data)


# -- the record -------------------------------------------------------------------------------
@dataclass
class SplitRecord:
    """One split's hashes: ``kind`` is "ranking" or "interactions"; ``sizes`` its row counts."""

    kind: str
    hashes: dict[str, np.ndarray]
    sizes: dict[str, int] = field(default_factory=dict)

    def same_rows_as(self, data: RankingSet | Interactions) -> bool:
        """True when ``data`` holds exactly the rows this split recorded, ids and content (as sets)."""
        if _kind(data) != self.kind:
            return False
        keys = ("pair", "row_content") if self.kind == RANKING else ("event",)
        other = hashes_of(data)
        return all(np.array_equal(np.unique(self.hashes[k]), np.unique(other[k])) for k in keys)


@dataclass
class Provenance:
    """The hashes of every split a run saw, by split name."""

    splits: dict[str, SplitRecord]
    version: int = VERSION

    def training_splits(self) -> dict[str, SplitRecord]:
        """The splits the run learnt from (``train`` and ``valid``: early stopping and
        calibration see valid too), by name; test splits are left out."""
        return {k: v for k, v in self.splits.items() if k in TRAINING_SPLITS}


def _sizes(data: RankingSet | Interactions) -> dict[str, int]:
    if isinstance(data, RankingSet):
        return {"queries": data.n_queries, "candidates": data.n_candidates}
    return {"events": len(data), "users": data.n_users}


def write_provenance(run_dir: str | Path, parts: Mapping[str, RankingSet | Interactions]) -> Path:
    """Record, per split name ('train', 'valid', 'test', ...), compact hashes (ids and content
    hashes of every query and candidate row for a RankingSet; (user, item) and (user, item, time)
    event hashes for Interactions) into RUN/provenance.* (safetensors + JSON, never pickle).

    Returns the path of the JSON file (written last: a run that has it has both)."""
    from safetensors.numpy import save

    run_dir = Path(run_dir)
    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"version": VERSION, "content_decimals": CONTENT_DECIMALS, "splits": {}}
    for name, data in parts.items():
        if data is None:
            continue
        if "/" in name:
            raise ValueError(f"split name {name!r} must not contain '/'")
        kind = _kind(data)
        for key, arr in hashes_of(data).items():
            tensors[f"{name}/{key}"] = arr
        meta["splits"][name] = {"kind": kind, "sizes": _sizes(data)}
    atomic_write_bytes(run_dir / TENSORS, save(tensors) if tensors else save({"_empty": np.zeros(0, np.int64)}))
    return atomic_write_text(run_dir / META, json.dumps(meta, indent=2) + "\n")


def read_provenance(run_dir: str | Path) -> Provenance | None:
    """The run's recorded hashes; None for a run written before provenance existed."""
    from safetensors.numpy import load_file

    run_dir = Path(run_dir)
    meta_path, tensor_path = run_dir / META, run_dir / TENSORS
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the run's provenance: {e}", path=meta_path,
                        hint="the run directory is damaged: retrain it") from e
    splits = {}
    for name, info in meta.get("splits", {}).items():
        if not isinstance(info, dict) or info.get("kind") not in (RANKING, INTERACTIONS):
            raise DataError(f"provenance of split {name!r} names no known kind", path=meta_path,
                            hint="the run directory is damaged: retrain it")
        keys = RANKING_KEYS if info["kind"] == RANKING else INTERACTION_KEYS
        missing = [k for k in keys if f"{name}/{k}" not in tensors]
        if missing:
            raise DataError(f"provenance of split {name!r} lacks {missing}", path=tensor_path,
                            hint="the run directory is damaged: retrain it")
        splits[name] = SplitRecord(info["kind"], {k: tensors[f"{name}/{k}"] for k in keys}, dict(info.get("sizes", {})))
    return Provenance(splits, int(meta.get("version", VERSION)))


# -- overlap ----------------------------------------------------------------------------------
@dataclass
class ProvenanceOverlap:
    """How much of some data the run was trained (or validated) on.

    ``per_split[name]`` holds counts (and ``examples``) per hash kind for each training split;
    ``affected`` is the number of queries (rankings) or events (interactions) of the data found
    in training, ``total`` their number."""

    kind: str
    total: int
    affected: int
    per_split: dict[str, dict[str, Any]]
    examples: list[str]
    not_comparable: list[str] = field(default_factory=list)   # training splits of another data kind

    @property
    def trained_on(self) -> bool:
        """True when at least one query or event of the data was in a training split."""
        return self.affected > 0

    @property
    def unit(self) -> str:
        """What ``total``/``affected`` count, for messages: ``"queries"`` or ``"events"``."""
        return "queries" if self.kind == RANKING else "events"

    def summary(self) -> str:
        """One line: how many of the data's queries/events the run saw, where, examples."""
        where = ", ".join(f"{name}: " + ", ".join(f"{k} {v}" for k, v in d["counts"].items() if v)
                          for name, d in self.per_split.items() if d["affected"])
        ex = ", ".join(self.examples[:3])
        return (f"{self.affected} of {self.total} {self.unit} were in the run's training data ({where}; "
                f"e.g. {ex})") if self.trained_on else f"none of {self.total} {self.unit} were in the run's training data"

    def to_dict(self) -> dict:
        """The overlap as JSON-ready data, ``trained_on`` included."""
        return {"kind": self.kind, "total": self.total, "affected": self.affected, "trained_on": self.trained_on,
                "per_split": self.per_split, "examples": self.examples, "not_comparable": self.not_comparable}


def _ranking_overlap(data: RankingSet, h: dict[str, np.ndarray], rec: SplitRecord) -> tuple[np.ndarray, dict]:
    """(Q,) bool of trained-on queries and the counts/examples for one training split."""
    qi = data.query_index
    id_hit = np.isin(h["query_id"], rec.hashes["query_id"])
    content_hit = np.isin(h["query_content"], rec.hashes["query_content"]) & (data.group_sizes > 0)
    pair_hit = np.isin(h["pair"], rec.hashes["pair"])
    row_hit = np.isin(h["row_content"], rec.hashes["row_content"])
    sizes = np.maximum(data.group_sizes, 1)
    copied_share = np.bincount(qi, weights=row_hit, minlength=data.n_queries) / sizes
    mostly_copied = (copied_share >= COPIED_QUERY_SHARE) & (data.group_sizes > 0)
    pair_queries = np.bincount(qi, weights=pair_hit, minlength=data.n_queries) > 0
    affected = id_hit | content_hit | pair_queries | mostly_copied
    counts = {"query_ids": int(id_hit.sum()), "query_contents": int(content_hit.sum()),
              "query_candidate_pairs": int(pair_hit.sum()), "candidate_rows": int(row_hit.sum()),
              "mostly_copied_queries": int(mostly_copied.sum())}
    return affected, {"counts": counts, "affected": int(affected.sum()),
                      "examples": [str(q) for q in data.query_ids[affected][:N_EXAMPLES]]}


def _interaction_overlap(data: Interactions, h: dict[str, np.ndarray], rec: SplitRecord) -> tuple[np.ndarray, dict]:
    event_hit = np.isin(h["event"], rec.hashes["event"])
    pair_hit = np.isin(h["user_item"], rec.hashes["user_item"])
    affected = event_hit | pair_hit
    examples = [f"user {u} item {i}" for u, i in zip(data.user_ids[affected][:N_EXAMPLES], data.item_ids[affected][:N_EXAMPLES])]
    return affected, {"counts": {"events": int(event_hit.sum()), "user_items": int(pair_hit.sum())},
                      "affected": int(affected.sum()), "examples": examples}


def overlap_of(prov: Provenance, data: RankingSet | Interactions) -> ProvenanceOverlap:
    """Counts and examples of the rows of ``data`` found in ``prov``'s training splits."""
    kind = _kind(data)
    h = hashes_of(data)
    total = data.n_queries if kind == RANKING else len(data)
    affected = np.zeros(total, dtype=bool)
    per_split, not_comparable = {}, []
    for name, rec in prov.training_splits().items():
        if rec.kind != kind:
            not_comparable.append(name)
            continue
        hit, info = (_ranking_overlap if kind == RANKING else _interaction_overlap)(data, h, rec)
        affected |= hit
        per_split[name] = info
    ids = data.query_ids if kind == RANKING else np.array(_joined(data.user_ids, data.item_ids), dtype=object)
    examples = [str(x) for x in ids[affected][:N_EXAMPLES]]
    return ProvenanceOverlap(kind, total, int(affected.sum()), per_split, examples, not_comparable)


def overlap_with_training(run_dir: str | Path, data: RankingSet | Interactions) -> ProvenanceOverlap | None:
    """Counts + examples of rows of ``data`` found in the run's train / valid splits (None: the run
    recorded no provenance)."""
    prov = read_provenance(run_dir)
    return None if prov is None else overlap_of(prov, data)


def refuse_if_trained_on(run_dir: str | Path, data: RankingSet | Interactions, *, allow: bool = False,
                         path: str | None = None, flag: str = "--allow-trained-on") -> ProvenanceOverlap | None:
    """The overlap of ``data`` with the run's training data; raises ``DataError`` (one line, naming
    ``flag``) when the run was trained on some of it, unless ``allow``. None for runs without
    provenance."""
    overlap = overlap_with_training(run_dir, data)
    if overlap is not None and overlap.trained_on and not allow:
        raise DataError(f"the run {run_dir} was trained on this data: {overlap.summary()}", path=path,
                        hint=f"evaluate on data the run never saw, or pass {flag} to report it anyway (marked so)")
    return overlap
