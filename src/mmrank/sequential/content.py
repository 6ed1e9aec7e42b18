"""Content-aware SASRec whose content cannot hurt the ID path: ``sasrec_content``.

Two item paths share one content adapter over frozen pretrained features::

    warm item (has training events, ID kept):  e_i = id_i + g * c_i        (gated content residual)
    cold item, or a warm item whose ID is dropped in this training step:  e_i = P c_i
    c_i = adapter(frozen item features)

* **Frozen pretrained features, small adapter.** Each modality (MiniLM text, EfficientNet poster,
  metadata) is standardised once over the catalogue and goes through a parametric whitening layer
  ``(z - b) W`` (UniSRec, Hou et al., KDD 2022); modalities are fused with a learned softmax over
  the modalities the item has. ``adapter: moe`` swaps in the hierarchical mixture of experts of
  ``mmrank.sequential.moe`` (per-modality experts + per-item modality gate) — the MoE kept as an
  option, with its expert usage reported. Features never train: Yuan et al. (SIGIR 2023, "ID- vs.
  modality-based recommender models revisited") find frozen modality features lose to IDs on warm
  items, so for warm items content is a residual on the ID embedding (UniSRec's transductive
  setting: text + ID), not a replacement.
* **A gate that can fall back to the ID path.** ``g`` is a learned per-dimension gate; at its
  default start ``g = 0`` a warm item's vector *is* its ID embedding, and content enters only as far
  as training moves ``g``. With ``init_from`` (an ID-only SASRec run of the same data) the ID path
  starts from that run's weights and, by default (``freeze_id_path``), stays frozen while the content
  parts train; the initial state is validated as epoch 0, so early stopping on full-ranking
  validation NDCG@10 keeps the ID-only model itself unless content beats it on validation.
* **Cold items from content, trained by ID dropout** (DropoutNet, Volkovs et al., NeurIPS 2017).
  Items without training events use the content projection ``P c_i``. ``id_dropout``: in each
  training step that share of warm items also use ``P c_i`` (the same items for the step's inputs
  and targets), so the projection learns to stand in for an ID embedding, through the ranking loss
  itself. The two paths are separate (``P`` vs ``g``), so teaching content to replace an ID does
  not push a warm item's vector away from its ID embedding. ``P`` starts at zero. ``align_weight``
  adds a direct target: every warm item's ``P c_i`` is pulled towards its (detached) warm vector
  (warm-to-cold distillation as in ALDI, Huang et al., SIGIR 2023).
* **Cold items are no training negatives**: in a cold-start setting they do not exist at training
  time; kept in the training softmax, their content would be learned as "never relevant".
* **Modality dropout** (``modality_dropout``): each modality of each item is hidden with that
  probability during training, so no single modality becomes indispensable (the fusion renormalises
  over the rest, as it does for an item that lacks a modality).

Audit hooks as the MoE's: ``modalities``, ``set_ablation``, ``modality_share`` and, with
``adapter: moe``, ``expert_usage`` / ``expert_top1_share``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from safetensors.torch import load_file
from torch import nn

from mmrank.errors import ConfigError, DataError
from mmrank.sequential.moe import HierarchicalMoE, ItemFeatureRanker, load_balancing_loss, masked_softmax, top1_shares
from mmrank.sequential.sasrec import SASRecNet, SASRecRanker


def standardise(x: torch.Tensor, have: torch.Tensor) -> torch.Tensor:
    """Per-dimension z-scores over the rows that ``have`` the modality (others stay 0): a fixed
    whitening of frozen features so that every modality enters the adapter at one scale."""
    out = torch.zeros_like(x)
    if have.any():
        rows = x[have]
        out[have] = (rows - rows.mean(0)) / rows.std(0, unbiased=False).clamp(min=1e-6)
    return out


class WhiteningAdapter(nn.Module):
    """Per modality UniSRec's parametric whitening ``(z - b) W`` into the hidden size, then a learned
    softmax over the modalities each item has."""

    def __init__(self, modality_dims: dict[str, int], hidden: int, dropout: float) -> None:
        super().__init__()
        self.modalities = sorted(modality_dims)
        self.bias = nn.ParameterDict({m: nn.Parameter(torch.zeros(modality_dims[m])) for m in self.modalities})
        self.proj = nn.ModuleDict({m: nn.Linear(modality_dims[m], hidden, bias=False) for m in self.modalities})
        for m in self.modalities:  # outputs of about the ID embeddings' scale (rows of norm ~1)
            nn.init.normal_(self.proj[m].weight, std=(modality_dims[m] * hidden) ** -0.5)
        self.fusion_logits = nn.Parameter(torch.zeros(len(self.modalities)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, feats: dict[str, torch.Tensor], mask: torch.Tensor):
        """``feats[m] (N, d_m)``, ``mask (N, M)`` -> content ``(N, hidden)``, fusion weights
        ``(N, M)``, router probabilities (none here)."""
        per_modality = torch.stack([self.proj[m](self.dropout(feats[m] - self.bias[m])) for m in self.modalities], 1)
        weights = masked_softmax(self.fusion_logits.expand(mask.shape), mask)
        return (weights[..., None] * per_modality).sum(1), weights, {}


class MoEAdapter(nn.Module):
    """The hierarchical multimodal MoE of ``mmrank.sequential.moe`` as the content adapter."""

    def __init__(self, modality_dims: dict[str, int], hidden: int, dropout: float, n_experts: int) -> None:
        super().__init__()
        self.moe = HierarchicalMoE(modality_dims, hidden, n_experts, dropout, user_gate=False)
        self.modalities = self.moe.modalities

    def forward(self, feats: dict[str, torch.Tensor], mask: torch.Tensor):
        """As ``WhiteningAdapter.forward``; router probabilities per modality over the items having it."""
        per_modality, gate_logits, probs = self.moe(feats, mask)
        weights = masked_softmax(gate_logits, mask)
        probs = {m: p[mask[:, j]] for j, (m, p) in enumerate(probs.items())}
        return (weights[..., None] * per_modality).sum(1), weights, probs


class SASRecContentNet(SASRecNet):
    """SASRec with item vectors ``keep * id + g * content`` (see the module docstring).

    ``item_feats[m] (n_items+1, d_m)`` / ``item_mask (n_items+1, M)`` / ``cold (n_items+1,)`` are
    buffers, so a saved model carries its (standardised) item features."""

    def __init__(self, n_items: int, item_feats: dict[str, torch.Tensor], item_mask: torch.Tensor,
                 cold: torch.Tensor, hidden: int = 64, layers: int = 2, heads: int = 2, max_len: int = 200,
                 dropout: float = 0.2, ffn: int | None = None, adapter: str = "whiten", n_experts: int = 3,
                 adapter_dropout: float = 0.1, id_dropout: float = 0.1, modality_dropout: float = 0.1,
                 gate_init: float = 0.0, balance_weight: float = 0.01, standardised: bool = False,
                 align_weight: float = 0.0) -> None:
        super().__init__(n_items, hidden, layers, heads, max_len, dropout, ffn)
        self.modalities = sorted(item_feats)
        dims = {m: int(item_feats[m].shape[1]) for m in self.modalities}
        self.adapter = (WhiteningAdapter(dims, hidden, adapter_dropout) if adapter == "whiten"
                        else MoEAdapter(dims, hidden, adapter_dropout, n_experts))
        item_mask = item_mask.bool().clone()
        item_mask[0] = False  # padding has no content
        for j, m in enumerate(self.modalities):
            x = item_feats[m].float()
            self.register_buffer(f"feat_{m}", x if standardised else standardise(x, item_mask[:, j]))
        self.register_buffer("item_mask", item_mask)
        self.register_buffer("cold", cold.bool())
        self.gate = nn.Parameter(torch.full((hidden,), float(gate_init)))
        self.cold_head = nn.Linear(hidden, hidden, bias=False)  # P: content -> a stand-in item vector
        nn.init.zeros_(self.cold_head.weight)
        self.id_dropout, self.modality_dropout, self.balance_weight = id_dropout, modality_dropout, balance_weight
        self.align_weight = align_weight
        self._align_loss: torch.Tensor | None = None
        self.ablate: set[str] = set()
        self._last_weights: torch.Tensor | None = None
        self._last_probs: dict[str, torch.Tensor] = {}

    def content_table(self) -> torch.Tensor:
        """Content vectors ``c`` of every catalogue item ``(n_items+1, hidden)`` (zero rows for items
        without content, row 0 included); in training with modality dropout, at scoring time without
        the ablated modalities."""
        mask = self.item_mask.clone()
        for j, m in enumerate(self.modalities):
            if m in self.ablate:
                mask[:, j] = False
        if self.training and self.modality_dropout > 0:
            mask &= torch.rand(mask.shape, device=mask.device) >= self.modality_dropout
        feats = {m: getattr(self, f"feat_{m}") for m in self.modalities}
        content, weights, probs = self.adapter(feats, mask)
        self._last_weights, self._last_probs = weights.detach(), probs
        return content * mask.any(1, keepdim=True)

    def item_table(self) -> torch.Tensor:
        """Item vectors ``(n_items+1, hidden)``: ``id + g * c`` for warm items with their ID kept,
        ``P c`` for cold items and ID-dropped ones; computed once per cache block (one training step or
        one evaluation), so inputs and targets of a step share the ID dropout."""
        if self._item_cache is not None and "table" in self._item_cache:
            return self._item_cache["table"]
        keep = ~self.cold
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.id_dropout)
        content = self.content_table()
        warm, stand_in = self.item_emb.weight + self.gate * content, self.cold_head(content)
        table = torch.where(keep[:, None], warm, stand_in)
        self._align_loss = self._alignment(warm, stand_in) if self.training and self.align_weight > 0 else None
        if self._item_cache is not None:
            self._item_cache["table"] = table
        return table

    def input_embeddings(self, seq: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` item ids -> their item vectors ``(B, L, hidden)``."""
        return nn.functional.embedding(seq, self.item_table())

    def logits(self, h: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Dot products of states ``h (M, d)`` with the item vectors (all items, column 0 -inf;
        or ``candidates (M, K)``).

        In training, items without training events (cold) score -inf: they are no negatives. In a
        cold-start setting they do not exist yet at training time, and as ever-present negatives
        that are never a target their content would be learned as "never relevant" — rich content
        identifies them, so the content path would push exactly the cold items down (measured on
        the ML-100K cold-start split: cold-target NDCG@10 0 with them as negatives)."""
        table = self.item_table()
        if candidates is not None:
            out = torch.einsum("md,mkd->mk", h, table[candidates])
            return out.masked_fill(self.cold[candidates], float("-inf")) if self.training else out
        out = h @ table.T
        out[:, 0] = float("-inf")
        if self.training:
            out[:, self.cold] = float("-inf")
        return out

    def _alignment(self, warm: torch.Tensor, stand_in: torch.Tensor) -> torch.Tensor:
        """Relative squared distance between every warm item's stand-in ``P c`` and its (detached)
        warm vector: a direct target for the content path on top of ID dropout (the warm-to-cold
        distillation of ALDI, Huang et al., SIGIR 2023; CB2CF-style content-to-CF regression)."""
        rows = ~self.cold
        rows[0] = False
        target = warm[rows].detach()
        return ((stand_in[rows] - target) ** 2).sum(1).mean() / (target ** 2).sum(1).mean().clamp(min=1e-12)

    def aux_loss(self) -> torch.Tensor:
        """The MoE adapter's load-balancing loss (``balance_weight``; none for whitening) plus the
        stand-in alignment (``align_weight``) of the current step."""
        out = super().aux_loss()
        losses = [load_balancing_loss(p) for p in self._last_probs.values() if len(p)]
        if losses:
            out = out + self.balance_weight * torch.stack(losses).mean()
        if self._align_loss is not None:
            out = out + self.align_weight * self._align_loss
        return out

    @torch.no_grad()
    def routing_probabilities(self) -> dict[str, torch.Tensor]:
        """Per modality, the MoE adapter's router probabilities ``(items having it, K)`` (eval mode)."""
        was = self.training
        self.eval()
        self.content_table()
        self.train(was)
        return dict(self._last_probs)

    @torch.no_grad()
    def modality_share(self) -> dict[str, float]:
        """Mean fusion weight of each modality over the items with any content (eval mode)."""
        was = self.training
        self.eval()
        self.content_table()
        self.train(was)
        have = self.item_mask.any(1)
        w = self._last_weights[have]
        return {m: float(w[:, j].mean()) if len(w) else 0.0 for j, m in enumerate(self.modalities)}


class SASRecContentRanker(ItemFeatureRanker):
    """``sasrec_content`` in the mmrank model protocol. Needs item features
    (``set_item_features``) before ``build``/``fit``; ``init_from`` starts the ID path from a trained
    SASRec run's weights (same item and user vocabularies)."""

    kind = "sasrec_content"

    class Params(SASRecRanker.Params):
        adapter: Literal["whiten", "moe"] = Field("whiten", description="content adapter: whiten (UniSRec PW layer) | moe")
        n_experts: int = Field(3, ge=1, description="experts per modality (adapter: moe)")
        adapter_dropout: float = Field(0.1, ge=0, lt=1)
        id_dropout: float = Field(0.1, ge=0, lt=1, description="share of items trained from content alone per step")
        modality_dropout: float = Field(0.1, ge=0, lt=1, description="share of (item, modality) pairs hidden per step")
        gate_init: float = Field(0.0, description="start of the per-dimension content gate (0: starts as ID-only)")
        balance_weight: float = Field(0.01, ge=0, description="MoE load-balancing weight (adapter: moe)")
        align_weight: float = Field(0.0, ge=0, description="pull P c towards each warm item's vector (0: off)")
        init_from: str | None = Field(None, description="a SASRec run directory whose weights start the ID path")
        freeze_id_path: bool = Field(True, description="with init_from: train the content parts only")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.warm_started_ = False
        if self.params.adapter == "moe":  # the audit's expert_usage check looks for these methods
            self.expert_usage = self._expert_usage
            self.expert_top1_share = self._expert_top1_share

    def build(self, split) -> "SASRecContentRanker":
        """Create the net for a split (and load ``init_from``'s ID-path weights when given)."""
        super().build(split)
        if self.params.init_from:
            self._warm_start(Path(self.params.init_from))
        return self

    def _warm_start(self, run: Path) -> None:
        meta_path = run / "model.json"
        if not meta_path.is_file():
            raise ConfigError(f"model.params.init_from: {run} is not a finished run (no model.json)")
        meta = json.loads(meta_path.read_text())
        if list(meta["item_ids"]) != list(self.items_.ids):
            raise DataError("init_from run has another item vocabulary than this split", path=run,
                            hint="warm-start from a run trained on the same data and split")
        state = load_file(str(run / "model.safetensors"))
        own = self.net_.state_dict()
        shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("feat_")}
        if "item_emb.weight" not in shared:
            raise DataError("init_from run has no compatible item embedding", path=run,
                            hint="warm-start from an ID-only SASRec run with the same hidden size")
        self.net_.load_state_dict(shared, strict=False)
        self.warm_started_ = True

    def trainable_parameter(self, name: str) -> bool:
        """Which parameters train (``fit_net`` asks): all of them, except the ID path (ID and
        position embeddings, transformer) when it was warm-started and ``freeze_id_path``."""
        if not (self.warm_started_ and self.params.freeze_id_path):
            return True
        return name.startswith(("adapter.", "gate", "cold_head."))

    def _make_net(self, n_items: int) -> SASRecContentNet:
        p = self.params
        # Features loaded from a saved model are the standardised ones: they are used as they are.
        return SASRecContentNet(n_items, *self._feature_tensors(), p.hidden, p.layers, p.heads, p.max_len, p.dropout,
                                p.ffn, p.adapter, p.n_experts, p.adapter_dropout, p.id_dropout, p.modality_dropout,
                                p.gate_init, p.balance_weight, standardised=self._stored_features,
                                align_weight=p.align_weight)

    # -- audit hooks ------------------------------------------------------------------------------
    def content_gate_norm(self) -> float:
        """``|g| / sqrt(hidden)``: how far the warm items' content gate opened (0 = ID embeddings only)."""
        return float(self.net_.gate.detach().norm() / len(self.net_.gate) ** 0.5)

    def _expert_usage(self) -> dict[str, list[float]]:
        """Per modality, the mean router probability of each expert (adapter: moe)."""
        return {m: p.mean(0).tolist() for m, p in self.net_.routing_probabilities().items()}

    def _expert_top1_share(self) -> dict[str, list[float]]:
        """Per modality, the share of items whose most probable expert is each expert (adapter: moe)."""
        return top1_shares(self.net_.routing_probabilities())
