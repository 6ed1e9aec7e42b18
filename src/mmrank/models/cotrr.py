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

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mmrank.config import Strict, validate_config
from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError, DataError
from mmrank.models.storage import load_tensors, save_tensors

LETOR_FIELDS = ("body", "anchor", "title", "url", "whole")
# LETOR 4.0: features 1-40 are 8 measures (TF, IDF, TF*IDF, DL, BM25, LMIR.ABS/DIR/JM) × 5 fields
# in field order; 41-46 are PageRank, inlinks, outlinks, URL slashes, URL length, child pages.
LETOR46_GROUPS = {f: [m * 5 + i for m in range(8)] for i, f in enumerate(LETOR_FIELDS)} | {"link": list(range(40, 46))}


@dataclass(frozen=True)
class TokenSpec:
    """One input token: which matrix it reads (``source`` + ``modality``) and which columns."""

    name: str
    modality: str
    source: Literal["features", "query_features"]
    columns: tuple[int, ...]


def token_layout(rset: RankingSet, token_groups: Any, modalities: list[str] | None, use_query_features: bool) -> list[TokenSpec]:
    """The token list a model builds from a data set's modality names and dims."""
    names = sorted(rset.features) if modalities is None else list(modalities)
    missing = [m for m in names if m not in rset.features]
    if missing:
        raise DataError(f"the model wants modalities {missing} that the data lacks", hint=f"the data has {sorted(rset.features)}")
    tokens: list[TokenSpec] = []
    sources = [("features", m, rset.features[m].shape[1]) for m in names]
    if use_query_features:
        sources += [("query_features", m, d) for m, d in sorted(rset.query_feature_dims.items())]
    for source, mod, dim in sources:
        groups = _groups_for(mod, dim, token_groups)
        if groups is None:
            tokens.append(TokenSpec(mod if source == "features" else f"query.{mod}", mod, source, tuple(range(dim))))
            continue
        for gname, cols in groups.items():
            bad = [c for c in cols if not 0 <= c < dim]
            if bad:
                raise ConfigError(f"model.params.token_groups.{mod}.{gname}: columns {bad} outside 0..{dim - 1}")
            tokens.append(TokenSpec(f"{mod}.{gname}", mod, source, tuple(int(c) for c in cols)))
    if not tokens:
        raise DataError("no modality to build tokens from", hint="the data needs at least one feature matrix")
    return tokens


def _groups_for(mod: str, dim: int, token_groups: Any) -> dict[str, list[int]] | None:
    if token_groups == "auto":
        return LETOR46_GROUPS if (mod == "letor" and dim == 46) else None
    if token_groups in (None, "none"):
        return None
    return token_groups.get(mod)


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


