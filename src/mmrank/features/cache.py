"""A content-addressed cache of feature vectors: only what is missing gets computed.

Key = sha256 of the input's content (the file's bytes, or the text as UTF-8) — not its path or
name, so a renamed poster is still a hit and an edited one is a miss. The encoder's identity
(``encoder_id``: model name, checkpoint hash, options) and a ``version`` (bumped when the
feature code changes meaning) pick the cache folder, so two encoders never share vectors.

Layout: ``ROOT/<encoder slug>-<hash of id+version>/<key[:2]>/<key>.npy`` plus ``encoder.json``
naming the encoder. One small NPY file per vector, written to a temp file in the same folder
and renamed into place: ``os.replace`` is atomic, so concurrent writers (two processes
featurising overlapping data) can only ever leave a complete file, and since equal keys hold
equal vectors it does not matter which writer wins. A file that does not load (e.g. a disk
that filled up) counts as a miss and is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text


def default_cache_dir() -> Path:
    """``$MMRANK_CACHE_DIR``, else ``$XDG_CACHE_HOME/mmrank/features``, else ``~/.cache/mmrank/features``."""
    if os.environ.get("MMRANK_CACHE_DIR"):
        return Path(os.environ["MMRANK_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mmrank" / "features"


def content_key(content: bytes | str) -> str:
    """sha256 hex of the bytes (text is encoded as UTF-8 first)."""
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    return hashlib.sha256(data).hexdigest()


class FeatureCache:
    """Vectors of one encoder (``encoder_id`` + ``version``) keyed by content hash."""

    def __init__(self, root: str | Path, encoder_id: str, version: str = "1") -> None:
        self.root = Path(root)
        self.encoder_id = encoder_id
        self.version = str(version)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id)[-60:].strip("_.") or "encoder"
        ident = hashlib.sha256(f"{encoder_id}\0{self.version}".encode()).hexdigest()[:16]
        self.dir = self.root / f"{slug}-{ident}"
        self._described = False

    def path(self, key: str) -> Path:
        """Return where the vector of ``key`` is (or would be) stored.

        The first two hex digits pick a subfolder so that no folder holds more than ~1/256 of the
        entries (large flat folders are slow on many file systems).

        Args:
            key: a :func:`content_key` hex digest.

        Returns:
            ``<dir>/<key[:2]>/<key>.npy``; the file need not exist.
        """
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """Load the cached vector of ``key``, or None on a miss.

        A file that is absent, truncated or not a plain NPY array (pickles are refused) is a miss, so
        the caller recomputes it instead of failing. The shape is not checked here;
        :func:`cached_compute` treats a vector of the wrong shape as a miss too.

        Args:
            key: a :func:`content_key` hex digest.

        Returns:
            The stored vector (float32 as written by :meth:`put`), or None.
        """
        path = self.path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent or unreadable: recompute

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store ``vector`` under ``key`` atomically, as float32 NPY.

        The first call also writes ``encoder.json`` naming the encoder, so a cache folder can be
        identified by a person. Concurrent writers of the same key are harmless: each writes a
        complete file and equal keys hold equal vectors.

        Args:
            key: a :func:`content_key` hex digest.
            vector: (dim,) vector; cast to float32.
        """
        if not self._described:
            atomic_write_text(self.dir / "encoder.json",
                              json.dumps({"encoder_id": self.encoder_id, "version": self.version}) + "\n")
            self._described = True
        buf = io.BytesIO()
        np.save(buf, np.asarray(vector, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self.path(key), buf.getvalue())


@dataclass
class CachedResult:
    """``matrix (n, dim)`` float32 (zero rows where ``mask`` is False), the per-row problems
    ``{row: (state, reason)}`` for masked rows, and how many rows came from the cache
    (``cache_hits``) or were computed now (``computed``): ``mask.sum() == cache_hits + computed``."""

    matrix: np.ndarray
    mask: np.ndarray
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)
    cache_hits: int = 0
    computed: int = 0


# compute(contents of the rows to encode) -> (vectors aligned with those rows, {position: reason})
ComputeFn = Callable[[list], tuple[list[np.ndarray | None], dict[int, str]]]


