"""Duplicate detection in three strengths, each giving clusters of item indices.

* ``exact``: identical bytes (sha256 of the file);
* ``perceptual``: pHash (``imagehash.phash``, 64 bits) within a Hamming distance (default 5 of
  64 bits) — catches resized, recompressed or lightly edited copies;
* ``embedding``: cosine similarity of any embeddings at or above a threshold (default 0.95).

Pairs become clusters by connected components (a~b and b~c put a, b, c together). The audit's
near-duplicate leakage check reuses ``near_duplicate_pairs`` on train vs. test embeddings.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

DEFAULT_PHASH_DISTANCE = 5
DEFAULT_COSINE = 0.95
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def near_duplicate_pairs(a: np.ndarray, b: np.ndarray | None = None, threshold: float = DEFAULT_COSINE,
                         block: int = 2048) -> np.ndarray:
    """``(k, 2)`` int64 index pairs ``(i, j)`` with cosine(a[i], b[j]) >= threshold.

    ``a (n, d)``, ``b (m, d)``; rows are L2-normalised here (zero rows never match). With
    ``b=None`` the pairs are within ``a`` and only ``i < j`` is returned. Works in blocks so
    memory stays ``block * m`` however large ``n`` is."""
    a_n = _unit_rows(a)
    same = b is None
    b_n = a_n if same else _unit_rows(b)
    if a_n.shape[1] != b_n.shape[1]:
        raise ValueError(f"embedding widths differ: {a_n.shape[1]} vs {b_n.shape[1]}")
    out = []
    for start in range(0, len(a_n), block):
        sims = a_n[start:start + block] @ b_n.T
        i, j = np.nonzero(sims >= threshold - 1e-6)  # float32 round-off must not drop an exact copy
        i = i + start
        if same:
            keep = i < j
            i, j = i[keep], j[keep]
        out.append(np.stack([i, j], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), dtype=np.int64)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (rows, dim), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def clusters_from_pairs(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components with more than one member, each sorted, ordered by first member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(pairs) == 0:
        return []
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for idx, lab in enumerate(labels):
        groups.setdefault(int(lab), []).append(idx)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def exact_duplicate_pairs(contents: Sequence[bytes | None]) -> np.ndarray:
    """Pairs (first occurrence, later copy) of identical byte strings; ``None`` never matches."""
    first: dict[str, int] = {}
    pairs = []
    for i, data in enumerate(contents):
        if data is None:
            continue
        key = hashlib.sha256(data).hexdigest()
        if key in first:
            pairs.append((first[key], i))
        else:
            first[key] = i
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def phash_bits(images: Sequence) -> np.ndarray:
    """``(n, 64)`` bool pHash bits of PIL images (``None`` -> all False, excluded later)."""
    import imagehash

    bits = np.zeros((len(images), 64), dtype=bool)
    for i, img in enumerate(images):
        if img is not None:
            bits[i] = imagehash.phash(img).hash.ravel()
    return bits


def perceptual_duplicate_pairs(bits: np.ndarray, max_distance: int = DEFAULT_PHASH_DISTANCE,
                               valid: np.ndarray | None = None, block: int = 2048) -> np.ndarray:
    """Pairs ``i < j`` whose pHash bits differ in at most ``max_distance`` places (rows where
    ``valid`` is False never pair). Blocked, so memory stays ``block * n``."""
    b = bits.astype(np.float32)
    nb = 1.0 - b
    valid = np.ones(len(b), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    out = []
    for start in range(0, len(b), block):
        # Hamming distance as two matrix products: bits set in i but not j, plus the reverse.
        dist = b[start:start + block] @ nb.T + nb[start:start + block] @ b.T
        i, j = np.nonzero(dist <= max_distance + 0.5)
        i = i + start
        keep = (i < j) & valid[i] & valid[j]
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), dtype=np.int64)


@dataclass
class DedupResult:
    """Clusters of indices into ``paths`` per method, plus the files that could not be read."""

    paths: list[str]
    clusters: dict[str, list[list[int]]] = field(default_factory=dict)
    unreadable: dict[int, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Describe the result as a JSON-ready dict, with file paths in place of indices.

        Returns:
            ``{"files": n, "settings": {...}, "clusters": {method: [[path, ...], ...]},
            "duplicates": {method: files beyond the first of each cluster}, "unreadable":
            [{"path", "reason"}, ...]}``; ``duplicates`` counts how many files could be removed.
        """
        return {
            "files": len(self.paths),
            "settings": self.settings,
            "clusters": {
                method: [[self.paths[i] for i in cluster] for cluster in found]
                for method, found in self.clusters.items()
            },
            "duplicates": {method: sum(len(c) - 1 for c in found) for method, found in self.clusters.items()},
            "unreadable": [{"path": self.paths[i], "reason": r} for i, r in sorted(self.unreadable.items())],
        }


def find_image_files(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively, sorted); a file path is returned as is."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_duplicates(
    paths: Sequence[str | Path],
    embeddings: np.ndarray | None = None,
    phash_distance: int = DEFAULT_PHASH_DISTANCE,
    cosine: float = DEFAULT_COSINE,
) -> DedupResult:
    """Exact, perceptual and (when ``embeddings (n, d)`` aligned with ``paths`` are given)
    embedding duplicate clusters of image files."""
    from mmrank.features.visual import decode_images, read_image_files

    contents, reasons = read_image_files(paths)
    readable = [i for i, c in enumerate(contents) if c is not None]
    images, failures = decode_images([contents[i] for i in readable])
    decoded: list = [None] * len(paths)
    unreadable = dict(reasons)
    for pos, i in enumerate(readable):
        decoded[i] = images[pos]
        if pos in failures:
            unreadable[i] = failures[pos]
    valid = np.array([img is not None for img in decoded], dtype=bool)
    n = len(paths)
    result = DedupResult(
        paths=[str(p) for p in paths], unreadable=unreadable,
        settings={"phash_max_hamming": phash_distance, "embedding_min_cosine": cosine,
                  "embedding": embeddings is not None},
    )
    result.clusters["exact"] = clusters_from_pairs(n, exact_duplicate_pairs(contents))
    result.clusters["perceptual"] = clusters_from_pairs(
        n, perceptual_duplicate_pairs(phash_bits(decoded), phash_distance, valid))
    if embeddings is not None:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.shape[0] != n:
            raise ValueError(f"{emb.shape[0]} embedding rows for {n} files")
        pairs = near_duplicate_pairs(emb, None, cosine)
        result.clusters["embedding"] = clusters_from_pairs(n, pairs)
    return result
