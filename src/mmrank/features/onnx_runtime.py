"""Run a torch image encoder through ONNX Runtime, only where it gives the same numbers.

ONNX Runtime's CPU kernels (fused convolution + batch norm + activation, depthwise convolutions)
run mobile convolutional networks several times faster than eager torch on a small CPU (P8:
benchmarks/p8_image_features.py). This module exports a ``torch.nn.Module`` once (the file is
cached by the caller's key), opens an inference session with the caller's thread count, and
:func:`check_against_torch` compares the session with the torch forward on a fixed probe batch:
a session that differs by more than ``tolerance`` is not used.

Needs ``onnxruntime`` (inference) and ``onnx`` (torch's exporter writes with it), both mmrank
dependencies; where they are missing :func:`onnx_runtime_available` is False and callers keep torch.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from mmrank.atomic_io import atomic_write_bytes

OPSET = 17


def onnx_runtime_available() -> bool:
    """True when both ``onnxruntime`` and ``onnx`` (needed to export) are importable."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def export_onnx(module, forward: Callable, example, path: Path | None = None) -> bytes:
    """The ONNX model of ``forward(module, x)`` (traced; batch axis dynamic), read from ``path`` when
    it exists.

    Args:
        module: the eval-mode ``torch.nn.Module`` whose weights ``forward`` uses.
        forward: ``forward(module, x tensor) -> tensor``, e.g. a model's pooled-feature path.
        example: an example input (its shape beyond the batch axis is fixed in the graph).
        path: where the exported file is kept (written atomically); None exports in memory only.
            The caller names it so that it changes with the weights and the torch version.

    Returns:
        The serialized ONNX model.
    """
    if path is not None and path.is_file():
        return path.read_bytes()
    import torch

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module

        def forward(self, x):
            return forward(self.net, x)

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(Traced().eval(), (example,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=OPSET, dynamo=False)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


class OrtRunner:
    """An ONNX Runtime CPU session: ``runner(x float32 ndarray) -> ndarray``."""

    def __init__(self, model: bytes, threads: int) -> None:
        """Open a session on ``model`` with ``threads`` intra-op threads (one inter-op thread).

        Args:
            model: serialized ONNX (from :func:`export_onnx`).
            threads: CPU threads for one call (the caller's torch thread count, so ``heavy`` and
                ``--threads`` limits hold for both backends).
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.threads = options.intra_op_num_threads

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run the model on one batch.

        Args:
            x: float32 input, batch first.

        Returns:
            The model's output as float32.
        """
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0].astype(np.float32, copy=False)


def check_against_torch(runner: Callable[[np.ndarray], np.ndarray], reference: Callable[[np.ndarray], np.ndarray],
                        probe: np.ndarray) -> float:
    """Largest absolute difference between ``runner`` and ``reference`` on ``probe``.

    Args:
        runner: the candidate backend.
        reference: the torch forward it must reproduce.
        probe: a float32 input batch.

    Returns:
        ``max |runner(probe) - reference(probe)|`` (inf when the shapes differ).
    """
    got, want = runner(probe), reference(probe)
    return float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
