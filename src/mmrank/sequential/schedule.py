"""The seeds' staged schedule for the multimodal MoE: pretrain SASRec (IDs only) → pretrain the
content tower (transformer frozen, content scores) → joint (gates and content) → end to end.
Each stage trains through ``fit_net`` with its own logs and checkpoints (``logs/<stage>/``), so a
killed staged run resumes inside the stage it was in and skips the ones that finished."""

from __future__ import annotations

import time
from pathlib import Path

from mmrank.sequential.data import SequenceSplit
from mmrank.sequential.moe import SASRecMoERanker
from mmrank.sequential.training import fit_net


def _is_content(name: str) -> bool:
    return name.startswith("moe.")


def _is_gate_or_content(name: str) -> bool:
    return name.startswith(("moe.", "id_gate.", "score_gate."))


def fit_staged(ranker: SASRecMoERanker, split: SequenceSplit, options: dict, stage_epochs: int) -> list[dict]:
    """The seeds' schedule: pretrain SASRec (IDs only) -> pretrain the content tower (transformer
    frozen, content scores) -> joint (gates + content, transformer frozen) -> end to end."""
    net = ranker.net_
    started = time.perf_counter()
    stages = [
        ("pretrain_sasrec", "id", "id", lambda n: not _is_gate_or_content(n), 1.0),
        ("pretrain_content", "id", "content", _is_content, 1.0),
        ("joint", "fused", "fused", _is_gate_or_content, 1.0),
        ("end_to_end", "fused", "fused", None, 0.3),
    ]
    history: list[dict] = []
    for name, input_mode, score_mode, trainable, lr_scale in stages:
        net.input_mode, net.score_mode = input_mode, score_mode
        opts = dict(options, epochs=min(stage_epochs, options["epochs"]), lr=options["lr"] * lr_scale,
                    log_dir=str(Path(options["log_dir"]) / name))
        rows = fit_net(ranker, split, trainable=trainable, stage_name=name, epoch_offset=len(history),
                       started=started, **opts)
        history += rows
    net.input_mode = net.score_mode = "fused"
    return history
