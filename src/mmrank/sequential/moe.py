"""SASRec with a hierarchical multimodal mixture-of-experts content tower.

Item side, bottom to top:

1. **Per-modality experts** (``ModalityExperts``): for each item modality (text, image, meta)
   ``K`` small MLP experts behind a learned softmax router; the router's output weights the
   experts. A Switch-Transformer load-balancing loss (Fedus et al. 2021:
   ``K * sum_k f_k * P_k``, ``f_k`` the share of items whose top expert is ``k``, ``P_k`` the
   mean router probability) keeps the router from collapsing onto one expert.
2. **Cross-modal gate** (``HierarchicalMoE``): a softmax over the modalities *per item*
   (modalities an item lacks, e.g. a missing poster, are masked out), optionally shifted by the
   user's sequence state so that different users can weigh text vs image differently.
   Its weighted sum is the item's content embedding.
3. **Fusion** (``SASRecMoENet``): the embedding fed to the transformer is
   ``a * id + (1 - a) * content`` with a learned per-item gate ``a``; the score is
   ``b(h) * <h, id> + (1 - b(h)) * <h, content>`` with a learned per-user gate ``b``.
   Cold-start items (no training interactions, so an untrained ID embedding) use content alone.

Audit hooks: ``expert_usage()`` (share per expert, per modality), ``modality_share()`` and
``ablate`` (a set of modality names treated as missing for every item at scoring time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from mmrank.errors import ConfigError
from mmrank.sequential.sasrec import SASRecNet, SASRecRanker


class ModalityExperts(nn.Module):
    """``K`` experts (Linear-GELU-Linear) for one modality, mixed by a softmax router.

    Experts are stored as batched weights ``(K, in, hidden)`` so all of them run in one einsum."""

    def __init__(self, in_dim: int, hidden: int, n_experts: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.router = nn.Linear(in_dim, n_experts)
        self.w1 = nn.Parameter(torch.randn(n_experts, in_dim, hidden) * in_dim ** -0.5)
        self.b1 = nn.Parameter(torch.zeros(n_experts, hidden))
        self.w2 = nn.Parameter(torch.randn(n_experts, hidden, hidden) * hidden ** -0.5)
        self.b2 = nn.Parameter(torch.zeros(n_experts, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (N, in)`` -> embeddings ``(N, hidden)`` and router probabilities ``(N, K)``."""
        x = self.norm(x)
        probs = F.softmax(self.router(x), dim=-1)
        h = F.gelu(torch.einsum("ni,kih->nkh", x, self.w1) + self.b1)
        out = torch.einsum("nkh,khd->nkd", self.dropout(h), self.w2) + self.b2
        return (probs[..., None] * out).sum(1), probs


def load_balancing_loss(probs: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss for ``probs (N, K)``; 1.0 when perfectly balanced."""
    k = probs.shape[1]
    top_share = F.one_hot(probs.argmax(1), k).float().mean(0)
    return k * (top_share * probs.mean(0)).sum()


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where ``mask``; rows with nothing allowed give all zeros."""
    weights = F.softmax(logits.masked_fill(~mask, -1e9), dim=-1) * mask
    return weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)


class HierarchicalMoE(nn.Module):
    """Modalities -> (per-modality experts) -> cross-modal gate -> content embeddings."""

    def __init__(self, modality_dims: dict[str, int], hidden: int, n_experts: int = 3,
                 dropout: float = 0.1, user_gate: bool = False) -> None:
        super().__init__()
        self.modalities = sorted(modality_dims)
        self.towers = nn.ModuleDict({m: ModalityExperts(modality_dims[m], hidden, n_experts, dropout)
                                     for m in self.modalities})
        self.item_gate = nn.Linear(hidden * len(self.modalities), len(self.modalities))
        self.user_gate = nn.Linear(hidden, len(self.modalities)) if user_gate else None

    def forward(self, feats: dict[str, torch.Tensor], mask: torch.Tensor):
        """``feats[m] (N, d_m)``, ``mask (N, M)`` -> per-modality embeddings ``(N, M, hidden)``,
        item gate logits ``(N, M)``, router probabilities ``{m: (N, K)}``."""
        outs, probs = [], {}
        for m in self.modalities:
            e, p = self.towers[m](feats[m])
            outs.append(e)
            probs[m] = p
        per_modality = torch.stack(outs, 1) * mask[..., None]
        return per_modality, self.item_gate(per_modality.flatten(1)), probs


