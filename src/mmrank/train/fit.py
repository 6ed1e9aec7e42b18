"""``fit_ranker``: train a NeuralRanker's network with Lightning.

AdamW + ReduceLROnPlateau on validation nDCG@10, gradient clipping and accumulation, mixed
precision on GPUs, early stopping, checkpoints (safetensors, see ``checkpoint_io``) and resume,
seeded + optionally deterministic, rich progress bar, CSV + TensorBoard logs (+ MLflow when
installed). Under ``torchrun`` (WORLD_SIZE > 1) it runs DDP (gloo on CPU, nccl on GPUs); every
rank ends with the same best weights.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrank.config import TrainSettings, validate_config
from mmrank.data.model import RankingSet
from mmrank.losses import check_loss_params, get_loss

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"


def world() -> tuple[int, int, int]:
    """(world_size, global rank, local world size) from the torchrun environment."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return ws, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", str(ws)))


def is_main_process() -> bool:
    return world()[1] == 0


def _precision(setting: str) -> str:
    if setting != "auto":
        return "32-true" if setting == "32" else setting
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _loggers(log_dir: Path, resume: bool) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    # A resumed run logs into a new version folder: the CSV logger would otherwise overwrite the
    # killed run's rows (the whole curve also lives in the checkpoint, see RankerModule).
    version = "" if not resume else f"resume-{len(list((log_dir / 'csv').glob('resume-*')))}"
    loggers = [CSVLogger(str(log_dir), name="csv", version=version),
               TensorBoardLogger(str(log_dir), name="tensorboard", version=version)]
    try:
        import mlflow  # noqa: F401
        from lightning.pytorch.loggers import MLFlowLogger

        loggers.append(MLFlowLogger(experiment_name="mmrank", tracking_uri=(log_dir / "mlruns").resolve().as_uri()))
    except ImportError:
        pass
    return loggers


def _split_validation(train: RankingSet, seed: int) -> tuple[RankingSet, RankingSet]:
    """No validation set given: hold out 10% of the training queries (at least one)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(train.n_queries)
    n_val = max(1, train.n_queries // 10)
    return train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))


def fit_ranker(ranker, train: RankingSet, valid: RankingSet | None, settings: Any = None, *,
               log_dir: str | Path | None = None, resume: bool = False) -> list[dict]:
    """Train ``ranker.network_`` in place (built by ``ranker.prepare(train)``); keeps the best
    validation weights. ``log_dir`` holds checkpoints and logs (a temp dir when None);
    ``resume`` continues from ``log_dir/checkpoints/last.ckpt``. Returns the epoch history."""
    import logging

    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
    from lightning.pytorch.strategies import DDPStrategy

    from mmrank.train.callbacks import RngStateCallback
    from mmrank.train.checkpoint_io import SafetensorsCheckpointIO, load_state
    from mmrank.train.data import eval_loader, train_loader
    from mmrank.train.module import RankerModule

    if settings is None:
        settings = TrainSettings()
    elif isinstance(settings, dict):
        settings = validate_config(TrainSettings, settings, "train")
    check_loss_params(settings.loss, settings.loss_params)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    world_size, rank, local_size = world()
    # Lightning's INFO lines (GPU available, tips) drown the progress bar; warnings still show.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    temp_dir = None
    if log_dir is None:
        temp_dir = log_dir = tempfile.mkdtemp(prefix="mmrank-fit-")
    log_dir = Path(log_dir)
    ckpt_dir = log_dir / CHECKPOINTS
    last = ckpt_dir / LAST
    if resume and not last.exists():
        from mmrank.errors import DataError

        raise DataError("nothing to resume: no training checkpoint", path=last, hint="train without --resume first")

    pl.seed_everything(settings.seed, workers=True, verbose=False)
    if valid is None or valid.n_queries == 0:
        train, valid = _split_validation(train, settings.seed)
    ranker.prepare(train)
    train_data, valid_data = ranker.padded_queries(train), ranker.padded_queries(valid)
    module = RankerModule(ranker.network_, get_loss(settings.loss), settings.loss_params, settings, valid)
    monitor = module.monitor_key

    best = ModelCheckpoint(dirpath=str(ckpt_dir), filename="best", monitor=monitor, mode="max", save_top_k=1,
                           enable_version_counter=False)
    # "last" is rewritten at the end of every training epoch (after its validation): the point a
    # resumed run restarts from. (save_last=True would only refresh it when "best" improves.)
    latest = ModelCheckpoint(dirpath=str(ckpt_dir), filename="last", monitor=None, save_top_k=1,
                             save_on_train_epoch_end=True, enable_version_counter=False)
    callbacks = [best, latest, EarlyStopping(monitor=monitor, mode="max", patience=settings.patience), RngStateCallback(),
                 LearningRateMonitor(logging_interval="epoch")]
    if settings.progress:
        callbacks.append(RichProgressBar(leave=True))
    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    strategy: Any = "auto"
    if world_size > 1:
        strategy = DDPStrategy(process_group_backend="nccl" if accelerator == "gpu" else "gloo", find_unused_parameters=False)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=local_size if world_size > 1 else 1,
        num_nodes=max(1, world_size // local_size),
        strategy=strategy,
        precision=_precision(settings.precision),
        max_epochs=settings.max_epochs,
        min_epochs=settings.min_epochs,
        gradient_clip_val=settings.grad_clip,
        accumulate_grad_batches=settings.accumulate,
        deterministic=settings.deterministic,
        callbacks=callbacks,
        logger=_loggers(log_dir, resume),
        plugins=[SafetensorsCheckpointIO()],
        default_root_dir=str(log_dir),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=settings.progress,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    loaders = (
        train_loader(train_data, settings.batch_queries, settings.max_list_len, settings.seed, world_size, rank),
        eval_loader(valid_data, ranker.params.score_batch_queries),
    )
    with warnings.catch_warnings():
        # Lightning nags about worker counts; query batches are built in-process on purpose
        # (padding is cheap, workers would copy the data set).
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isn't a multiple of.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        if resume:  # the checkpoint folder is expected to hold the killed run's files
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        trainer.fit(module, *loaders, ckpt_path=str(last) if resume else None)

    # Keep the best validation weights (every rank reads the same file).
    trainer.strategy.barrier()
    best_path = best.best_model_path or str(last)
    if best_path and Path(best_path).exists():
        state = load_state(best_path)["state_dict"]
        ranker.network_.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
        if "mmrank_history" in load_state(last):
            module.history = load_state(last)["mmrank_history"]
    ranker.network_.eval()
    ranker.history_ = module.history
    ranker.best_epoch_ = _best_epoch(module.history, monitor)
    if temp_dir is not None and world_size == 1:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return module.history


def _best_epoch(history: list[dict], monitor: str) -> int | None:
    vals = [(h[monitor], -h["epoch"]) for h in history if h.get(monitor) is not None]
    return -max(vals)[1] if vals else None
