"""Model files: tensors in ``model.safetensors``, everything else in ``model.json``.

``model.json`` records the sha256 of the tensor file; loading recomputes it and refuses a file
that changed after it was written. No pickle anywhere: safetensors holds only raw tensors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.errors import DataError

TENSORS = "model.safetensors"
MANIFEST = "model.json"


def sha256_bytes(data: bytes) -> str:
    """Return the sha256 hex digest of ``data`` (the checksum ``model.json`` records)."""
    return hashlib.sha256(data).hexdigest()


def save_tensors(directory: str | Path, kind: str, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write ``model.safetensors`` (numpy arrays) + ``model.json`` (``kind``, ``meta``, checksum)."""
    from safetensors.numpy import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    atomic_write_bytes(directory / TENSORS, data)
    manifest = {"kind": kind, **meta, "files": {TENSORS: sha256_bytes(data)}}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: str | Path, kind: str | None = None) -> dict:
    """Read a run directory's ``model.json``, optionally checking which model kind wrote it.

    Args:
        directory: the run (model) directory.
        kind: the expected ``kind``; None accepts any.

    Returns:
        The manifest dict: ``kind``, the model's own metadata and ``files`` (checksums).

    Raises:
        DataError: when ``model.json`` is missing, unreadable or not JSON, or names another kind.
    """
    path = Path(directory) / MANIFEST
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the model description: {e}", path=path, hint="point at a run directory written by mmrank") from e
    if kind is not None and meta.get("kind") != kind:
        raise DataError(f"model kind is {meta.get('kind')!r}, expected {kind!r}", path=path)
    return meta


def load_tensors(directory: str | Path, kind: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read back what ``save_tensors`` wrote, checking the tensor file's sha256 first."""
    from safetensors.numpy import load

    directory = Path(directory)
    meta = read_manifest(directory, kind)
    path = directory / TENSORS
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read model tensors: {e}", path=path) from e
    expected = meta.get("files", {}).get(TENSORS)
    if expected != sha256_bytes(data):
        raise DataError(
            "checksum mismatch: the model file changed after it was written", path=path,
            hint="retrain, or restore the run directory from where it was written",
        )
    return load(data), meta
