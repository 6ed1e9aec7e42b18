"""CoTRR-Stable: a cross-modal transformer reranker over modality tokens.

Per candidate, every modality (and every query feature, broadcast to its candidates) becomes a
token: ``Linear(d_m → d) + modality embedding → LayerNorm``. ``n_layers`` pre-norm blocks of
``n_heads``-head self-attention (+ optional FFN) mix the tokens; an attention pool (a learned
query over the tokens) makes one vector per candidate; an MLP gives the score, divided by a
learnable temperature. With ``list_context`` one more block attends *across the candidates of
one query* (masked, allRank-style), so a candidate's score can depend on what else is listed.

LETOR data has one 46-d modality, which would make token attention degenerate (one token).
``token_groups="auto"`` therefore splits a 46-d ``letor`` modality into its feature groups
(body, anchor, title, url, whole-document fields + link/structure features; LETOR 4.0 feature
list), so attention has six tokens to weigh. Any modality can be split by an explicit
``token_groups: {modality: {token: [column, ...]}}``.

The module (:class:`CoTRRNet`) knows nothing about optimisers or devices; the ranker
(:class:`CoTRR`) follows the Ranker protocol and delegates training to ``mmrank.train``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mmrank.config import Strict
from mmrank.models.neural import NeuralRanker


class Block(nn.Module):
    """Pre-norm self-attention (+ optional FFN) with residuals; returns the attention map too."""

    def __init__(self, d: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.ffn = (
            nn.Sequential(nn.LayerNorm(d), nn.Linear(d, ffn_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_mult * d, d))
            if ffn_mult else None
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None, need_weights: bool = False):
        """Apply one pre-norm attention block (and its FFN, if any) with residual connections.

        Args:
            x: (N, T, d) sequences (tokens of a candidate, or candidates of a query).
            pad: (N, T) bool, True for slots attention must ignore; None attends everywhere.
            need_weights: also return the head-averaged attention map (costs memory).

        Returns:
            ``(x, w)``: (N, T, d) updated sequences and the (N, T, T) attention map, or None when
            ``need_weights`` is False.
        """
        h = self.norm(x)
        a, w = self.attn(h, h, h, key_padding_mask=pad, need_weights=need_weights)
        x = x + self.drop(a)
        if self.ffn is not None:
            x = x + self.drop(self.ffn(x))
        return x, w


class CoTRRNet(nn.Module):
    """Shapes: input ``x (B, L, D)`` (token columns side by side), ``mask (B, L)`` bool →
    ``scores (B, L)``. Input normalisation (training mean/std) lives in buffers, so the
    safetensors file is the whole model."""

    def __init__(self, token_dims: list[int], d_model: int = 256, n_layers: int = 2, n_heads: int = 8,
                 ffn_mult: int = 2, dropout: float = 0.1, list_context: bool = False, mlp_hidden: int = 256,
                 init_temperature: float = 1.0) -> None:
        super().__init__()
        self.token_dims = list(token_dims)
        bounds = np.concatenate([[0], np.cumsum(self.token_dims)])
        self.slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        n_tok, total = len(token_dims), int(bounds[-1])
        self.register_buffer("in_mean", torch.zeros(total))
        self.register_buffer("in_std", torch.ones(total))
        self.proj = nn.ModuleList(nn.Linear(d, d_model) for d in token_dims)
        self.token_emb = nn.Parameter(torch.randn(n_tok, d_model) * 0.02)
        self.token_norm = nn.LayerNorm(d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, ffn_mult, dropout) for _ in range(n_layers))
        self.pool_query = nn.Parameter(torch.randn(d_model) * 0.02)
        self.pool_norm = nn.LayerNorm(d_model)
        self.context = Block(d_model, n_heads, ffn_mult, dropout) if list_context else None
        self.head = nn.Sequential(nn.Linear(d_model, mlp_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_hidden, 1))
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(init_temperature))))

    def token_content(self, x: torch.Tensor) -> torch.Tensor:
        """Projected token content ``(B, L, T, d)`` before the modality embedding."""
        x = (x - self.in_mean) / self.in_std
        return torch.stack([p(x[..., a:b]) for p, (a, b) in zip(self.proj, self.slices)], dim=-2)

    def encode(self, content: torch.Tensor, mask: torch.Tensor, need_weights: bool = False) -> dict[str, torch.Tensor]:
        """Token mixing + pooling (+ list context). Returns ``tokens (B, L, T, d)``, ``pooled
        (B, L, d)``, ``pool_weights (B, L, T)`` and ``hidden (B, L, d)`` (what the head reads)."""
        B, L, T, d = content.shape
        h = self.token_norm(content + self.token_emb).reshape(B * L, T, d)
        for block in self.blocks:
            h, _ = block(h)
        w = torch.softmax(h @ self.pool_query / d**0.5, dim=-1)  # (B*L, T)
        pooled = self.pool_norm((w.unsqueeze(-1) * h).sum(dim=1)).reshape(B, L, d)
        hidden = pooled
        if self.context is not None:
            pad = ~mask.bool()
            pad = pad & pad.sum(1, keepdim=True).ne(L)  # an all-padding row would give NaN; let it see itself
            hidden, _ = self.context(pooled, pad)
        return {"tokens": h.reshape(B, L, T, d), "pooled": pooled, "hidden": hidden, "pool_weights": w.reshape(B, L, T)}

    def score_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """Turn the per-candidate hidden vectors into scores: MLP head divided by the learned temperature.

        The temperature is kept as ``log T``, so it stays positive whatever the optimiser does.

        Args:
            hidden: (B, L, d_model), the ``hidden`` output of :meth:`encode`.

        Returns:
            (B, L) scores (padded slots hold values too; callers mask them).
        """
        return self.head(hidden).squeeze(-1) / self.log_temperature.exp()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(scores (B, L), aux_losses {name: scalar})``; CoTRR has no auxiliary losses."""
        state = self.encode(self.token_content(x), mask)
        return self.score_hidden(state["hidden"]), {}


