"""The inference-only scoring path of the token-transformer rerankers (CoTRR, V2 fusion).

``FusedScorer(net)`` reads a :class:`~mmrank.models.cotrr.CoTRRNet`'s weights (a V2
``FusionNet`` scores on the same path: its extra heads exist for training only) and scores a flat
``(N, D)`` candidate matrix with query bounds ``offsets``. Same function as ``net.eval()`` +
``net(x, mask)``, organised for speed:

* no padding in the per-candidate part: token projection, token blocks and pooling run on the
  ``N`` real candidates only; queries are padded only inside the list-context attention;
* input normalisation and the modality embeddings are folded into the projection weights
  (``W·((x − μ)/σ) + b + e = (W/σ)·x + (b + e − W·μ/σ)``): two passes over the input fewer;
* attention among a candidate's few tokens (3 on a Step5 layout, 6 on LETOR) as broadcast products
  over the token pairs: the batched-GEMM path spends more on dispatch than on arithmetic for 3x3
  score matrices;
* queries go through in chunks of about ``chunk_candidates`` candidates, so a chunk's activations
  stay in the core's cache (1 MB of L2 on the dev box);
* ``torch.inference_mode``: no autograd bookkeeping.

Floating point sums are taken in another order than the module's, so scores agree with the module's
to about 1e-6 relative, not bit for bit (``tests/unit/test_fused_scoring.py`` compares them and
their rankings).

``engine``: ``"onnxruntime"`` runs the float32 arithmetic above as an ONNX Runtime graph
(:mod:`mmrank.models.onnx_scoring`; about 1.9x the eager torch path on the dev box, P1), ``"torch"``
in eager torch; ``"auto"`` (default) is ONNX Runtime for float32 and torch for bf16 (ONNX Runtime's
CPU kernels have no bf16 matrix product). Both engines compute the same function in float32 and
differ only in summation order.

``precision="bf16"`` runs the matrix products in bfloat16 (AVX-512 BF16 doubles the CPU's GEMM
throughput) with the residual stream, layer norms and softmaxes in float32. It changes scores at the
third significant digit and therefore rankings; it is opt-in only, and the ranking-equality gate of
``benchmarks/p1_throughput.py`` measures on real data whether it keeps the fp32 top-10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrank.torch_workers import map_chunks

Precision = Literal["fp32", "bf16"]
Engine = Literal["auto", "onnxruntime", "torch"]
ENGINES = ("auto", "onnxruntime", "torch")
# Largest n·T²·d (floats) for which token attention uses broadcast products (about 4 MB of temporaries).
_BROADCAST_MAX = 1 << 20
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class _Linear:
    weight_t: torch.Tensor  # (in, out), contiguous: addmm's fast layout
    bias: torch.Tensor


@dataclass(frozen=True)
class _Norm:
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float


@dataclass(frozen=True)
class _Block:
    norm: _Norm
    qkv: _Linear
    out: _Linear
    heads: int
    ffn_norm: _Norm | None
    ffn_in: _Linear | None
    ffn_out: _Linear | None


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> _Linear:
    w = weight.detach().float()
    b = torch.zeros(w.shape[0]) if bias is None else bias.detach().float()
    return _Linear(w.t().contiguous().to(dtype), b.contiguous())


def _norm(m: nn.LayerNorm) -> _Norm:
    return _Norm(m.weight.detach().float().clone(), m.bias.detach().float().clone(), m.eps)


def _block(b: nn.Module, dtype: torch.dtype) -> _Block:
    attn = b.attn
    ffn = b.ffn
    d = attn.embed_dim
    # the attention scale 1/sqrt(head dim) folded into the query rows: one pass fewer per block
    scale = torch.ones(3 * d)
    scale[:d] = (d // attn.num_heads) ** -0.5
    return _Block(
        norm=_norm(b.norm),
        qkv=_linear(attn.in_proj_weight.detach().float() * scale[:, None], attn.in_proj_bias.detach().float() * scale, dtype),
        out=_linear(attn.out_proj.weight, attn.out_proj.bias, dtype),
        heads=attn.num_heads,
        ffn_norm=None if ffn is None else _norm(ffn[0]),
        ffn_in=None if ffn is None else _linear(ffn[1].weight, ffn[1].bias, dtype),
        ffn_out=None if ffn is None else _linear(ffn[4].weight, ffn[4].bias, dtype),
    )


def weights_version(net: nn.Module) -> tuple:
    """A key that changes whenever any parameter or buffer of ``net`` is replaced or modified in
    place (optimiser steps and ``load_state_dict`` bump a tensor's version counter)."""
    return tuple((id(t), t._version) for t in (*net.parameters(), *net.buffers()))


class FusedScorer:
    """Scores candidates with a snapshot of a CoTRR/V2 network's weights (see the module docstring).

    Args:
        net: a ``CoTRRNet`` (or subclass); read once, never modified.
        precision: ``"fp32"`` (default) or ``"bf16"`` (matrix products in bfloat16; opt-in).
        chunk_candidates: about how many candidates one chunk of queries holds.
        engine: ``"auto"`` (ONNX Runtime for fp32, torch for bf16), ``"onnxruntime"`` (fp32 only)
            or ``"torch"``.
    """

    def __init__(self, net: nn.Module, precision: Precision = "fp32", chunk_candidates: int = 256,
                 engine: Engine = "auto") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r} — use one of {PRECISIONS}")
        if engine not in ENGINES:
            raise ValueError(f"engine={engine!r} — use one of {ENGINES}")
        if engine == "onnxruntime" and precision != "fp32":
            raise ValueError("engine='onnxruntime' scores in fp32 only; use engine='torch' for bf16")
        self.engine = ("onnxruntime" if precision == "fp32" else "torch") if engine == "auto" else engine
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        self.chunk_candidates = chunk_candidates
        self.version = weights_version(net)
        with torch.no_grad():
            self._read(net)
        self._onnx = None
        if self.engine == "onnxruntime":
            from mmrank.models.onnx_scoring import OnnxChunkScorer

            self._onnx = OnnxChunkScorer(self)

    @property
    def prepared(self) -> bool:
        """Whether the engine is ready to score (ONNX Runtime: graph exported); torch always is."""
        return self._onnx is None or self._onnx.exported

    def prepare(self, threads: int = 1) -> None:
        """Do now the one-off set-up that the first :meth:`score` call would do (ONNX Runtime: export
        the graph, about 1.4 s for the default CoTRR, and open a session with ``threads`` intra-op
        threads). A server calls this at load so that its first request does not pay it."""
        if self._onnx is not None:
            self._onnx.session(threads)

    def _read(self, net: nn.Module) -> None:
        std, mean = net.in_std.detach().float(), net.in_mean.detach().float()
        self.token_proj = []
        for (a, b), proj, emb in zip(net.slices, net.proj, net.token_emb.detach().float()):
            w = proj.weight.detach().float() / std[a:b]  # (d, d_in): divide each input column by its std
            bias = proj.bias.detach().float() + emb - w @ mean[a:b]
            self.token_proj.append(((a, b), _linear(w, bias, self.dtype)))
        self.d_model = net.token_emb.shape[1]
        self.token_norm = _norm(net.token_norm)
        self.blocks = [_block(b, self.dtype) for b in net.blocks]
        self.pool_query = (net.pool_query.detach().float() / self.d_model**0.5).contiguous()
        self.pool_norm = _norm(net.pool_norm)
        self.context = None if net.context is None else _block(net.context, self.dtype)
        self.head_in = _linear(net.head[0].weight, net.head[0].bias, self.dtype)
        self.head_out = _linear(net.head[3].weight, net.head[3].bias, torch.float32)
        self.inv_temperature = float(torch.exp(-net.log_temperature.detach().float()))

    # -- primitives ------------------------------------------------------------------------------
    def _mm(self, x: torch.Tensor, lin: _Linear) -> torch.Tensor:
        """``x @ W.T + b`` in the scorer's precision, float32 out."""
        if self.dtype is torch.float32:
            return torch.addmm(lin.bias, x, lin.weight_t)
        return torch.mm(x.to(self.dtype), lin.weight_t).float().add_(lin.bias)

    @staticmethod
    def _ln(x: torch.Tensor, n: _Norm) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), n.weight, n.bias, n.eps)

    def _ffn(self, x: torch.Tensor, blk: _Block) -> torch.Tensor:
        if blk.ffn_in is None:
            return x
        h = F.gelu(self._mm(self._ln(x, blk.ffn_norm), blk.ffn_in))
        return x + self._mm(h, blk.ffn_out)

    def _token_block(self, x: torch.Tensor, T: int, blk: _Block) -> torch.Tensor:
        """One block over every candidate's tokens: ``x (n·T, d)`` (token rows of a candidate
        adjacent) → ``(n·T, d)``."""
        nT, d = x.shape
        n, H = nT // T, blk.heads
        hd = d // H
        qkv = self._mm(self._ln(x, blk.norm), blk.qkv).reshape(n, T, 3, H, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (n, T, H, hd); q already scaled
        if n * T * T * d <= _BROADCAST_MAX:
            # all token pairs in two broadcast products: a few passes over cache-resident memory,
            # cheaper than dispatching n·H tiny matrix products
            p = torch.softmax((q.unsqueeze(2) * k.unsqueeze(1)).sum(-1), dim=2)  # (n, Tq, Tk, H)
            a = (p.unsqueeze(-1) * v.unsqueeze(1)).sum(2)  # (n, Tq, H, hd)
        else:  # many tokens: the broadcast temporaries would leave the cache
            p = torch.einsum("nihd,njhd->nhij", q, k).softmax(-1)
            a = torch.einsum("nhij,njhd->nihd", p, v)
        x = x + self._mm(a.reshape(nT, d), blk.out)
        return self._ffn(x, blk)

    def _context_block(self, h: torch.Tensor, sizes: list[int], blk: _Block) -> torch.Tensor:
        """Attention across the candidates of each query: ``h (n, d)`` flat, queries of ``sizes``."""
        n, d = h.shape
        H = blk.heads
        hd = d // H
        qkv = self._mm(self._ln(h, blk.norm), blk.qkv)  # (n, 3d)
        if len(sizes) == 1:  # one query: no padding, no mask
            q, k, v = qkv.reshape(1, n, 3, H, hd).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, scale=1.0).permute(0, 2, 1, 3).reshape(n, d)
        else:
            B, L = len(sizes), max(sizes)
            lens = torch.as_tensor(sizes)
            real = torch.arange(L)[None, :] < lens[:, None]  # (B, L)
            padded = qkv.new_zeros(B, L, 3 * d)
            padded[real] = qkv
            q, k, v = padded.reshape(B, L, 3, H, hd).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=real[:, None, None, :], scale=1.0)
            a = a.permute(0, 2, 1, 3)[real].reshape(n, d)
        h = h + self._mm(a, blk.out)
        return self._ffn(h, blk)

    # -- the forward ---------------------------------------------------------------------------
    def _chunk_scores(self, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        n = x.shape[0]
        T = len(self.token_proj)
        xin = x.to(self.dtype) if self.dtype is not torch.float32 else x
        tokens = torch.stack([self._mm_raw(xin[:, a:b], lin) for (a, b), lin in self.token_proj], dim=1)  # (n, T, d)
        h = self._ln(tokens, self.token_norm).reshape(n * T, -1)
        for blk in self.blocks:
            h = self._token_block(h, T, blk)
        h = h.reshape(n, T, -1)
        w = torch.softmax(h @ self.pool_query, dim=-1)  # (n, T)
        pooled = self._ln(torch.bmm(w.unsqueeze(1), h).squeeze(1) if T > 1 else h[:, 0], self.pool_norm)
        if self.context is not None:
            pooled = self._context_block(pooled, sizes, self.context)
        hidden = F.gelu(self._mm(pooled, self.head_in))
        return torch.addmm(self.head_out.bias, hidden, self.head_out.weight_t).reshape(n) * self.inv_temperature

    def _mm_raw(self, x: torch.Tensor, lin: _Linear) -> torch.Tensor:
        """The token projection: input already in the scorer's dtype (it is cast once per chunk)."""
        if self.dtype is torch.float32:
            return torch.addmm(lin.bias, x, lin.weight_t)
        return torch.mm(x, lin.weight_t).float().add_(lin.bias)

    def chunks(self, offsets: np.ndarray) -> list[tuple[int, int]]:
        """Query ranges ``[q0, q1)`` of about ``chunk_candidates`` candidates each (a query is never split)."""
        out, q0 = [], 0
        n_q = len(offsets) - 1
        while q0 < n_q:
            q1 = int(np.searchsorted(offsets, offsets[q0] + self.chunk_candidates, side="right")) - 1
            q1 = min(max(q1, q0 + 1), n_q)
            out.append((q0, q1))
            q0 = q1
        return out

    def score(self, x: np.ndarray | torch.Tensor, offsets: np.ndarray) -> np.ndarray:
        """Scores ``(N,)`` float32 of the flat candidate matrix ``x (N, D)`` whose queries are bounded
        by ``offsets (Q+1,)`` (CSR, as in ``RankingSet``).

        With more than one torch thread and more than one chunk, chunks are spread over that many
        single-threaded workers (``mmrank.torch_workers.map_chunks``); a single chunk (one query,
        as in serving) uses the caller's intra-op threads (on either engine).
        """
        x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        offsets = np.asarray(offsets, dtype=np.int64)
        out = torch.empty(x.shape[0], dtype=torch.float32)
        chunks = self.chunks(offsets)
        if self._onnx is not None:  # one chunk: the caller's threads; several: one thread per worker
            session_threads = torch.get_num_threads() if len(chunks) == 1 else 1
            self._onnx.session(session_threads)  # exported and made here, not in a worker
        xn = x.numpy()

        def run(chunk: tuple[int, int]) -> None:
            q0, q1 = chunk
            a, b = int(offsets[q0]), int(offsets[q1])
            if a < b:
                sizes = [s for s in np.diff(offsets[q0:q1 + 1]).tolist() if s > 0]
                if self._onnx is not None:
                    out[a:b] = torch.from_numpy(self._onnx.score(xn[a:b], sizes, session_threads))
                    return
                with torch.inference_mode():  # thread-local: entered in the thread that computes
                    out[a:b] = self._chunk_scores(x[a:b], sizes)

        map_chunks(run, chunks)
        return out.numpy()


def near_tie_queries(scores: np.ndarray, offsets: np.ndarray, depth: int = 10, tolerance: float = 3e-5) -> np.ndarray:
    """Queries whose top ``depth`` positions hold two scores closer than ``tolerance``.

    Two float32 computations of the same network (another summation order, another GEMM library)
    agree to about 1e-6 here, so only candidates whose scores lie that close can swap places
    between them. A query is flagged when, among its ``depth + 1`` best scores (the boundary
    candidate included), two neighbours differ by less than ``tolerance · max(1, max |score|)``.

    Args:
        scores: (N,) scores.
        offsets: (Q+1,) query bounds.
        depth: how many leading positions must keep their order.
        tolerance: the gap below which neighbours count as tied (relative to the query's score scale, at least 1).

    Returns:
        Indices of the flagged queries, ascending (int64).

    Example:
        >>> near_tie_queries(np.array([3.0, 2.0, 1.0, 0.5, 0.500001]), np.array([0, 3, 5]))
        array([1])
    """
    out = []
    for q, (a, b) in enumerate(zip(np.asarray(offsets[:-1]).tolist(), np.asarray(offsets[1:]).tolist())):
        if b - a < 2:
            continue
        s = scores[a:b]
        top = -np.sort(-s)[: depth + 1]
        if np.min(top[:-1] - top[1:]) < tolerance * max(1.0, float(np.abs(s).max())):
            out.append(q)
    return np.asarray(out, dtype=np.int64)


def ranking_agreement(reference: np.ndarray, other: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                      k: int = 10) -> dict[str, float]:
    """How far two score vectors of the same queries agree as rankings.

    The top-``k`` order of each query is compared (ties broken by candidate position, as every
    mmrank reorder does: a stable sort), and nDCG@k of each query is computed from both.

    Args:
        reference: (N,) scores of the reference path (e.g. fp32).
        other: (N,) scores of the path under test.
        offsets: (Q+1,) query bounds.
        labels: (N,) graded relevance.
        k: the cut-off.

    Returns:
        ``queries``, ``identical_top_k`` (queries whose top-k candidates come in the same order),
        ``share_identical`` (identical / queries) and ``max_abs_ndcg_diff`` (over queries).

    Example:
        >>> r = ranking_agreement(np.array([3., 2, 1]), np.array([3., 1, 2]), np.array([0, 3]), np.array([2, 1, 0]), k=2)
        >>> r["identical_top_k"], round(r["max_abs_ndcg_diff"], 4)
        (0, 0.0)
    """
    from mmrank.metrics import ndcg_at_k

    n_q = len(offsets) - 1
    identical = sum(
        np.array_equal(np.argsort(-reference[a:b], kind="stable")[:k], np.argsort(-other[a:b], kind="stable")[:k])
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())
    )
    diff = np.abs(ndcg_at_k(labels, reference, offsets, k) - ndcg_at_k(labels, other, offsets, k))
    worst = float(np.nanmax(diff)) if n_q else 0.0
    return {"queries": n_q, "identical_top_k": identical, "share_identical": identical / max(n_q, 1),
            "max_abs_ndcg_diff": worst}
