"""Lightning training of sequential recommenders (SASRec and its multimodal MoE variant), through
the one Trainer factory (``mmrank.train.trainer``) the rerankers use.

The net knows nothing about optimisers: the ranker hands ``fit_net`` a loss function over
``(inputs, targets)`` batches (every position of each user's sequence at once) and this module
runs the loop, validates with full ranking (seen items masked) after every epoch, keeps the best
weights, stops early, and records when validation NDCG@10 first reached a target (the P3
benchmark's clock).

Everything a run needs to continue exactly is in the ``last`` checkpoint: weights, optimiser,
RNG states, and this module's validation state (best weights so far, epochs without gain, the
epoch history). The shuffle of every epoch is a pure function of (seed, epoch). So a run killed
with kill -9 and resumed ends with the same metrics as an uninterrupted one (tested).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from mmrank.sequential.data import Histories, SequenceSplit, training_batch
from mmrank.sequential.evaluation import evaluate_stage, mean_metrics
from mmrank.train.trainer import checkpoint_path, make_trainer, run_fit

FINAL_WEIGHTS = "final.safetensors"
FINAL_META = "final.json"


class _UserBatches(torch.utils.data.Dataset):
    """Training windows as a dataset; the collate function pads a list of windows into a batch.

    ``crop``: ``last`` one window per user (the most recent ``max_len + 1`` items); ``random`` one
    window per user at a random place each epoch; ``all`` every user's whole history cut into
    consecutive windows (ending at the most recent item), so each epoch trains on every position."""

    def __init__(self, histories: Histories, max_len: int, crop: str, seed: int) -> None:
        self.histories, self.max_len, self.crop, self.seed = histories, max_len, crop, seed
        self.rng = np.random.default_rng(seed)
        lens = histories.lengths()
        users = np.flatnonzero(lens >= 2)
        if crop == "all":
            # Window w of a user ends max_len*w items before its end; windows overlap by one item
            # so that every item is a target exactly once.
            self.windows = [(int(u), int(e)) for u in users for e in range(int(lens[u]), 1, -max_len)]
        else:
            self.windows = [(int(u), int(lens[u])) for u in users]

    def set_epoch(self, epoch: int) -> None:
        """Random crops of an epoch depend on (seed, epoch) only, so a resumed epoch crops alike."""
        self.rng = np.random.default_rng([self.seed, epoch])

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


class _EpochShuffle(DistributedSampler):
    """Shuffle depending on (seed, epoch) only (Lightning calls ``set_epoch`` every epoch)."""

    def __init__(self, data: _UserBatches, seed: int) -> None:
        super().__init__(data, num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=False)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)


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
        """The ranker's loss on one batch of (inputs, targets) windows."""
        loss = self.loss_fn(*batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch[0].shape[0])
        return loss

    def configure_optimizers(self):
        """AdamW over the trainable parameters only (staged schedules freeze the rest)."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


class FullRankingValidation(L.Callback):
    """After every epoch: full-ranking validation metrics, best weights kept, early stop, and the
    wall time at which NDCG@10 first reached ``target_ndcg`` (optionally stopping there).

    Its whole state travels in the checkpoint (``state_dict``), so a resumed run keeps the best
    weights, the patience count and the history of the epochs before the kill."""

    def __init__(self, ranker, split: SequenceSplit, patience: int, target_ndcg: float | None,
                 stop_at_target: bool, started: float, epoch_offset: int = 0, stage_name: str = "train",
                 log_path: str | None = None, validate_initial: bool = False) -> None:
        self.ranker, self.split = ranker, split
        self.validate_initial = validate_initial
        self.patience, self.target, self.stop_at_target = patience, target_ndcg, stop_at_target
        self.started, self.epoch_offset, self.stage_name = started, epoch_offset, stage_name
        self.best, self.best_state, self.bad_epochs = -1.0, None, 0
        self.history: list[dict] = []
        self.reached_at: float | None = None
        self.stopped = False
        self.log_path = log_path

    @property
    def state_key(self) -> str:
        """One key per stage, so the staged schedule's callbacks never read each other's state."""
        return f"FullRankingValidation[{self.stage_name}]"

    def state_dict(self) -> dict:
        """What the checkpoint keeps: best weights and score, patience count, history, target time."""
        return {"best": self.best, "best_state": self.best_state, "bad_epochs": self.bad_epochs,
                "history": self.history, "reached_at": self.reached_at, "stopped": self.stopped,
                "elapsed": time.perf_counter() - self.started}

    def load_state_dict(self, state: dict) -> None:
        """Restore a killed run's validation state (and rewrite epochs.jsonl up to it)."""
        self.best, self.best_state, self.bad_epochs = state["best"], state["best_state"], state["bad_epochs"]
        self.history, self.reached_at, self.stopped = list(state["history"]), state["reached_at"], state["stopped"]
        self.started = time.perf_counter() - state["elapsed"]
        if self.log_path:  # epochs after the checkpoint are retrained: the log restarts from it
            Path(self.log_path).write_text("".join(json.dumps(row) + "\n" for row in self.history))

    def on_train_start(self, trainer, pl_module) -> None:
        """Stop at once when resumed from the checkpoint of the epoch that ended the run; validate
        the initial weights as epoch 0 when asked (a warm-started model's start is a candidate)."""
        if self.stopped:  # resumed from the checkpoint of the epoch that stopped the run
            trainer.should_stop = True
        elif self.validate_initial and not self.history:
            self._validate(trainer, pl_module, self.epoch_offset)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        """Validate (full ranking), record the epoch, keep the best weights, decide on stopping."""
        self._validate(trainer, pl_module, self.epoch_offset + trainer.current_epoch + 1)
        trainer.should_stop = trainer.should_stop or self.stopped

    def _validate(self, trainer, pl_module, epoch: int) -> None:
        t0 = time.perf_counter()
        metrics = mean_metrics(evaluate_stage(self.ranker, self.split, "valid"))
        self.ranker.net_.train()
        ndcg = metrics["ndcg@10"]
        elapsed = time.perf_counter() - self.started
        loss = trainer.callback_metrics.get("train_loss") if epoch > self.epoch_offset else None
        self.history.append({"stage": self.stage_name, "epoch": epoch,
                             "seconds": round(elapsed, 3), "eval_seconds": round(time.perf_counter() - t0, 3),
                             "train_loss": None if loss is None else float(loss),
                             **{f"valid_{k}": round(v, 6) for k, v in metrics.items() if k != "rank"}})
        if epoch > self.epoch_offset:
            pl_module.log("valid_ndcg@10", ndcg)
        if self.log_path:  # one JSON line per epoch, readable while training runs
            with open(self.log_path, "a") as f:
                f.write(json.dumps(self.history[-1]) + "\n")
        if self.target is not None and self.reached_at is None and ndcg >= self.target:
            self.reached_at = elapsed
            if self.stop_at_target:
                self.stopped = True
        if ndcg > self.best:
            self.best, self.bad_epochs = ndcg, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.ranker.net_.state_dict().items()}
        elif epoch > self.epoch_offset:  # the initial state is a candidate, not an epoch without gain
            self.bad_epochs += 1
            self.stopped = self.stopped or self.bad_epochs >= self.patience


