"""A nearest-neighbour index over item embeddings (faiss), saved as faiss's own file + JSON.

Kinds (all inner product on L2-normalised vectors, i.e. cosine similarity):

* ``flat``: exact search (``IndexFlatIP``) — the right choice for small galleries;
* ``hnsw``: graph search (``IndexHNSWFlat``, Malkov & Yashunin 2018), ``hnsw_m`` links per node,
  ``ef_search`` candidates kept while searching (higher: better recall, slower);
* ``ivf``: inverted lists (``IndexIVFFlat``): k-means into ``nlist`` cells, ``nprobe`` cells
  scanned per query;
* ``auto``: ``flat`` up to ``AUTO_EXACT_MAX`` items, ``ivf`` above (BENCHMARKS.md, "First-stage
  retrieval": on 200,000 items IVF with its default nprobe returned 99.9% of the exact top 100
  11× faster than exact search, while HNSW at efSearch 64 returned only 64% of it).

On disk: ``index.faiss`` (``faiss.write_index``, not pickle), ``index.json`` (kind, parameters,
item ids, sha256 of the faiss file, how the vectors were made) and ``vectors.safetensors`` (the
normalised item vectors: history queries average them, and ANN results can be checked against
exact search).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.errors import ConfigError, DataError

KINDS = ("auto", "flat", "hnsw", "ivf")
AUTO_EXACT_MAX = 50_000
FORMAT_VERSION = 1


@dataclass
class IndexSettings:
    """How to build the index (see the module docstring); None picks a size-based default."""

    kind: str = "auto"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int | None = None
    seed: int = 0

    def check(self) -> None:
        """Reject an unknown kind or non-positive sizes before anything is built.

        Raises:
            ConfigError: for an unknown ``kind`` or a size below 1.
        """
        if self.kind not in KINDS:
            raise ConfigError(f"index kind {self.kind!r} — use one of {', '.join(KINDS)}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value} — use a positive number")

    def resolved_kind(self, n: int) -> str:
        """The kind actually built for ``n`` items (``auto`` → flat or ivf)."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n <= AUTO_EXACT_MAX else "ivf"


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(np.where(norms > 0, x / np.maximum(norms, 1e-12), 0.0), dtype=np.float32)