class PaddedQueries:
    """A RankingSet as one flat ``(N, D)`` input matrix, padded per batch of queries on demand."""

    def __init__(self, x: np.ndarray, rset: RankingSet) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.labels = rset.labels.astype(np.float32)
        self.offsets = rset.offsets
        self.n_queries = rset.n_queries

    def __len__(self) -> int:
        return self.n_queries

    def batch(self, qidx: np.ndarray, max_len: int | None = None, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """``{"x": (B, L, D), "mask": (B, L), "labels": (B, L), "rows": (B, L) int (-1 = pad)}``.
        Lists longer than ``max_len`` keep a random ``max_len`` subset (training only)."""
        rows = []
        for q in np.asarray(qidx, dtype=np.int64):
            r = np.arange(self.offsets[q], self.offsets[q + 1])
            if max_len is not None and len(r) > max_len:
                r = np.sort((rng or np.random.default_rng()).choice(r, size=max_len, replace=False))
            rows.append(r)
        L = max((len(r) for r in rows), default=0)
        idx = np.full((len(rows), max(L, 1)), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            idx[i, : len(r)] = r
        mask = idx >= 0
        safe = np.where(mask, idx, 0)
        return {
            "x": torch.from_numpy(self.x[safe] * mask[..., None]),
            "mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(self.labels[safe] * mask),
            "rows": torch.from_numpy(idx),
        }


class NeuralRanker:
    """Ranker-protocol shell around a torch network: parameters, token layout, fit/score/save/load.

    Subclasses set ``kind``, ``Params`` (a pydantic model) and ``network_class``."""

    kind = "neural"
    Params: type[Strict] = CoTRRParams
    network_class: type[nn.Module] = CoTRRNet

    def __init__(self, **params: Any) -> None:
        self.params = validate_config(self.Params, params, f"model.params ({self.kind})")
        self.layout_: list[TokenSpec] | None = None
        self.network_: nn.Module | None = None
        self.history_: list[dict] = []

    def get_params(self) -> dict:
        return self.params.model_dump(mode="json")

    # -- data → tensors --------------------------------------------------------------------------
    def _check_dims(self, rset: RankingSet) -> None:
        for t in self.layout_:
            mats = rset.features if t.source == "features" else rset.query_features
            if t.modality not in mats:
                raise DataError(
                    f"the model needs {t.source.replace('_', ' ')} {t.modality!r}, which the data lacks",
                    hint=f"the data has modalities {rset.modality_dims} and query features {rset.query_feature_dims}",
                )
        want = self.input_dims()
        have = {k: v for k, v in {**{f"features.{m}": d for m, d in rset.modality_dims.items()},
                                  **{f"query_features.{m}": d for m, d in rset.query_feature_dims.items()}}.items() if k in want}
        if have != want:
            raise DataError(f"data modality dims {have} differ from the model's {want}", hint="score data with the modalities the model was trained on")

    def input_dims(self) -> dict[str, int]:
        dims: dict[str, int] = {}
        for t in self.layout_:
            key = f"{t.source}.{t.modality}"
            dims[key] = max(dims.get(key, 0), max(t.columns) + 1)
        return dims

    def input_matrix(self, rset: RankingSet) -> np.ndarray:
        """``(N, D)`` float32: every token's columns side by side, query features broadcast."""
        cols = []
        for t in self.layout_:
            if t.source == "features":
                cols.append(rset.features[t.modality][:, list(t.columns)])
            else:
                cols.append(rset.query_features[t.modality][rset.query_index][:, list(t.columns)])
        return np.concatenate(cols, axis=1).astype(np.float32)

    def padded_queries(self, rset: RankingSet) -> PaddedQueries:
        self._check_dims(rset)
        return PaddedQueries(self.input_matrix(rset), rset)

    # -- building ------------------------------------------------------------------------------
    def network_kwargs(self) -> dict:
        p = self.params
        return dict(d_model=p.d_model, n_layers=p.n_layers, n_heads=p.n_heads, ffn_mult=p.ffn_mult, dropout=p.dropout,
                    list_context=p.list_context, mlp_hidden=p.mlp_hidden, init_temperature=p.init_temperature)

    def _build_network(self) -> nn.Module:
        if self.params.d_model % self.params.n_heads:
            raise ConfigError(f"model.params.d_model: {self.params.d_model} is not divisible by n_heads={self.params.n_heads}")
        return self.network_class([len(t.columns) for t in self.layout_], **self.network_kwargs())

    def prepare(self, train: RankingSet) -> "NeuralRanker":
        """Build the token layout and a fresh network from the training data (seed torch first)."""
        p = self.params
        self.layout_ = token_layout(train, p.token_groups, p.modalities, p.use_query_features)
        self.network_ = self._build_network()
        x = self.input_matrix(train)
        mean, std = x.mean(axis=0), x.std(axis=0)
        self.network_.in_mean.copy_(torch.from_numpy(mean))
        self.network_.in_std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))
        return self

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.network_.parameters())

    # -- protocol ------------------------------------------------------------------------------
    def fit(self, train: RankingSet, valid: RankingSet | None = None, settings: Any = None, **fit_options: Any) -> "NeuralRanker":
        """Train with ``mmrank.train`` (Lightning). Imported here, not at module top, so that loading
        and scoring a model never imports the training stack (the server stays small)."""
        from mmrank.train.fit import fit_ranker

        fit_ranker(self, train, valid, settings, **fit_options)
        return self

    def _require_fitted(self) -> None:
        if self.network_ is None:
            raise DataError(f"{self.kind} is not fitted", hint="call fit() or load a trained run")

    def _forward_all(self, rset: RankingSet, fn) -> list:
        """Apply ``fn(batch) -> (B, L, ...) tensor`` to query chunks; return per-chunk (rows, values)."""
        self._require_fitted()
        data = self.padded_queries(rset)
        out = []
        bs = self.params.score_batch_queries
        for start in range(0, rset.n_queries, bs):
            batch = data.batch(np.arange(start, min(start + bs, rset.n_queries)))
            values = fn(batch)
            m = batch["mask"].numpy()
            out.append((batch["rows"].numpy()[m], values.detach().numpy()[m]))
        return out

    def _gather(self, rset: RankingSet, chunks: list, trailing: tuple = ()) -> np.ndarray:
        result = np.zeros((rset.n_candidates,) + trailing, dtype=np.float64)
        for rows, vals in chunks:
            result[rows] = vals
        return result

    @torch.no_grad()
    def score(self, rset: RankingSet) -> np.ndarray:
        net = self.network_
        self._require_fitted()
        was = net.training
        net.eval()
        try:
            return self._gather(rset, self._forward_all(rset, lambda b: net(b["x"], b["mask"])[0]))
        finally:
            net.train(was)

    @torch.no_grad()
    def score_with_uncertainty(self, rset: RankingSet, n_passes: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """MC-dropout (Gal & Ghahramani 2016): ``n_passes`` stochastic forward passes with dropout
        on; returns per-candidate ``(mean, std)``. Pure for a given ``seed``."""
        self._require_fitted()
        net = self.network_
        was = net.training
        net.eval()
        for m in net.modules():
            if isinstance(m, (nn.Dropout, nn.MultiheadAttention)):
                m.train()
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            passes = np.stack([self._gather(rset, self._forward_all(rset, lambda b: net(b["x"], b["mask"])[0])) for _ in range(n_passes)])
        finally:
            torch.random.set_rng_state(gen_state)
            net.train(was)
        return passes.mean(axis=0), passes.std(axis=0)

    @torch.no_grad()
    def attention_share(self, rset: RankingSet, by: Literal["modality", "token"] = "modality") -> dict[str, float]:
        """Mean attention-pool weight each modality (or token) receives over all candidates; the
        shares sum to 1. Feature-group tokens of one modality add up to that modality's share."""
        self._require_fitted()
        net = self.network_
        was = net.training
        net.eval()
        try:
            chunks = self._forward_all(rset, lambda b: net.encode(net.token_content(b["x"]), b["mask"])["pool_weights"])
        finally:
            net.train(was)
        weights = self._gather(rset, chunks, (len(self.layout_),)).mean(axis=0) if rset.n_candidates else np.zeros(len(self.layout_))
        share: dict[str, float] = {}
        for t, w in zip(self.layout_, weights):
            key = t.name if by == "token" else (t.modality if t.source == "features" else f"query.{t.modality}")
            share[key] = share.get(key, 0.0) + float(w)
        return share

    # -- storage -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        self._require_fitted()
        tensors = {k: v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()}
        meta = {
            "params": self.get_params(),
            "layout": [asdict(t) | {"columns": list(t.columns)} for t in self.layout_],
            "input_dims": self.input_dims(),
            "n_parameters": self.n_parameters(),
            "history": self.history_,
        }
        save_tensors(directory, self.kind, tensors, meta)

    @classmethod
    def load(cls, directory: str | Path) -> "NeuralRanker":
        tensors, meta = load_tensors(directory, cls.kind)
        model = cls(**meta["params"])
        model.layout_ = [TokenSpec(t["name"], t["modality"], t["source"], tuple(t["columns"])) for t in meta["layout"]]
        model.network_ = model._build_network()
        model.network_.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
        model.network_.eval()
        model.history_ = meta.get("history", [])
        return model


class CoTRR(NeuralRanker):
    """The CoTRR-Stable reranker (see the module docstring)."""

    kind = "cotrr"
    Params = CoTRRParams
    network_class = CoTRRNet