def fit_net(ranker, split: SequenceSplit, *, epochs: int = 200, batch_size: int = 128, lr: float = 1e-3,
            weight_decay: float = 0.0, patience: int = 10, seed: int = 0, crop: str = "all",
            target_ndcg: float | None = None, stop_at_target: bool = False,
            trainable: Callable[[str], bool] | None = None, stage_name: str = "train",
            epoch_offset: int = 0, started: float | None = None, progress: bool = False,
            log_dir: str | None = None, resume: bool = False, grad_clip: float | None = 5.0,
            deterministic: bool = False) -> list[dict]:
    """Train ``ranker.net_`` on ``split.train`` and load the best validation weights back.

    Args:
        ranker: a built SASRec-family ranker (``ranker.net_``, ``ranker.loss_fn()``).
        split: the leave-one-out split (validation = full ranking of ``valid`` targets).
        epochs / batch_size / lr / weight_decay / patience / seed / crop: the loop.
        target_ndcg / stop_at_target: record (and optionally stop at) the time validation NDCG@10
            first reaches the target.
        trainable: which parameters train (a predicate on their names; staged schedules).
        stage_name / epoch_offset / started: for staged schedules (history rows continue).
        log_dir: the stage's logs and checkpoints (``log_dir/checkpoints/last.ckpt``); a stage that
            finished leaves ``final.safetensors`` + ``final.json`` there.
        resume: continue from the stage's checkpoint; a finished stage is loaded, not retrained.
        grad_clip / deterministic / progress: passed to the Trainer factory.

    Returns:
        One history row per epoch (``reached_target_seconds`` on the row where the target was
        first reached).
    """
    from mmrank.train.fit import seed_everything

    if resume and log_dir and (Path(log_dir) / FINAL_META).exists():
        return _load_finished_stage(ranker, Path(log_dir))
    seed_everything(seed)
    if trainable is None:  # a ranker may train only part of its net (a warm-started content model)
        trainable = getattr(ranker, "trainable_parameter", None)
    started = time.perf_counter() if started is None else started
    data = _UserBatches(split.train, ranker.params.max_len, crop, seed)
    loader = DataLoader(data, batch_size=batch_size, sampler=_EpochShuffle(data, seed), collate_fn=data.collate)
    module = SequentialModule(ranker.net_, ranker.loss_fn(), lr, weight_decay, trainable)
    temp_dir = None if log_dir else tempfile.mkdtemp(prefix="mmrank-seq-")
    log_dir = Path(log_dir or temp_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    validation = FullRankingValidation(ranker, split, patience, target_ndcg, stop_at_target, started,
                                       epoch_offset, stage_name, str(log_dir / "epochs.jsonl"),
                                       validate_initial=bool(getattr(ranker, "warm_started_", False)))
    if not resume:
        (log_dir / "epochs.jsonl").write_text("")
    resume = resume and checkpoint_path(log_dir).exists()  # a stage the killed run never reached starts fresh
    trainer = make_trainer(log_dir=log_dir, max_epochs=epochs, callbacks=[validation], loggers=_csv_logger(log_dir, resume),
                           grad_clip=grad_clip, deterministic=deterministic, progress=progress,
                           label=stage_name if stage_name != "train" else "")
    run_fit(trainer, module, loader, resume=resume, log_dir=log_dir)
    if validation.best_state is not None:
        ranker.net_.load_state_dict(validation.best_state)
    _finish(ranker, validation)
    _save_finished_stage(ranker, validation.history, log_dir)
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return validation.history


def _finish(ranker, validation: FullRankingValidation) -> None:
    for p in ranker.net_.parameters():
        p.requires_grad_(True)
    ranker.net_.cpu().eval()
    if validation.reached_at is not None:
        for row in validation.history:
            if row["seconds"] >= validation.reached_at:
                row["reached_target_seconds"] = round(validation.reached_at, 3)
                break


def _save_finished_stage(ranker, history: list[dict], log_dir: Path) -> None:
    """The stage's final weights + history: a resumed staged run skips finished stages."""
    from safetensors.torch import save_file

    from mmrank.atomic_io import atomic_write_text

    tmp = log_dir / f".{FINAL_WEIGHTS}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in ranker.net_.state_dict().items()}, str(tmp))
    tmp.replace(log_dir / FINAL_WEIGHTS)
    atomic_write_text(log_dir / FINAL_META, json.dumps({"history": history}))


def _load_finished_stage(ranker, log_dir: Path) -> list[dict]:
    from safetensors.torch import load_file

    ranker.net_.load_state_dict(load_file(str(log_dir / FINAL_WEIGHTS)))
    ranker.net_.eval()
    return json.loads((log_dir / FINAL_META).read_text())["history"]


def _csv_logger(log_dir: Path, resume: bool):
    # A resumed run logs into a new version folder instead of overwriting the killed run's rows.
    version = "" if not resume else f"resume-{len(list((log_dir / 'csv').glob('resume-*')))}"
    return L.pytorch.loggers.CSVLogger(str(log_dir), name="csv", version=version)


__all__ = ["FullRankingValidation", "SequentialModule", "fit_net"]
