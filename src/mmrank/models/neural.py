"""``NeuralRanker``: the shared shell of the torch rerankers (CoTRR, FusionV2) — parameters,
token layout, fit (through ``mmrank.train``), pure scoring, MC-dropout uncertainty, attention
shares, save/load as safetensors + JSON. Subclasses set ``kind``, ``Params`` and ``network_class``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mmrank.config import Strict
from mmrank.data.model import RankingSet
from mmrank.errors import ConfigError, DataError
from mmrank.models.fused_scoring import FusedScorer, near_tie_queries, weights_version
from mmrank.models.params import WithParams
from mmrank.models.storage import load_tensors, save_tensors
from mmrank.models.tokens import TokenSpec, describe_layout, token_layout


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


class NeuralRanker(WithParams):
    """Ranker-protocol shell around a torch network: parameters, token layout, fit/score/save/load.

    Subclasses set ``kind``, ``Params`` (a pydantic model) and ``network_class``."""

    kind = "neural"
    Params: type[Strict] = Strict
    network_class: type[nn.Module] = nn.Module

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.layout_: list[TokenSpec] | None = None
        self.input_dims_: dict[str, int] | None = None
        self.layout_note_: str | None = None  # which tokens prepare() chose, in one line
        self.network_: nn.Module | None = None
        self.history_: list[dict] = []
        self._fused_: dict[tuple, tuple] = {}  # (precision, engine) -> (weights version, FusedScorer)

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
        """The width of every input matrix the fitted layout reads from, as the training data had
        it (scoring requires the same widths, even where explicit ``token_groups`` leave columns
        unused).

        Returns:
            ``{"features.<modality>": d, "query_features.<name>": d}``; needs a layout (``prepare``,
            ``fit`` or ``load`` first).
        """
        if self.input_dims_ is not None:
            return dict(self.input_dims_)
        dims: dict[str, int] = {}  # a model saved before widths were recorded: the columns it reads
        for t in self.layout_:
            key = f"{t.source}.{t.modality}"
            dims[key] = max(dims.get(key, 0), max(t.columns) + 1)
        return dims

    @staticmethod
    def _widths(rset: RankingSet, layout: list[TokenSpec]) -> dict[str, int]:
        mats = {"features": rset.modality_dims, "query_features": rset.query_feature_dims}
        return {f"{t.source}.{t.modality}": int(mats[t.source][t.modality]) for t in layout}

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
        """Check ``rset`` against the model's inputs and wrap it for batching.

        Args:
            rset: data with every modality and query feature of the layout, at the trained widths.

        Returns:
            :class:`PaddedQueries` over :meth:`input_matrix` of ``rset``.

        Raises:
            DataError: when a needed modality is missing or its width differs from training.
        """
        self._check_dims(rset)
        return PaddedQueries(self.input_matrix(rset), rset)

    # -- building ------------------------------------------------------------------------------
    def network_kwargs(self) -> dict:
        """Return the keyword arguments ``network_class`` is built with, taken from ``params``.

        Subclasses whose network takes other arguments override this.

        Returns:
            ``d_model``, ``n_layers``, ``n_heads``, ``ffn_mult``, ``dropout``, ``list_context``,
            ``mlp_hidden``, ``init_temperature``.
        """
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
        self.input_dims_ = self._widths(train, self.layout_)
        self.layout_note_ = describe_layout(self.layout_, self.input_dims_)
        self.network_ = self._build_network()
        x = self.input_matrix(train)
        mean, std = x.mean(axis=0), x.std(axis=0)
        self.network_.in_mean.copy_(torch.from_numpy(mean))
        self.network_.in_std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0).astype(np.float32)))
        return self

    def n_parameters(self) -> int:
        """Count the network's parameters (all of them, trainable or not; buffers excluded).

        Returns:
            The number of scalar parameters; needs a built network.
        """
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

    def score(self, rset: RankingSet) -> np.ndarray:
        """Score every candidate of ``rset`` on the fused inference path (dropout off).

        The path (:class:`~mmrank.models.fused_scoring.FusedScorer`) computes what the network does
        in eval mode, without padding and with fewer passes over memory; its weight snapshot is
        rebuilt whenever a weight changes, so scoring during or after training sees the current
        weights. ``params.score_precision`` picks float32 (default) or bfloat16 matrix products,
        ``params.score_engine`` ONNX Runtime (the default for float32) or eager torch. In float32,
        queries with a near-tie among their first ``params.score_tie_depth`` positions (scores closer
        than ``params.score_tie_tolerance``) are scored again by the module forward, so that
        summation-order noise cannot swap those candidates.
        Scoring is pure: the same model and data give the same scores. :meth:`score_module` is the
        network's own forward (the reference the fused path is tested against).

        Args:
            rset: data with the modalities the model was trained on.

        Returns:
            (N,) float64 scores in ``rset``'s candidate order; higher ranks first.

        Raises:
            DataError: when the model is not fitted, or the data lacks a modality or has other widths.

        Example:
            >>> from mmrank.data.formats import load_ranking
            >>> from mmrank.models.cotrr import CoTRR
            >>> model = CoTRR.load("runs/cotrr-ml100k")  # doctest: +SKIP
            >>> scores = model.score(load_ranking("test.parquet"))  # doctest: +SKIP
        """
        self._require_fitted()
        self._check_dims(rset)
        scores = self.fused_scorer().score(self.input_matrix(rset), rset.offsets).astype(np.float64)
        tolerance = getattr(self.params, "score_tie_tolerance", 0.0)
        if tolerance > 0 and getattr(self.params, "score_precision", "fp32") == "fp32":
            self._rescore_near_ties(rset, scores, tolerance)
        return scores

    def _rescore_near_ties(self, rset: RankingSet, scores: np.ndarray, tolerance: float) -> None:
        """Replace, in place, the scores of queries with a near-tie among their leading positions
        by the module forward's (``near_tie_queries``): there the order is the module's own, not
        an accident of the fast path's summation order."""
        # one query per module call: a re-scored query's scores depend on its own candidates only,
        # not on which other queries happened to be flagged with it (padding changes the bits)
        for q in near_tie_queries(scores, rset.offsets, self.params.score_tie_depth, tolerance).tolist():
            scores[rset.offsets[q]:rset.offsets[q + 1]] = self.score_module(rset.subset([q]))

    def fused_scorer(self, precision: str | None = None, engine: str | None = None) -> FusedScorer:
        """The fused inference path over the network's current weights (cached until a weight changes).

        Args:
            precision: ``"fp32"`` or ``"bf16"``; None = ``params.score_precision``.
            engine: ``"auto"``, ``"onnxruntime"`` or ``"torch"``; None = ``params.score_engine``.

        Returns:
            A :class:`~mmrank.models.fused_scoring.FusedScorer`.
        """
        self._require_fitted()
        precision = precision or getattr(self.params, "score_precision", "fp32")
        engine = engine or getattr(self.params, "score_engine", "auto")
        version = weights_version(self.network_)
        cached = self._fused_.get((precision, engine))
        if cached is None or cached[0] != version:
            scorer = FusedScorer(self.network_, precision=precision, engine=engine)
            cached = self._fused_[(precision, engine)] = (version, scorer)
        return cached[1]

    @torch.no_grad()
    def score_module(self, rset: RankingSet) -> np.ndarray:
        """Score with the network's own forward in eval mode, queries padded in chunks of
        ``params.score_batch_queries`` (the training-time code path; the reference for
        :meth:`score`). The network's training/eval mode is restored afterwards.

        Args:
            rset: data with the modalities the model was trained on.

        Returns:
            (N,) float64 scores in ``rset``'s candidate order.
        """
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
        """Write the network's weights to ``model.safetensors`` and the rest to ``model.json``.

        ``model.json`` holds the parameters, token layout, input widths, parameter count and training
        history, so :meth:`load` can rebuild the network without the training data.

        Args:
            directory: the run directory (created if needed).

        Raises:
            DataError: when the model is not fitted.
        """
        self._require_fitted()
        tensors = {k: v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()}
        meta = {
            "params": self.get_params(),
            "layout": [asdict(t) | {"columns": list(t.columns)} for t in self.layout_],
            "input_dims": self.input_dims(),
            "layout_note": self.layout_note_,
            "n_parameters": self.n_parameters(),
            "history": self.history_,
        }
        save_tensors(directory, self.kind, tensors, meta)

    @classmethod
    def load(cls, directory: str | Path) -> "NeuralRanker":
        """Rebuild a model written by :meth:`save`, in eval mode, ready to score.

        Args:
            directory: the run directory.

        Returns:
            An instance of the class ``load`` is called on.

        Raises:
            DataError: when ``model.json`` is missing or unreadable, was written by another kind, or
                the tensor file's checksum does not match.
            ConfigError: when the stored parameters are not valid for this class.
        """
        tensors, meta = load_tensors(directory, cls.kind)
        model = cls(**meta["params"])
        model.layout_ = [TokenSpec(t["name"], t["modality"], t["source"], tuple(t["columns"])) for t in meta["layout"]]
        model.input_dims_ = {k: int(v) for k, v in meta["input_dims"].items()} if "input_dims" in meta else None
        model.layout_note_ = meta.get("layout_note")
        model.network_ = model._build_network()
        model.network_.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in tensors.items()})
        model.network_.eval()
        model.history_ = meta.get("history", [])
        return model
