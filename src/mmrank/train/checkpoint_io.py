"""Lightning training-state checkpoints without pickle.

Lightning's default ``.ckpt`` is ``torch.save`` output, i.e. a pickle. This CheckpointIO writes the
same checkpoint dictionary as one safetensors file instead: every tensor (and numpy array) goes
into the tensor table, everything else (loop counters, optimizer hyper-parameters, callback
states, RNG tuples) into a JSON tree stored in the file's metadata, with small markers for the
types JSON lacks (tuples, non-string dict keys, numpy arrays, tensors). Loading rebuilds the
dictionary; a value of any other type is refused at save time instead of being pickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import CheckpointIO

from mmrank.errors import DataError

_TREE = "mmrank_checkpoint_tree"


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__ndarray__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _encode(v, tensors) for k, v in value.items()}}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint holds a {type(value).__name__}, which would need pickle: {value!r:.80}")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return tensors[value["__ndarray__"]].numpy()
    if "__dict__" in value:
        return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    if "__float__" in value:
        return float(value["__float__"])
    raise ValueError(f"unknown checkpoint marker {sorted(value)}")


def save_state(checkpoint: dict, path: str | Path) -> None:
    """Write ``checkpoint`` atomically as safetensors + JSON tree (temp file + rename)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(checkpoint, tensors)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # safetensors refuses tensors that share storage; clone keeps each one independent.
    save_file({k: v.clone() for k, v in tensors.items()}, str(tmp), metadata={_TREE: json.dumps(tree)})
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict:
    """Read a checkpoint ``save_state`` wrote; DataError for any other file."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for foreign files
        raise DataError(f"not an mmrank training checkpoint: {e}", path=path, hint="resume from the run's own logs/checkpoints") from e
    if _TREE not in meta:
        raise DataError("checkpoint lacks its state tree", path=path, hint="resume from the run's own logs/checkpoints")
    return _decode(json.loads(meta[_TREE]), tensors)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning plugin: ``Trainer(plugins=[SafetensorsCheckpointIO()])``."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        """Lightning hook: write the checkpoint dict as safetensors + JSON."""
        save_state(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:  # never unpickles anyway
        """Lightning hook: read a checkpoint back (never unpickles)."""
        return load_state(path)

    def remove_checkpoint(self, path) -> None:
        """Lightning hook: delete a superseded checkpoint file."""
        Path(path).unlink(missing_ok=True)