def cached_compute(
    contents: Sequence[bytes | str | None],
    compute: ComputeFn,
    dim: int,
    cache: FeatureCache | None = None,
    missing_reasons: dict[int, str] | None = None,
) -> CachedResult:
    """Vectors for ``contents``, computing only the cache misses (each distinct content once).

    ``None`` contents are missing inputs (reason from ``missing_reasons``). ``compute`` gets the
    distinct uncached contents and returns one vector per content, or ``None`` plus a reason for
    those it could not encode (``failed``); failures are not cached, so a fixed file is retried."""
    n = len(contents)
    matrix = np.zeros((n, dim), dtype=np.float32)
    mask = np.zeros(n, dtype=bool)
    problems: dict[int, tuple[str, str]] = {}
    missing_reasons = missing_reasons or {}
    rows_by_key: dict[str, list[int]] = {}
    content_of: dict[str, bytes | str] = {}
    for row, content in enumerate(contents):
        if content is None:
            problems[row] = ("missing", missing_reasons.get(row, "no input"))
            continue
        key = content_key(content)
        rows_by_key.setdefault(key, []).append(row)
        content_of[key] = content

    hits = computed = 0
    todo: list[str] = []
    for key, rows in rows_by_key.items():
        vec = cache.get(key) if cache is not None else None
        if vec is not None and vec.shape == (dim,):
            matrix[rows] = vec
            mask[rows] = True
            hits += len(rows)
        else:
            todo.append(key)

    if todo:
        vectors, failures = compute([content_of[k] for k in todo])
        for pos, key in enumerate(todo):
            rows = rows_by_key[key]
            vec = vectors[pos] if pos not in failures else None
            if vec is None:
                for r in rows:
                    problems[r] = ("failed", failures.get(pos, "encoder returned nothing"))
                continue
            vec = np.asarray(vec, dtype=np.float32)
            if vec.shape != (dim,):
                raise ValueError(f"encoder returned shape {vec.shape}, expected ({dim},)")
            matrix[rows] = vec
            mask[rows] = True
            computed += len(rows)
            if cache is not None:
                cache.put(key, vec)
    return CachedResult(matrix, mask, problems, cache_hits=hits, computed=computed)


def cached_texts(
    texts: Sequence[str | None], encode: Callable[[list[str]], np.ndarray], dim: int,
    cache: FeatureCache | None = None,
) -> CachedResult:
    """``cached_compute`` for texts: ``None`` or blank texts are ``missing`` ("empty text")."""
    contents: list[str | None] = [t if t is not None and t.strip() else None for t in texts]
    reasons = {i: "empty text" for i, t in enumerate(contents) if t is None}
    return cached_compute(contents, lambda todo: (list(encode(todo)), {}), dim, cache, reasons)


def cached_outputs(
    root: str | Path | None, key: str, out_dir: str | Path, names: Sequence[str], build: Callable[[Path], None],
) -> bool:
    """Files ``names`` in ``out_dir``, produced by ``build(out_dir)`` or copied from the cache.

    ``key`` must hash every input of ``build`` (data bytes, settings, code version). On a miss the
    built files are copied into ``ROOT/outputs/<key>/`` (temp folder + rename, so a concurrent
    or interrupted run never leaves a half entry). Returns True on a cache hit."""
    out_dir = Path(out_dir)
    entry = None if root is None else Path(root) / "outputs" / key
    if entry is not None and all((entry / n).is_file() for n in names):
        out_dir.mkdir(parents=True, exist_ok=True)
        for n in names:
            tmp = out_dir / f".{n}.{os.getpid()}.tmp"
            shutil.copyfile(entry / n, tmp)
            os.replace(tmp, out_dir / n)
        return True
    build(out_dir)
    if entry is not None:
        staging = entry.parent / f".{key}.{os.getpid()}.tmp"
        staging.mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copyfile(out_dir / n, staging / n)
        try:
            os.replace(staging, entry)
        except OSError:  # another writer got there first: its entry is as good as ours
            shutil.rmtree(staging, ignore_errors=True)
    return False
