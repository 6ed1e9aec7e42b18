"""ONNX Runtime engine of the fused CoTRR/V2 scoring path (float32).

:class:`OnnxChunkScorer` exports the arithmetic of :class:`~mmrank.models.fused_scoring.FusedScorer`
(the same folded weights, the same operations) to an ONNX graph once, and scores chunks of queries
with an ONNX Runtime session. On the 2-core dev box it scores 100-candidate queries about 1.9x
faster than the same arithmetic in eager torch (benchmarks/results/rerankers.md, P1): ONNX
Runtime's own GEMM kernels and fused element-wise passes beat torch's operator-by-operator
dispatch at these small matrix sizes. It stays float32: scores differ from the torch path only in
the order floating-point sums are taken (about 1e-6), and the ranking-equality gate of
``benchmarks/p1_throughput.py`` checks the rankings on real data.

One graph serves every chunk shape: the candidate rows ``x (n, D)`` come flat; for the list-context
block they are laid out as ``(B queries, L slots)`` by ``pad_index`` (slot -> row; padding slots
read row 0), padded keys are hidden by an additive ``key_mask (B, 1, 1, L)`` (0 or -inf) and the
real slots come back by ``unpad_index``.
"""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class _ChunkGraph(nn.Module):
    """The fused scorer's float32 forward as a traceable module (exported once to ONNX)."""

    def __init__(self, fs) -> None:
        super().__init__()
        self.fs = fs

    @staticmethod
    def _ln(x: torch.Tensor, n) -> torch.Tensor:
        # the width from the weight, not from x: a static shape, as the exporter needs
        return F.layer_norm(x, (int(n.weight.shape[0]),), n.weight, n.bias, n.eps)

    @staticmethod
    def _mm(x: torch.Tensor, lin) -> torch.Tensor:
        return torch.addmm(lin.bias, x, lin.weight_t)

    def _ffn(self, x: torch.Tensor, blk) -> torch.Tensor:
        if blk.ffn_in is None:
            return x
        return x + self._mm(F.gelu(self._mm(self._ln(x, blk.ffn_norm), blk.ffn_in)), blk.ffn_out)

    def forward(self, x: torch.Tensor, pad_index: torch.Tensor | None = None, key_mask: torch.Tensor | None = None,
                unpad_index: torch.Tensor | None = None) -> torch.Tensor:
        fs = self.fs
        n = x.shape[0]
        d = fs.d_model
        T = len(fs.token_proj)
        tokens = torch.stack([self._mm(x[:, a:b], lin) for (a, b), lin in fs.token_proj], dim=1)  # (n, T, d)
        h = self._ln(tokens, fs.token_norm).reshape(n * T, d)
        for blk in fs.blocks:
            H = blk.heads
            qkv = self._mm(self._ln(h, blk.norm), blk.qkv).reshape(n, T, 3, H, d // H)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # query rows already scaled
            p = torch.softmax((q.unsqueeze(2) * k.unsqueeze(1)).sum(-1), dim=2)  # (n, Tq, Tk, H)
            a = (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2)  # (n, Tq, H, hd)
            h = self._ffn(h + self._mm(a.reshape(n * T, d), blk.out), blk)
        h = h.reshape(n, T, d)
        if T > 1:
            w = torch.softmax(h @ fs.pool_query, dim=-1)  # (n, T)
            pooled = (w.unsqueeze(-1) * h).sum(1)
        else:
            pooled = h[:, 0]
        pooled = self._ln(pooled, fs.pool_norm)
        blk = fs.context
        if blk is not None:
            B, L = key_mask.shape[0], key_mask.shape[3]
            H = blk.heads
            qkv = self._mm(self._ln(pooled, blk.norm), blk.qkv)[pad_index]  # (B*L, 3d)
            q, k, v = qkv.reshape(B, L, 3, H, d // H).permute(2, 0, 3, 1, 4)  # (B, H, L, hd) each
            att = torch.softmax(q @ k.transpose(-1, -2) + key_mask, dim=-1)
            a = (att @ v).permute(0, 2, 1, 3).reshape(B * L, d)[unpad_index]
            pooled = self._ffn(pooled + self._mm(a, blk.out), blk)
        hidden = F.gelu(self._mm(pooled, fs.head_in))
        return self._mm(hidden, fs.head_out).reshape(n) * fs.inv_temperature


class OnnxChunkScorer:
    """Scores chunks of queries of a :class:`FusedScorer`'s float32 snapshot with ONNX Runtime.

    The graph is exported on the first call; sessions are made per intra-op thread count and
    shared (``InferenceSession.run`` may be called from several threads at once).

    Args:
        fs: the float32 ``FusedScorer`` whose weights to use.
    """

    def __init__(self, fs) -> None:
        self.fs = fs
        self.context = fs.context is not None
        self._graph: bytes | None = None
        self._sessions: dict[int, object] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # sessions and the lock do not pickle (a model is copied or sent to a worker process): the
        # graph bytes travel, sessions are made again on first use
        return {"fs": self.fs, "context": self.context, "_graph": self._graph}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _sessions={}, _lock=threading.Lock())

    def _export(self) -> bytes:
        g = _ChunkGraph(self.fs).eval()
        d_in = self.fs.token_proj[-1][0][1]
        n = 6  # two queries of 3: every dimension the graph leaves dynamic is exercised
        args = (torch.zeros(n, d_in),)
        names, axes = ["x"], {"x": {0: "n"}, "scores": {0: "n"}}
        if self.context:
            args += (torch.arange(n), torch.zeros(2, 1, 1, 3), torch.arange(n))
            names += ["pad_index", "key_mask", "unpad_index"]
            axes.update(pad_index={0: "slots"}, key_mask={0: "B", 3: "L"}, unpad_index={0: "n"})
        buf = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's tracer warnings about shapes read as ints
            torch.onnx.export(g, args, buf, input_names=names, output_names=["scores"], dynamic_axes=axes,
                              opset_version=17, dynamo=False)
        return buf.getvalue()

    @property
    def exported(self) -> bool:
        """Whether the ONNX graph has been exported (it is, once any session was made)."""
        return self._graph is not None

    def session(self, threads: int):
        """The ONNX Runtime session with ``threads`` intra-op threads (made on first use)."""
        with self._lock:
            s = self._sessions.get(threads)
            if s is None:
                import onnxruntime as ort

                if self._graph is None:
                    self._graph = self._export()
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                # no busy-waiting between runs: on a shared box (a server's other requests, the
                # chunk workers) a spinning pool thread takes the core another job needs
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                s = self._sessions[threads] = ort.InferenceSession(self._graph, opts, providers=["CPUExecutionProvider"])
            return s

    def feeds(self, x: np.ndarray, sizes: list[int]) -> dict[str, np.ndarray]:
        """The graph inputs for candidate rows ``x (n, D)`` of queries of ``sizes`` (all > 0)."""
        out = {"x": np.ascontiguousarray(x, dtype=np.float32)}
        if self.context:
            B, L = len(sizes), max(sizes)
            lens = np.asarray(sizes, dtype=np.int64)
            real = np.arange(L)[None, :] < lens[:, None]  # (B, L)
            pad = np.zeros((B, L), dtype=np.int64)
            pad[real] = np.arange(len(x))
            out["pad_index"] = pad.reshape(-1)
            out["key_mask"] = np.where(real, 0.0, -np.inf).astype(np.float32)[:, None, None, :]
            out["unpad_index"] = np.flatnonzero(real.reshape(-1)).astype(np.int64)
        return out

    def score(self, x: np.ndarray, sizes: list[int], threads: int = 1) -> np.ndarray:
        """Scores ``(n,)`` float32 of one chunk: rows ``x (n, D)`` of queries of ``sizes``."""
        return self.session(threads).run(None, self.feeds(x, sizes))[0]