class SASRecMoENet(SASRecNet):
    """SASRec whose item side fuses ID embeddings with the hierarchical MoE content embeddings.

    ``item_feats[m] (n_items+1, d_m)`` and ``item_mask (n_items+1, M)`` are buffers (so a saved
    model carries its item features); ``cold (n_items+1,)`` marks items without training data."""

    def __init__(self, n_items: int, item_feats: dict[str, torch.Tensor], item_mask: torch.Tensor,
                 cold: torch.Tensor, hidden: int = 64, layers: int = 2, heads: int = 2,
                 max_len: int = 200, dropout: float = 0.2, n_experts: int = 3,
                 expert_dropout: float = 0.1, user_gate: bool = False, balance_weight: float = 0.01,
                 ffn: int | None = None) -> None:
        super().__init__(n_items, hidden, layers, heads, max_len, dropout, ffn)
        self.moe = HierarchicalMoE({m: int(v.shape[1]) for m, v in item_feats.items()}, hidden,
                                   n_experts, expert_dropout, user_gate)
        for m in self.moe.modalities:
            self.register_buffer(f"feat_{m}", item_feats[m].float())
        self.register_buffer("item_mask", item_mask.bool())
        self.register_buffer("cold", cold.bool())
        self.id_gate = nn.Linear(2 * hidden, 1)
        self.score_gate = nn.Linear(hidden, 1)
        self.balance_weight = balance_weight
        # "id" / "content" / "fused", per side; staged training pretrains with one side only.
        self.input_mode = "fused"
        self.score_mode = "fused"
        self.ablate: set[str] = set()
        self._last_probs: dict[str, torch.Tensor] = {}
        self._last_gate: torch.Tensor | None = None

    # -- content tower over the whole catalogue -------------------------------------------------
    def _content(self):
        feats = {m: getattr(self, f"feat_{m}") for m in self.moe.modalities}
        mask = self.item_mask.clone()
        for j, m in enumerate(self.moe.modalities):
            if m in self.ablate:
                mask[:, j] = False
        per_modality, gate_logits, probs = self.moe(feats, mask)
        self._last_probs = {m: p[self.item_mask[:, j]] for j, (m, p) in enumerate(probs.items())}
        return per_modality, gate_logits, mask

    def _item_tables(self):
        """ID table, item-only content table ``(n_items+1, d)``, and the pieces for user gating."""
        if self._item_cache is not None and "tables" in self._item_cache:
            return self._item_cache["tables"]
        per_modality, gate_logits, mask = self._content()
        weights = masked_softmax(gate_logits, mask)
        self._last_gate = weights.detach()
        content = (weights[..., None] * per_modality).sum(1)
        tables = self.item_emb.weight, content, per_modality, gate_logits, mask
        if self._item_cache is not None:
            self._item_cache["tables"] = tables
        return tables

    def _fused_inputs(self, id_table: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        if self.input_mode == "id":
            return id_table
        if self.input_mode == "content":
            return content
        a = torch.sigmoid(self.id_gate(torch.cat([id_table, content], -1)))
        a = a.masked_fill(self.cold[:, None], 0.0)  # an untrained ID embedding says nothing
        return a * id_table + (1 - a) * content

    def input_embeddings(self, seq: torch.Tensor) -> torch.Tensor:
        """Input vectors of a padded item sequence: ID embeddings fused with the items' content
        vectors (per ``input_mode``); ``(b, L, hidden)``.
        """
        id_table, content, *_ = self._item_tables()
        return F.embedding(seq, self._fused_inputs(id_table, content))

    def logits(self, h: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of ``candidates`` (or every item) for states ``h``: ID scores, content scores or
        both fused by the score gate (per ``score_mode``).
        """
        id_table, content, per_modality, gate_logits, mask = self._item_tables()
        items = None if candidates is None else candidates
        s_id = h @ id_table.T if items is None else torch.einsum("md,mkd->mk", h, id_table[items])
        s_content = self._content_scores(h, content, per_modality, gate_logits, mask, items)
        if self.score_mode == "id":
            out = s_id
        elif self.score_mode == "content":
            out = s_content
        else:
            b = torch.sigmoid(self.score_gate(h))  # (M, 1): how much this user trusts IDs
            cold = self.cold if items is None else self.cold[items]
            out = torch.where(cold, s_content, b * s_id + (1 - b) * s_content)
        if items is None:
            out = out.clone()
            out[:, 0] = float("-inf")
        return out

    def _content_scores(self, h, content, per_modality, gate_logits, mask, items):
        if self.moe.user_gate is None:
            table = content
            return h @ table.T if items is None else torch.einsum("md,mkd->mk", h, table[items])
        # User-conditioned cross-modal gate: logits(user, item, modality) = item part + user part.
        user_logits = self.moe.user_gate(h)  # (M, Mod)
        if items is None:
            logits = gate_logits[None] + user_logits[:, None]  # (M, N, Mod)
            weights = masked_softmax(logits, mask[None])
            per_mod_scores = torch.einsum("md,njd->mnj", h, per_modality)
        else:
            logits = gate_logits[items] + user_logits[:, None]
            weights = masked_softmax(logits, mask[items])
            per_mod_scores = torch.einsum("md,mkjd->mkj", h, per_modality[items])
        return (weights * per_mod_scores).sum(-1)

    def aux_loss(self) -> torch.Tensor:
        """The load-balancing loss of the experts' routers (weighted by ``balance_weight``)."""
        if (self.score_mode == "id" and self.input_mode == "id") or not self._last_probs:
            return super().aux_loss()
        losses = [load_balancing_loss(p) for p in self._last_probs.values() if len(p)]
        return self.balance_weight * torch.stack(losses).mean()

    # -- audit hooks ------------------------------------------------------------------------------
    @torch.no_grad()
    def routing_probabilities(self) -> dict[str, torch.Tensor]:
        """Per modality, the router probabilities ``(items having it, K)`` over the catalogue."""
        self._item_tables()
        return dict(self._last_probs)

    def expert_usage(self) -> dict[str, list[float]]:
        """Per modality, each expert's share of the routing (mean router probability over the
        items that have the modality)."""
        return {m: p.mean(0).tolist() for m, p in self.routing_probabilities().items()}

    @torch.no_grad()
    def modality_share(self) -> dict[str, float]:
        """Mean item-level cross-modal gate weight of each modality (over real items)."""
        self._item_tables()
        w = self._last_gate[1:]
        return {m: float(w[:, j].mean()) for j, m in enumerate(self.moe.modalities)}


def top1_shares(probs: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per modality, the share of items whose most probable expert is each expert."""
    return {m: (torch.bincount(p.argmax(1), minlength=p.shape[1]) / max(len(p), 1)).tolist() for m, p in probs.items()}


class ItemFeatureRanker(SASRecRanker):
    """A SASRec-family ranker that carries item modality matrices (the content-aware kinds):
    ``set_item_features`` before ``build``/``fit``, the features stored with the weights, the
    modality names in ``model.json``, and the audit's ``modality_share`` / ``set_ablation`` hooks.
    Subclasses build their net from ``_feature_tensors()``."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.item_feats: dict[str, np.ndarray] | None = None
        self.item_mask: np.ndarray | None = None
        self.modalities: list[str] = []
        self._stored_features = False  # True when the features come from a saved model

    def set_item_features(self, feats: dict[str, np.ndarray], mask: dict[str, np.ndarray]) -> "ItemFeatureRanker":
        """Item modality matrices ``{name: (n_items+1, d)}`` and masks ``{name: (n_items+1,)}``
        aligned with the split's dense ids (row 0 padding); call before ``build``/``fit``.

        Returns:
            self, for chaining.
        """
        if not feats:
            raise ConfigError(f"{self.kind} needs at least one item modality (data.modalities)")
        self.modalities = sorted(feats)
        self.item_feats = {m: np.asarray(feats[m], dtype=np.float32) for m in self.modalities}
        self.item_mask = np.stack([np.asarray(mask[m], dtype=bool) for m in self.modalities], 1)
        return self

    def _feature_tensors(self) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Features, mask ``(n_items+1, M)`` and cold flags as tensors for the net's constructor."""
        if self.item_feats is None:
            raise ConfigError(f"{self.kind} needs item features: set data.item_features (or call set_item_features first)")
        return ({m: torch.from_numpy(v) for m, v in self.item_feats.items()}, torch.from_numpy(self.item_mask),
                torch.from_numpy(self.cold_items_))

    def _make_net_from_state(self, n_items: int, state: dict):
        mask = state["item_mask"].numpy()
        self.set_item_features({m: state[f"feat_{m}"].numpy() for m in self.modalities},
                               {m: mask[:, j] for j, m in enumerate(self.modalities)})
        self._stored_features = True
        return self._make_net(n_items)

    def extra_meta(self) -> dict:
        """What ``model.json`` stores beyond SASRec's: the modality names."""
        return {"modalities": self.modalities}

    def restore_meta(self, meta: dict) -> None:
        """Read back what ``extra_meta`` stored."""
        self.modalities = list(meta["modalities"])

    def modality_share(self) -> dict[str, float]:
        """Mean weight each modality gets in the fused content vector (sums to 1)."""
        return self.net_.modality_share()

    def set_ablation(self, modalities) -> None:
        """Treat ``modalities`` as missing for every item when scoring (an eval-time ablation)."""
        unknown = set(modalities) - set(self.modalities)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; this model has {self.modalities}")
        self.net_.ablate = set(modalities)
        if self.net_._item_cache is not None:  # inside a scoring session: recompute the item side
            self.net_._item_cache.clear()


class SASRecMoERanker(ItemFeatureRanker):
    """SASRec + hierarchical multimodal MoE in the mmrank model protocol.

    Needs item features: ``set_item_features(feats, mask)`` with matrices aligned to the dense
    item ids of the split (row 0 = padding), before ``build``/``fit``."""

    kind = "sasrec_moe"

    class Params(SASRecRanker.Params):
        n_experts: int = Field(3, ge=1)
        expert_dropout: float = Field(0.1, ge=0, lt=1)
        user_gate: bool = False
        balance_weight: float = Field(0.01, ge=0)

    def _make_net(self, n_items: int) -> SASRecMoENet:
        p = self.params
        return SASRecMoENet(n_items, *self._feature_tensors(), p.hidden, p.layers, p.heads, p.max_len, p.dropout,
                            p.n_experts, p.expert_dropout, p.user_gate, p.balance_weight, p.ffn)

    # -- audit hooks ------------------------------------------------------------------------------
    def expert_usage(self) -> dict[str, list[float]]:
        """Per modality, the mean routing probability of each expert over all items."""
        return self.net_.expert_usage()

    def expert_top1_share(self) -> dict[str, list[float]]:
        """Per modality, the share of items whose most probable expert is each expert."""
        return top1_shares(self.net_.routing_probabilities())