class CoTRRParams(Strict):
    d_model: int = Field(256, ge=8)
    n_layers: int = Field(2, ge=0)
    n_heads: int = Field(8, ge=1)
    ffn_mult: int = Field(2, ge=0, description="FFN width as a multiple of d_model; 0 = no FFN")
    dropout: float = Field(0.1, ge=0, lt=1)
    # On by default: on MQ2008 (5 folds) it beat the same model without it in 4 of 5 folds,
    # mean nDCG@10 0.779 vs 0.770 (benchmarks/results/rerankers.md, P4).
    list_context: bool = True
    mlp_hidden: int = Field(256, ge=1)
    init_temperature: float = Field(1.0, gt=0)
    token_groups: Literal["auto", "none"] | dict[str, dict[str, list[int]]] = "auto"
    modalities: list[str] | None = None
    use_query_features: bool = True
    score_batch_queries: int = Field(64, ge=1)
    # bf16 doubles the CPU's matrix throughput (AVX-512 BF16) but moves scores at the third digit,
    # which reorders candidates on real data (BENCHMARKS.md, P1): opt-in only.
    score_precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="precision of the matrix products when scoring (fp32, or bf16 — faster, changes rankings)")
    # ONNX Runtime runs the same float32 arithmetic about 1.9x faster than eager torch on the dev box
    # and keeps the top-10 order on real data (BENCHMARKS.md, P1); torch is the fallback and bf16's engine.
    score_engine: Literal["auto", "onnxruntime", "torch"] = Field(
        "auto", description="scoring engine: auto (ONNX Runtime for fp32, torch for bf16), onnxruntime or torch")
    # Near-ties: candidates whose fp32 scores differ by about 1e-7 can swap places between any two fp32
    # computations (2 of 2,756 ML-100K queries did between the fused path and the module forward);
    # queries with such a near-tie among their first positions are scored again by the module forward.
    # 3e-5: over twice the largest gap two fp32 paths can open (each was within 6.3e-6 of the module on
    # the gate's models), and few enough queries flagged (about 1-2%) to keep the fast path fast.
    score_tie_tolerance: float = Field(
        3e-5, ge=0, description="fp32: re-score with the module forward queries whose leading scores lie closer than this (0 = off)")
    score_tie_depth: int = Field(10, ge=1, description="how many leading positions the near-tie check covers")


class CoTRR(NeuralRanker):
    """The CoTRR-Stable reranker (see the module docstring)."""

    kind = "cotrr"
    Params = CoTRRParams
    network_class = CoTRRNet
