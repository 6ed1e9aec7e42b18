"""Lightning training of sequential recommenders (SASRec and its multimodal MoE variant).

The net knows nothing about optimisers: the ranker hands ``fit_net`` a loss function over
``(inputs, targets)`` batches (every position of each user's sequence at once) and this module
runs the loop, validates with full ranking (seen items masked) after every epoch, keeps the
best weights, stops early, and records when validation NDCG@10 first reached a target (the P3
benchmark's clock).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path
from typing import Callable, Iterable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from mmrank.sequential.data import Histories, SequenceSplit, training_batch
from mmrank.sequential.full_ranking import full_ranking_metrics, sampled_ranking_metrics

KS = (5, 10, 20)
# Users scored per evaluation chunk. Small chunks keep a chunk's activations in cache: on ML-100K
# (943 users, max_len 50) 64 evaluates 1.5x faster than 256 on one core (benchmarks/results/seqrec.md, P7).
EVAL_CHUNK = 64


def seen_csr(histories: Histories) -> tuple[np.ndarray, np.ndarray]:
    """Seen items per user as CSR over score columns; column 0 (padding) is seen by everyone,
    so it can never compete with a real item."""
    lens = histories.lengths() + 1
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    indices = np.zeros(indptr[-1], dtype=np.int64)
    for u in range(histories.n_users):
        indices[indptr[u] + 1 : indptr[u + 1]] = histories.of(u)
    return indptr, indices


def evaluate_stage(ranker, split: SequenceSplit, stage: str, ks: Iterable[int] = KS, *,
                   sampled_negatives: int = 0, seed: int = 0, chunk_size: int = EVAL_CHUNK) -> dict[str, np.ndarray]:
    """Per-user metrics of ``stage`` ("valid"/"test"): full ranking over all items with each
    user's seen items masked; with ``sampled_negatives`` > 0 also ``sampled_*`` metrics (target
    among that many random unseen items). Users without a held-out item are left out; the
    returned ``users`` array says which dense users the rows are."""
    histories = split.history_for(stage)
    targets = split.target_for(stage)
    evaluated = np.flatnonzero(targets > 0)
    indptr, indices = seen_csr(histories)

    def ranking_args(users: np.ndarray) -> tuple:
        """What the metric functions take for these users, rows in ``users`` order."""
        sub_indptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[users])]).astype(np.int64)
        sub_indices = np.concatenate([indices[indptr[u]:indptr[u + 1]] for u in users]) if len(users) else indices[:0]

        def score(rows: torch.Tensor) -> torch.Tensor:
            return ranker.score_users(torch.as_tensor(users[rows.numpy()]), histories)

        return score, len(users), targets[users], sub_indptr, sub_indices, tuple(ks)

    # Full ranking scores users in order of history length, so each chunk holds histories of
    # similar length and pads little; its rows are put back in user order. The sampled protocol
    # keeps user order: its negatives are drawn per row.
    order = np.argsort(histories.lengths()[evaluated], kind="stable")
    with getattr(ranker, "scoring_session", contextlib.nullcontext)():
        full = full_ranking_metrics(*ranking_args(evaluated[order]), chunk_size=chunk_size)
        out = {k: v[np.argsort(order)] for k, v in full.items()}
        if sampled_negatives:
            sampled = sampled_ranking_metrics(*ranking_args(evaluated), n_negatives=sampled_negatives, seed=seed,
                                              chunk_size=chunk_size)
            out.update({f"sampled_{k}": v for k, v in sampled.items()})
    out["users"] = evaluated
    return out


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in per_user.items() if k != "users"}


class _UserBatches(torch.utils.data.Dataset):
    """Training windows as a dataset; the collate function pads a list of windows into a batch.

    ``crop``: ``last`` one window per user (the most recent ``max_len + 1`` items); ``random`` one
    window per user at a random place each epoch; ``all`` every user's whole history cut into
    consecutive windows (ending at the most recent item), so each epoch trains on every position."""

    def __init__(self, histories: Histories, max_len: int, crop: str, seed: int) -> None:
        self.histories, self.max_len, self.crop = histories, max_len, crop
        self.rng = np.random.default_rng(seed)
        lens = histories.lengths()
        users = np.flatnonzero(lens >= 2)
        if crop == "all":
            # Window w of a user ends max_len*w items before its end; windows overlap by one item
            # so that every item is a target exactly once.
            self.windows = [(int(u), int(e)) for u in users for e in range(int(lens[u]), 1, -max_len)]
        else:
            self.windows = [(int(u), int(lens[u])) for u in users]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.windows[i]

    def collate(self, windows: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = []
        for u, end in windows:
            if self.crop == "random" and end > self.max_len + 1:
                end = int(self.rng.integers(self.max_len + 1, end + 1))
            seqs.append(self.histories.of(u)[max(0, end - self.max_len - 1):end])
        h = Histories(np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64),
                      np.concatenate(seqs))
        inputs, targets = training_batch(h, np.arange(len(seqs)), self.max_len)
        return torch.from_numpy(inputs), torch.from_numpy(targets)


class SequentialModule(L.LightningModule):
    """Optimises ``loss_fn(inputs, targets)`` over the parameters ``trainable`` selects."""

    def __init__(self, net: torch.nn.Module, loss_fn: Callable, lr: float, weight_decay: float,
                 trainable: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.net, self.loss_fn = net, loss_fn
        self.lr, self.weight_decay = lr, weight_decay
        for name, p in net.named_parameters():
            p.requires_grad_(trainable is None or trainable(name))

    def training_step(self, batch, batch_idx):
        loss = self.loss_fn(*batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch[0].shape[0])
        return loss

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


class FullRankingValidation(L.Callback):
    """After every epoch: full-ranking validation metrics, best weights kept, early stop, and the
    wall time at which NDCG@10 first reached ``target_ndcg`` (optionally stopping there)."""

    def __init__(self, ranker, split: SequenceSplit, patience: int, target_ndcg: float | None,
                 stop_at_target: bool, started: float, epoch_offset: int = 0, stage_name: str = "train",
                 log_path: str | None = None) -> None:
        self.ranker, self.split = ranker, split
        self.patience, self.target, self.stop_at_target = patience, target_ndcg, stop_at_target
        self.started, self.epoch_offset, self.stage_name = started, epoch_offset, stage_name
        self.best, self.best_state, self.bad_epochs = -1.0, None, 0
        self.history: list[dict] = []
        self.reached_at: float | None = None
        self.log_path = log_path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        t0 = time.perf_counter()
        metrics = mean_metrics(evaluate_stage(self.ranker, self.split, "valid"))
        self.ranker.net.train()
        ndcg = metrics["ndcg@10"]
        elapsed = time.perf_counter() - self.started
        loss = trainer.callback_metrics.get("train_loss")
        self.history.append({"stage": self.stage_name, "epoch": self.epoch_offset + trainer.current_epoch + 1,
                             "seconds": round(elapsed, 3), "eval_seconds": round(time.perf_counter() - t0, 3),
                             "train_loss": None if loss is None else float(loss),
                             **{f"valid_{k}": round(v, 6) for k, v in metrics.items() if k != "rank"}})
        pl_module.log("valid_ndcg@10", ndcg, prog_bar=True)
        if self.log_path:  # one JSON line per epoch, readable while training runs
            with open(self.log_path, "a") as f:
                f.write(json.dumps(self.history[-1]) + "\n")
        if self.target is not None and self.reached_at is None and ndcg >= self.target:
            self.reached_at = elapsed
            if self.stop_at_target:
                trainer.should_stop = True
        if ndcg > self.best:
            self.best, self.bad_epochs = ndcg, 0
            self.best_state = copy.deepcopy(self.ranker.net.state_dict())
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.should_stop = True


def fit_net(ranker, split: SequenceSplit, *, epochs: int = 200, batch_size: int = 128, lr: float = 1e-3,
            weight_decay: float = 0.0, patience: int = 10, seed: int = 0, crop: str = "all",
            target_ndcg: float | None = None, stop_at_target: bool = False,
            trainable: Callable[[str], bool] | None = None, stage_name: str = "train",
            epoch_offset: int = 0, started: float | None = None, progress: bool = False,
            log_dir: str | None = None) -> list[dict]:
    """Train ``ranker.net`` on ``split.train``; returns one history row per epoch (with
    ``reached_target_seconds`` on the row where the target was first reached). The best
    validation weights are loaded back at the end."""
    L.seed_everything(seed, workers=False, verbose=False)
    started = time.perf_counter() if started is None else started
    data = _UserBatches(split.train, ranker.params["max_len"], crop, seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, collate_fn=data.collate,
                        generator=torch.Generator().manual_seed(seed))
    module = SequentialModule(ranker.net, ranker.loss_fn(), lr, weight_decay, trainable)
    log_path = None
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = str(Path(log_dir) / "epochs.jsonl")
    validation = FullRankingValidation(ranker, split, patience, target_ndcg, stop_at_target, started,
                                       epoch_offset, stage_name, log_path)
    logger = L.pytorch.loggers.CSVLogger(log_dir, name=stage_name) if log_dir else False
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger,
                        callbacks=[validation], enable_checkpointing=False,
                        enable_progress_bar=progress, enable_model_summary=False,
                        num_sanity_val_steps=0, gradient_clip_val=5.0, log_every_n_steps=1)
    trainer.fit(module, loader)
    if validation.best_state is not None:
        ranker.net.load_state_dict(validation.best_state)
    for p in ranker.net.parameters():
        p.requires_grad_(True)
    ranker.net.eval()
    if validation.reached_at is not None:
        for row in validation.history:
            if row["seconds"] >= validation.reached_at:
                row["reached_target_seconds"] = round(validation.reached_at, 3)
                break
    return validation.history
