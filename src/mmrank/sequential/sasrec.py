"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item sequence.

``SASRecNet`` is the ``nn.Module``: it turns a left-padded ``(B, L)`` item sequence into
``(B, L, d)`` states, where state ``t`` has read items ``0..t`` and predicts item ``t+1``.
Scores are dot products with the item embedding table (tied input/output embeddings).
It is trained on every position of each sequence at once (one sequence per user per batch).

Losses (``sequence_loss``): full-softmax cross-entropy over all items (default), sampled
softmax with N uniform negatives, gBCE (Petrov & Macdonald, RecSys 2023) and BPR
(Rendle et al., UAI 2009).

``SASRecRanker`` wraps the net in the mmrank model protocol (params in the constructor, ``fit``,
pure scoring, safetensors + JSON storage). It knows nothing about optimisers: ``fit`` hands the
net to the Lightning module in ``mmrank.sequential.training``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from mmrank.atomic_io import atomic_write_text
from mmrank.config import Strict
from mmrank.errors import DataError
from mmrank.models.params import WithParams
from mmrank.sequential.data import IdVocab, pad_left

LOSSES = ("ce", "sampled_softmax", "gbce", "bpr")
CL_VIEWS = ("crop", "mask", "reorder", "substitute", "dropout")


class SASRecNet(nn.Module):
    """Item sequence -> states. Item 0 is padding; items are ``1..n_items``."""

    def __init__(self, n_items: int, hidden: int = 64, layers: int = 2, heads: int = 2,
                 max_len: int = 200, dropout: float = 0.2, ffn: int | None = None) -> None:
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.dropout = nn.Dropout(dropout)
        # ffn: the feed-forward width; None = hidden (our presets), RecBole's SASRec uses 4 * hidden.
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=ffn or hidden, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(hidden)
        self.heads = heads
        self._item_cache: dict | None = None
        nn.init.normal_(self.item_emb.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    # -- item side: subclasses (the multimodal MoE) replace these two -----------------------
    def input_embeddings(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, L, d) embeddings of the items read."""
        return self.item_emb(seq)

    def logits(self, h: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of items for states ``h (M, d)``: all items ``(M, n_items+1)`` (column 0 is
        padding, set to -inf) when ``candidates`` is None, else ``(M, K)`` for ``candidates (M, K)``."""
        if candidates is None:
            out = h @ self.item_emb.weight.T
            out[:, 0] = float("-inf")
            return out
        return torch.einsum("md,mkd->mk", h, self.item_emb(candidates))

    @contextlib.contextmanager
    def item_side_cache(self):
        """Within this block an item side that is costly to compute (the MoE content tower over
        the whole catalogue) is computed once and reused by ``input_embeddings`` and ``logits``.
        A nested block shares the outer one's cache (an evaluation scores many chunks in one)."""
        if self._item_cache is not None:
            yield
            return
        self._item_cache = {}
        try:
            yield
        finally:
            self._item_cache = None

    def aux_loss(self) -> torch.Tensor:
        """Extra training loss of the item side (the MoE's load balancing); none here."""
        return self.item_emb.weight.new_zeros(())

    # -- sequence side -------------------------------------------------------------------------
    def encode(self, seq: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, d) states.

        ``real`` (B, L) bool: the positions that hold an item (default ``seq > 0``). A position that is
        real with id 0 reads as a zero item embedding plus its position: the mask token of the
        contrastive ``mask`` augmentation (``mmrank.sequential.augment``)."""
        B, L = seq.shape
        x = self.input_embeddings(seq) * (self.item_emb.embedding_dim ** 0.5)
        x = x + self.pos_emb.weight[self.max_len - L:][None]
        real = seq > 0 if real is None else real
        x = self.dropout(x) * real[..., None]
        x = self.encoder(x, mask=self._attention_mask(real))
        return self.final_norm(x) * real[..., None]

    def _attention_mask(self, real: torch.Tensor) -> torch.Tensor:
        """(B*heads, L, L) additive float mask: -inf hides future items and padding.

        A padded row may see itself only, so no softmax row is empty (an empty row gives NaN).
        Float, not bool: PyTorch's attention takes a slow path for 3-D boolean masks (4x here)."""
        B, L = real.shape
        t = torch.arange(L, device=real.device)
        causal = t[None, :] <= t[:, None]  # (L query, L key)
        allowed = causal[None] & real[:, None, :]
        allowed = allowed | torch.eye(L, dtype=torch.bool, device=real.device)[None]
        mask = torch.zeros(allowed.shape, device=real.device).masked_fill_(~allowed, float("-inf"))
        return mask.repeat_interleave(self.heads, dim=0)

    def last_state(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, d): the state after each user's most recent item (right-aligned input).

        In eval mode this takes the inference path below (same weights, same result)."""
        if self.training or torch.is_grad_enabled():
            return self.encode(seq)[:, -1]
        return self._last_state_inference(seq)

    def _last_state_inference(self, seq: torch.Tensor) -> torch.Tensor:
        """``encode(seq)[:, -1]`` without dropout, computed faster: fused scaled-dot-product
        attention with one boolean mask shared by all heads, and in the last layer only the last
        position's query and feed-forward (the only state that scores the next item)."""
        B, L = seq.shape
        x = self.input_embeddings(seq) * (self.item_emb.embedding_dim ** 0.5)
        x = x + self.pos_emb.weight[self.max_len - L:][None]
        real = seq > 0
        x = x * real[..., None]
        t = torch.arange(L, device=seq.device)
        allowed = ((t[None, :] <= t[:, None])[None] & real[:, None, :]) | torch.eye(L, dtype=torch.bool, device=seq.device)[None]
        layers = list(self.encoder.layers)
        for i, layer in enumerate(layers):
            last = i == len(layers) - 1
            x = self._layer_inference(layer, x, allowed[:, -1:] if last else allowed, last)
        return self.final_norm(x[:, -1]) * real[:, -1:]

    def _layer_inference(self, layer: nn.TransformerEncoderLayer, x: torch.Tensor, allowed: torch.Tensor,
                         last_only: bool) -> torch.Tensor:
        """One pre-LN encoder layer (``norm_first=True``) in eval mode; ``last_only`` computes the
        last position's output only."""
        attn = layer.self_attn
        B, L, d = x.shape
        hd = d // self.heads
        y = layer.norm1(x)
        if last_only:  # keys and values for every position, the query for the last one only
            w, b = attn.in_proj_weight, attn.in_proj_bias
            q = F.linear(y[:, -1:], w[:d], b[:d])
            k, v = F.linear(y, w[d:], b[d:]).chunk(2, dim=-1)
            x = x[:, -1:]
        else:
            q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        heads = lambda z: z.reshape(B, z.shape[1], self.heads, hd).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=allowed[:, None])
        x = x + attn.out_proj(a.transpose(1, 2).reshape(B, q.shape[1], d))
        return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))

    def score_sequences(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, n_items+1) next-item scores (column 0 = padding, -inf)."""
        with self.item_side_cache():
            return self.logits(self.last_state(seq))


def sequence_loss(net: SASRecNet, inputs: torch.Tensor, targets: torch.Tensor, loss: str = "ce",
                  n_negatives: int = 256, gbce_t: float = 0.75,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Next-item loss over every real position of ``inputs``/``targets`` (both ``(B, L)``).

    ``ce``: softmax over all items. ``sampled_softmax``: softmax over the target and
    ``n_negatives`` uniform negatives. ``gbce``: Petrov & Macdonald 2023's generalised BCE,
    ``-beta * log sigmoid(s+) - sum log(1 - sigmoid(s-))`` with ``beta = alpha*(t*(1-1/alpha)+1/alpha)``,
    ``alpha = n_negatives/(n_items-1)``: ``t=0`` is plain BCE, ``t=1`` calibrates towards full
    softmax. ``bpr``: ``-log sigmoid(s+ - s-)`` averaged over the negatives."""
    with net.item_side_cache():
        return _sequence_loss(net, inputs, targets, loss, n_negatives, gbce_t, generator)