@dataclass
class VectorIndex:
    """A built index: ``item_ids (n,)``, the normalised ``vectors (n, d)``, the faiss index and
    its settings. Build with :func:`build_index`, query with :meth:`search`."""

    item_ids: np.ndarray
    vectors: np.ndarray
    kind: str
    settings: IndexSettings
    faiss_index: object = field(repr=False)
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Vector width ``d``."""
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.item_ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar items of each query vector (normalised here).

        Returns:
            ``(scores (Q, k) float32, rows (Q, k) int64)``, best first; rows are ``-1`` (score
            ``-inf``) where the index has fewer than ``k`` items to give.
        """
        queries = normalise_rows(np.atleast_2d(queries))
        if queries.shape[1] != self.dim:
            raise DataError(f"query vectors have width {queries.shape[1]}, the index {self.dim}",
                            hint="embed the queries with the same modalities as the index")
        k = int(k)
        if k < 1:
            raise ConfigError(f"k={k} — ask for at least one candidate")
        scores, rows = self.faiss_index.search(queries, min(k, len(self)))
        if k > len(self):
            pad = k - len(self)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return scores, rows.astype(np.int64)

    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``vectors.safetensors`` and ``index.json`` into ``directory``."""
        import faiss
        from safetensors.numpy import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        blob = faiss.serialize_index(self.faiss_index).tobytes()
        atomic_write_bytes(directory / "index.faiss", blob)
        vectors = save({"vectors": np.ascontiguousarray(self.vectors, dtype=np.float32)})
        atomic_write_bytes(directory / "vectors.safetensors", vectors)
        manifest = {"format_version": FORMAT_VERSION, "kind": self.kind, "settings": self.settings.__dict__,
                    "n_items": len(self), "dim": self.dim, "metric": "inner_product_on_unit_vectors",
                    "item_ids": [str(i) for i in self.item_ids], "info": self.info,
                    "sha256": {"index.faiss": hashlib.sha256(blob).hexdigest(),
                               "vectors.safetensors": hashlib.sha256(vectors).hexdigest()}}
        return atomic_write_text(directory / "index.json", json.dumps(manifest, indent=1) + "\n")


def _default_nlist(n: int) -> int:
    # ~4 sqrt(n) cells (faiss's guideline), each trained on >= 39 points.
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def build_index(vectors: np.ndarray, item_ids, settings: IndexSettings | None = None, info: dict | None = None) -> VectorIndex:
    """Build an index over ``vectors (n, d)`` (rows are L2-normalised first) named by ``item_ids``.

    Args:
        vectors: one embedding per item; zero rows are allowed (they match nothing well).
        item_ids: ``(n,)`` ids, unique.
        settings: kind and parameters (default ``IndexSettings()``: ``auto``).
        info: free JSON-ready notes kept in ``index.json`` (e.g. which modalities made the vectors).

    Returns:
        The built :class:`VectorIndex`.

    Raises:
        ConfigError: for bad settings.
        DataError: when the vectors are empty, not 2-D, non-finite, or ids repeat / miscount.

    Example:
        >>> index = build_index(items.features["text"], items.item_ids, IndexSettings(kind="hnsw"))  # doctest: +SKIP
        >>> scores, rows = index.search(query_vectors, k=100)  # doctest: +SKIP
    """
    import faiss

    settings = settings or IndexSettings()
    settings.check()
    vectors = np.asarray(vectors)
    ids = np.asarray([str(i) for i in item_ids], dtype=object)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise DataError(f"item vectors must be a non-empty (n, d) matrix, got shape {vectors.shape}")
    if len(ids) != len(vectors) or len(set(ids)) != len(ids):
        raise DataError(f"{len(ids)} item ids for {len(vectors)} vectors, or repeated ids", hint="give one unique id per row")
    if not np.all(np.isfinite(vectors)):
        raise DataError("item vectors contain NaN or infinite values", hint="replace or mask those rows")
    x = normalise_rows(vectors)
    n, d = x.shape
    kind = settings.resolved_kind(n)
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.ef_construction
        index.hnsw.efSearch = settings.ef_search
    else:
        nlist = settings.nlist or _default_nlist(n)
        if nlist > n:
            raise ConfigError(f"nlist={nlist} is more than the {n} items — use fewer cells or the flat index")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = settings.seed
        index.train(x)
        index.nprobe = settings.nprobe or max(1, nlist // 8)
        settings = IndexSettings(**{**settings.__dict__, "nlist": nlist, "nprobe": index.nprobe})
    index.add(x)
    return VectorIndex(ids, x, kind, settings, index, dict(info or {}))


def load_index(directory: str | Path) -> VectorIndex:
    """Read an index written by :meth:`VectorIndex.save`, checking both files' sha256.

    Raises:
        DataError: when a file is missing, unreadable or changed since it was written.
    """
    import faiss
    from safetensors.numpy import load

    directory = Path(directory)
    try:
        manifest = json.loads((directory / "index.json").read_text())
        blob = (directory / "index.faiss").read_bytes()
        vec_bytes = (directory / "vectors.safetensors").read_bytes()
    except (OSError, ValueError) as e:
        raise DataError(f"not a readable index folder ({e})", path=directory,
                        hint="build one with `mmrank index build`") from None
    for name, data in (("index.faiss", blob), ("vectors.safetensors", vec_bytes)):
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256", {}).get(name):
            raise DataError(f"checksum mismatch: {name} changed after it was written", path=directory / name,
                            hint="rebuild the index")
    index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
    settings = IndexSettings(**manifest["settings"])
    if manifest["kind"] == "hnsw":
        index.hnsw.efSearch = settings.ef_search
    elif manifest["kind"] == "ivf":
        index.nprobe = settings.nprobe
    return VectorIndex(np.asarray(manifest["item_ids"], dtype=object), load(vec_bytes)["vectors"], manifest["kind"],
                       settings, index, manifest.get("info", {}))
