"""``fit_ranker``: train a NeuralRanker's network through the one Trainer factory
(``mmrank.train.trainer``: devices, clipping, safetensors checkpoints, resume, determinism,
per-epoch progress line).

What is rerank-specific lives here: AdamW + ReduceLROnPlateau on validation nDCG@10 (in
``RankerModule``), early stopping, the best-on-validation checkpoint, CSV + TensorBoard logs
(+ MLflow when installed). Under ``torchrun`` (WORLD_SIZE > 1) it runs DDP; every rank ends with
the same best weights.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmrank.config import TrainSettings, validate_config
from mmrank.data.model import RankingSet
from mmrank.losses import check_loss_params, get_loss
from mmrank.train.trainer import (
    CHECKPOINTS,
    checkpoint_path,
    is_main_process,
    make_trainer,
    require_resume_checkpoint,
    run_fit,
    world,
)

__all__ = ["fit_ranker", "is_main_process", "seed_everything", "world"]


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


def _settings(settings: Any) -> TrainSettings:
    if settings is None:
        return TrainSettings()
    if isinstance(settings, dict):
        return validate_config(TrainSettings, settings, "train")
    return settings


def _rerank_callbacks(log_dir: Path, monitor: str, patience: int) -> tuple[list, Any]:
    """Best-on-validation checkpoint and early stopping (the factory adds "last" and the RNG state)."""
    from lightning.pytorch.callbacks import (
        EarlyStopping,
        LearningRateMonitor,
        ModelCheckpoint,
    )

    best = ModelCheckpoint(dirpath=str(log_dir / CHECKPOINTS), filename="best", monitor=monitor, mode="max", save_top_k=1,
                           enable_version_counter=False)
    return [best, EarlyStopping(monitor=monitor, mode="max", patience=patience), LearningRateMonitor(logging_interval="epoch")], best


def fit_ranker(ranker, train: RankingSet, valid: RankingSet | None, settings: Any = None, *,
               log_dir: str | Path | None = None, resume: bool = False) -> list[dict]:
    """Train ``ranker.network_`` in place (built by ``ranker.prepare(train)``) and keep the best
    validation weights.

    Args:
        ranker: a NeuralRanker (CoTRR, FusionV2).
        train / valid: query groups; without ``valid`` 10% of the training queries are held out.
        settings: ``TrainSettings`` (or a dict of its fields).
        log_dir: checkpoints and logs (a temp dir when None).
        resume: continue from ``log_dir/checkpoints/last.ckpt``.

    Returns:
        The per-epoch history (epochs counted from 1).
    """
    from mmrank.train.data import eval_loader, train_loader
    from mmrank.train.module import RankerModule

    settings = _settings(settings)
    check_loss_params(settings.loss, settings.loss_params)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    world_size, rank, _ = world()
    temp_dir = None
    if log_dir is None:
        temp_dir = log_dir = tempfile.mkdtemp(prefix="mmrank-fit-")
    log_dir = Path(log_dir)
    if resume:
        require_resume_checkpoint(log_dir)

    seed_everything(settings.seed)
    if valid is None or valid.n_queries == 0:
        train, valid = _split_validation(train, settings.seed)
    ranker.prepare(train)
    if settings.progress and rank == 0:  # say which tokens attention weighs (or that there is one)
        print(f"{ranker.kind}: {ranker.layout_note_}", file=sys.stderr, flush=True)
    train_data, valid_data = ranker.padded_queries(train), ranker.padded_queries(valid)
    module = RankerModule(ranker.network_, get_loss(settings.loss), settings.loss_params, settings, valid)
    callbacks, best = _rerank_callbacks(log_dir, module.monitor_key, settings.patience)
    trainer = make_trainer(log_dir=log_dir, max_epochs=settings.max_epochs, min_epochs=settings.min_epochs,
                           callbacks=callbacks, loggers=_loggers(log_dir, resume), grad_clip=settings.grad_clip,
                           accumulate=settings.accumulate, deterministic=settings.deterministic,
                           precision=settings.precision, progress=settings.progress)
    loaders = (
        train_loader(train_data, settings.batch_queries, settings.max_list_len, settings.seed, world_size, rank),
        eval_loader(valid_data, ranker.params.score_batch_queries),
    )
    run_fit(trainer, module, *loaders, resume=resume, log_dir=log_dir)
    trainer.strategy.barrier()
    _keep_best_weights(ranker, module, best, log_dir)
    ranker.best_epoch_ = _best_epoch(module.history, module.monitor_key)
    if temp_dir is not None and world_size == 1:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return module.history


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (and dataloader workers) before any weight is created."""
    import lightning.pytorch as pl

    pl.seed_everything(seed, workers=True, verbose=False)


def _keep_best_weights(ranker, module, best, log_dir: Path) -> None:
    """Load the best validation weights (every rank reads the same file) and the whole curve."""
    from mmrank.train.checkpoint_io import load_state

    last = checkpoint_path(log_dir)
    best_path = best.best_model_path or str(last)
    if best_path and Path(best_path).exists():
        state = load_state(best_path)["state_dict"]
        ranker.network_.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
        if last.exists() and "mmrank_history" in load_state(last):
            module.history = load_state(last)["mmrank_history"]
    ranker.network_.eval()
    ranker.history_ = module.history


def _best_epoch(history: list[dict], monitor: str) -> int | None:
    vals = [(h[monitor], -h["epoch"]) for h in history if h.get(monitor) is not None]
    return -max(vals)[1] if vals else None