def _sequence_loss(net, inputs, targets, loss, n_negatives, gbce_t, generator) -> torch.Tensor:
    h = net.encode(inputs)
    where = targets > 0
    h, pos = h[where], targets[where]  # (M, d), (M,)
    if loss == "ce":
        return F.cross_entropy(net.logits(h), pos) + net.aux_loss()
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {LOSSES}")
    negs = torch.randint(1, net.n_items + 1, (len(pos), n_negatives), device=pos.device,
                         generator=generator)
    scores = net.logits(h, torch.cat([pos[:, None], negs], dim=1))
    s_pos, s_neg = scores[:, 0], scores[:, 1:]
    # A negative that happens to be the target is not a negative.
    s_neg = s_neg.masked_fill(negs == pos[:, None], float("-inf"))
    if loss == "sampled_softmax":
        out = F.cross_entropy(torch.cat([s_pos[:, None], s_neg], dim=1), torch.zeros_like(pos))
    elif loss == "gbce":
        alpha = n_negatives / max(net.n_items - 1, 1)
        beta = alpha * (gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
        out = (beta * F.softplus(-s_pos) + F.softplus(s_neg).sum(1)).mean()
    else:  # bpr
        valid = torch.isfinite(s_neg)
        diff = torch.where(valid, s_pos[:, None] - s_neg, torch.zeros_like(s_neg))
        out = (F.softplus(-diff) * valid).sum() / valid.sum().clamp(min=1)
    return out + net.aux_loss()


class SASRecRanker(WithParams):
    """ID-only SASRec in the mmrank model protocol.

    ``fit(split)`` trains on a ``SequenceSplit``; ``score_users(users, histories)`` gives
    ``(b, n_items+1)`` scores; ``score(rset)`` scores a RankingSet whose query ids are user ids
    and candidate ids are item ids (for reranking candidate lists)."""

    kind = "sasrec"

    class Params(Strict):
        hidden: int = Field(64, ge=1)
        layers: int = Field(2, ge=0)
        heads: int = Field(2, ge=1)
        max_len: int = Field(200, ge=1, description="positions of history the model reads")
        dropout: float = Field(0.2, ge=0, lt=1)
        ffn: int | None = Field(None, ge=1, description="feed-forward width (default hidden; RecBole uses 4 x hidden)")
        loss: Literal[LOSSES] = "ce"  # type: ignore[valid-type]
        n_negatives: int = Field(256, ge=1)
        gbce_t: float = Field(0.75, ge=0, le=1)
        # Contrastive sequence training (mmrank.sequential.contrastive); cl_weight 0 = off.
        cl_weight: float = Field(0.0, ge=0, description="weight of the InfoNCE term (CL4SRec uses 0.1)")
        cl_temperature: float = Field(0.2, gt=0, description="temperature of the cosine InfoNCE")
        cl_augmentations: list[Literal[CL_VIEWS]] = Field(  # type: ignore[valid-type]
            default_factory=lambda: ["crop", "mask", "reorder"], min_length=1,
            description="one is drawn per view and row: crop | mask | reorder | substitute | dropout")
        cl_crop: float = Field(0.6, gt=0, le=1, description="crop keeps ceil(cl_crop * n) items")
        cl_mask: float = Field(0.3, ge=0, lt=1, description="mask hides floor(cl_mask * n) items")
        cl_reorder: float = Field(0.6, ge=0, le=1, description="reorder shuffles floor(cl_reorder * n) items")
        cl_substitute: float = Field(0.3, ge=0, le=1, description="substitute swaps floor(cl_substitute * n) items")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.net_: SASRecNet | None = None
        self.items_: IdVocab | None = None
        self.users_: IdVocab | None = None
        self.cold_items_: np.ndarray | None = None
        self.substitute_table_: torch.Tensor | None = None  # contrastive `substitute` only; not stored
        self.history_: list[dict] = []

    # -- building ------------------------------------------------------------------------------
    def build(self, split) -> "SASRecRanker":
        """Create the net for a split's vocabularies (without training)."""
        self.items_, self.users_, self.cold_items_ = split.items, split.users, split.cold_items
        self.net_ = self._make_net(len(split.items))
        self.substitute_table_ = None
        if self.params.cl_weight > 0 and "substitute" in self.params.cl_augmentations:
            from mmrank.sequential.augment import substitute_table

            self.substitute_table_ = substitute_table(split.train, len(split.items))
        return self

    def _make_net(self, n_items: int) -> SASRecNet:
        p = self.params
        return SASRecNet(n_items, p.hidden, p.layers, p.heads, p.max_len, p.dropout, p.ffn)

    def loss_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``loss(inputs, targets)`` of the configured kind (ce, sampled_softmax, gbce, bpr) for
        ``fit_net``; every position of every window is a target. With ``cl_weight`` > 0 the
        contrastive term of ``mmrank.sequential.contrastive`` is added.
        """
        p = self.params

        def rec_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return sequence_loss(self.net_, inputs, targets, p.loss, p.n_negatives, p.gbce_t)

        if p.cl_weight == 0:
            return rec_loss
        from mmrank.sequential.contrastive import with_contrastive

        return with_contrastive(self.net_, rec_loss, p, self.substitute_table_)

    def fit(self, split, valid=None, **train_options: Any) -> "SASRecRanker":
        """Train on ``split.train``; early-stop on validation NDCG@10 (``train_options`` go to
        ``mmrank.sequential.training.fit_net``: epochs, batch_size, lr, ...)."""
        # Imported here: the training stack (Lightning) is only needed to fit, never to score.
        from mmrank.sequential.training import fit_net

        if self.net_ is None:
            self.build(split)
        self.history_ = fit_net(self, split, **train_options)
        return self

    # -- scoring (pure) ------------------------------------------------------------------------
    @torch.no_grad()
    def score_histories(self, seqs: list[np.ndarray]) -> torch.Tensor:
        """Scores ``(b, n_items+1)`` of the next item after each dense-id sequence."""
        self.net_.eval()
        # Pad to the batch's longest sequence, not max_len: positions are right-aligned and padding
        # is masked out, so the states are the same and short histories cost less.
        width = max(1, min(self.params.max_len, max((len(s) for s in seqs), default=1)))
        batch = torch.from_numpy(pad_left(seqs, width)).to(next(self.net_.parameters()).device)
        return self.net_.score_sequences(batch)

    def score_users(self, users: torch.Tensor, histories) -> torch.Tensor:
        """Scores ``(len(users), n_items + 1)`` of the next item for dense ``users`` given
        ``histories`` (column 0 is padding).
        """
        return self.score_histories([histories.of(int(u)) for u in users])

    @contextlib.contextmanager
    def scoring_session(self):
        """A block of ``score_users`` calls with fixed weights (one evaluation): the item side is
        computed once for all of them instead of once per chunk."""
        self.net_.eval()
        with torch.no_grad(), self.net_.item_side_cache():
            yield

    def score(self, rset) -> np.ndarray:
        """RankingSet scores: each query's ``query_texts`` entry holds the user's history as
        space-separated item ids (oldest first); its candidates are item ids."""
        out = np.empty(rset.n_candidates, dtype=np.float64)
        for q in range(rset.n_queries):
            text = rset.query_texts[q] if rset.query_texts is not None else ""
            seq = self.items_.encode(str(text or "").split(), "<RankingSet query_texts>")
            scores = self.score_histories([seq])[0]
            a, b = rset.offsets[q], rset.offsets[q + 1]
            cand = self.items_.encode(rset.candidate_ids[a:b], "<RankingSet candidate_ids>")
            out[a:b] = scores[torch.from_numpy(cand)].double().numpy()
        return out

    # -- storage ---------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` (weights) and ``model.json`` (kind, params, vocabularies,
        cold items, history) into ``directory``; ``model.json`` last.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()}
        tmp = directory / ".model.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(directory / "model.safetensors")
        meta = {"kind": self.kind, "params": self.get_params(), "n_items": len(self.items_),
                "item_ids": list(self.items_.ids), "user_ids": list(self.users_.ids),
                "cold_items": np.flatnonzero(self.cold_items_).tolist(), "history": self.history_,
                **self.extra_meta()}
        atomic_write_text(directory / "model.json", json.dumps(meta, indent=1))

    def extra_meta(self) -> dict:
        """Subclass hook: more fields for ``model.json``."""
        return {}

    @classmethod
    def load(cls, directory: str | Path) -> "SASRecRanker":
        """The ranker ``save`` wrote (DataError when the folder holds another kind)."""
        directory = Path(directory)
        meta = json.loads((directory / "model.json").read_text())
        if meta["kind"] != cls.kind:
            raise DataError(f"model kind is {meta['kind']!r}, not {cls.kind!r}", path=directory,
                            hint="load a run through mmrank.runs.load_model, which picks the class")
        self = cls(**meta["params"])
        self.items_ = IdVocab(np.array(meta["item_ids"], dtype=object), 1, "item")
        self.users_ = IdVocab(np.array(meta["user_ids"], dtype=object), 0, "user")
        self.cold_items_ = np.zeros(meta["n_items"] + 1, dtype=bool)
        self.cold_items_[meta["cold_items"]] = True
        self.history_ = meta.get("history", [])
        self.restore_meta(meta)
        state = load_file(str(directory / "model.safetensors"))
        self.net_ = self._make_net_from_state(meta["n_items"], state)
        self.net_.load_state_dict(state)
        self.net_.eval()
        return self

    def restore_meta(self, meta: dict) -> None:
        """Subclass hook: read back what ``extra_meta`` stored."""
        pass

    def _make_net_from_state(self, n_items: int, state: dict) -> SASRecNet:
        return self._make_net(n_items)
