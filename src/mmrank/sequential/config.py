"""Configuration of sequential-recommendation runs (``task: sequential``).

Validated by pydantic through ``mmrank.config.load_config`` before any data is read, so a typo
in a key or a wrong type is a one-line ``ConfigError``. Sections: ``data`` (where the RecBole
atomic files and the item features are), ``model`` (kind + its parameters), ``train`` (loop,
early stopping, joint vs staged schedule), ``evaluate`` (cut-offs; sampled evaluation next to
the full one).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mmrank.config import Strict
from mmrank.models.registry import kinds


class ColdStart(Strict):
    """Cold-start split (``mmrank.sequential.coldstart``): leave-one-out, then a seeded random
    ``fraction`` of the valid/test target items is held out of training entirely."""

    fraction: float = Field(0.2, gt=0, lt=1, description="share of the distinct target items held out")
    seed: int = 0


class Folds(Strict):
    """One user fold of ``k`` (``mmrank.sequential.folds``): only the fold's users are evaluated;
    the other users' valid/test events train. ``mmrank evaluate --folds K`` sets this per fold."""

    k: int = Field(5, ge=2)
    fold: int = Field(0, ge=0)
    seed: int = 0


class SequentialData(Strict):
    """``path``: interaction data in any interaction format (``format``: recbole, mmrec,
    movielens, sasrec, table — csv/tsv/parquet; detected when omitted; ``format_options`` go to
    the reader, e.g. ``{user_ids: line}`` for SASRec text without user ids). Its item file
    (RecBole ``.item``, MovieLens ``u.item``/``movies.dat``, MMRec ``*_feat.npy`` rows) is the
    catalogue: those items are ranked even without training interactions.
    ``split``: ``auto`` (default), ``leave_one_out``, ``given`` (the data's own x_label split),
    ``targets`` or ``random`` (see ``mmrank.sequential.protocols``); ``split_seed`` seeds
    ``random``. ``valid_targets`` / ``test_targets``: files of held-out (user, item) events in
    any interaction format (``targets_format``), which make ``path`` the training events.
    ``item_features``: a folder written by ``mmrank data item-features`` or ``mmrank data
    features`` (``items.safetensors`` + ``items.json``); needed by ``sasrec_moe`` /
    ``sasrec_content`` (and used by an ID-only model's ``content_nearest`` cold-start fallback).
    ``modalities``: which of its modalities to use (default: all). ``cold_start``: hold a share of
    the valid/test target items out of training after the split (cold-start evaluation);
    ``folds``: evaluate one user fold (k-fold evaluation)."""

    path: str
    format: str | None = None
    format_options: dict[str, Any] = Field(default_factory=dict)
    split: str = "auto"
    split_seed: int = 0
    valid_targets: str | None = None
    test_targets: str | None = None
    targets_format: str | None = None
    item_features: str | None = None
    modalities: list[str] | None = None
    cold_start: ColdStart | None = None
    folds: Folds | None = None

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        from mmrank.sequential.protocols import protocol_names

        if value not in protocol_names():
            raise ValueError(f"unknown split {value!r} — allowed: {list(protocol_names())}")
        return value

    @model_validator(mode="after")
    def _targets_fit_split(self) -> "SequentialData":
        has_targets = self.valid_targets is not None or self.test_targets is not None
        if has_targets and self.test_targets is None:
            raise ValueError("data.valid_targets needs data.test_targets too (the held-out test events)")
        if has_targets and self.split not in ("auto", "targets"):
            raise ValueError(f"data.split: {self.split} cannot be used with target files — use auto or targets")
        if self.split == "targets" and not has_targets:
            raise ValueError("data.split: targets needs data.test_targets (and optionally data.valid_targets)")
        return self


class SequentialModel(Strict):
    """``kind``: ``sasrec`` (ID-only), ``sasrec_content`` (ID + gated content, content that cannot
    hurt), ``sasrec_moe`` (multimodal MoE), or the baselines ``popularity`` / ``most_recent``.
    ``params`` go to the model's constructor (checked there): hidden, layers, heads, max_len,
    dropout, ffn (feed-forward width, default hidden), loss (ce | sampled_softmax | gbce | bpr),
    n_negatives, gbce_t, the contrastive cl_* options; for sasrec_moe also n_experts,
    expert_dropout, user_gate, balance_weight; for sasrec_content adapter, id_dropout,
    modality_dropout, gate_init, init_from, ..."""

    kind: Literal[kinds("sequential")] = "sasrec"  # type: ignore[valid-type]  (the registry's sequential kinds)
    params: dict[str, Any] = Field(default_factory=dict)


class SequentialTrain(Strict):
    """``schedule``: ``joint`` trains everything together; ``staged`` (sasrec_moe only) runs
    pretrain SASRec (ID) -> pretrain content tower (transformer frozen) -> joint (gates and content,
    transformer frozen) -> end to end, ``stage_epochs`` epochs at most each (early stopped).
    ``target_ndcg``: record the wall time at which validation NDCG@10 first reaches it
    (``stop_at_target`` stops there: the P3 benchmark's clock)."""

    epochs: int = Field(200, ge=1)
    batch_size: int = Field(128, ge=1, description="users (whole sequences) per step")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    patience: int = Field(10, ge=1, description="epochs without validation NDCG@10 gain")
    crop: Literal["all", "random", "last"] = Field("all", description="training windows: all | random | last")
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    schedule: Literal["joint", "staged"] = "joint"
    stage_epochs: int = Field(40, ge=1)
    target_ndcg: float | None = Field(None, gt=0, le=1)
    stop_at_target: bool = False
    progress: bool = Field(True, description="one line per epoch on stderr")
    grad_clip: float | None = Field(5.0, gt=0, description="gradient norm clipping (None: off)")
    deterministic: bool = Field(False, description="deterministic torch kernels (identical metrics run to run)")


class SequentialEvaluate(Strict):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    sampled_negatives: int = Field(100, ge=0, description="0: no sampled evaluation")
    chunk_size: int = Field(64, ge=1, description="users scored at once (64: activations stay in cache)")


class SequentialConfig(Strict):
    task: Literal["sequential"] = "sequential"
    name: str | None = None
    data: SequentialData
    model: SequentialModel = Field(default_factory=SequentialModel)
    train: SequentialTrain = Field(default_factory=SequentialTrain)
    evaluate: SequentialEvaluate = Field(default_factory=SequentialEvaluate)
