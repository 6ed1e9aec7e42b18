"""The one Trainer factory both tasks train through (rerankers and sequential recommenders).

``make_trainer`` owns everything that is not model-specific, so it behaves the same everywhere:

* device: a GPU when one is present, the CPU otherwise (DDP over nccl/gloo under ``torchrun``);
* gradient clipping and accumulation from the config;
* a ``last`` checkpoint after every training epoch, as safetensors + JSON (never pickle), with the
  Python/numpy/torch RNG states, so ``--resume`` after kill -9 continues where the run stopped;
* ``deterministic`` (deterministic torch kernels; with the seed, identical metrics run to run);
* progress as one plain line per epoch on stderr (clean in a pipe), and none of Lightning's
  tips, INFO lines or known-harmless warnings.

``run_fit`` calls ``trainer.fit`` with the warnings filtered and the resume checkpoint checked.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"

# Messages Lightning prints that say nothing to an mmrank user (batches are built in-process on
# purpose; the ``LeafSpec`` deprecation comes from torch's pytree inside Lightning itself).
_HARMLESS = (
    ".*does not have many workers.*",
    ".*isn't a multiple of.*",
    ".*LeafSpec.*",
    ".*exists and is not empty.*",
    ".*GPU available but not used.*",
    ".*Checkpoint directory.*",
    ".*litlogger.*",
    ".*You are using a CUDA device.*",
    ".*The number of training batches.*",
)


def world() -> tuple[int, int, int]:
    """(world_size, global rank, local world size) from the torchrun environment."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    return ws, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", str(ws)))


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and prints."""
    return world()[1] == 0


def accelerator() -> str:
    """``"gpu"`` when CUDA is usable, else ``"cpu"``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolve_precision(setting: str) -> str:
    """``auto`` → bf16/16 mixed precision on a GPU, full fp32 on the CPU."""
    if setting != "auto":
        return "32-true" if setting == "32" else setting
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def quiet_lightning() -> None:
    """Silence Lightning's INFO chatter (device summary, tips); real warnings still show."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def checkpoint_path(log_dir: str | Path) -> Path:
    """Where a run's resume checkpoint lives: ``LOG_DIR/checkpoints/last.ckpt``."""
    return Path(log_dir) / CHECKPOINTS / LAST


def require_resume_checkpoint(log_dir: str | Path) -> Path:
    """The resume checkpoint, or a DataError saying there is nothing to resume."""
    from mmrank.errors import DataError

    last = checkpoint_path(log_dir)
    if not last.exists():
        raise DataError("nothing to resume: no training checkpoint", path=last, hint="train without --resume first")
    return last


def _epoch_line_callback():
    from lightning.pytorch.callbacks import Callback

    class EpochLine(Callback):
        """One line per epoch on stderr, 1-based: ``epoch 3/30  train_loss 0.5123  val_ndcg@10
        0.7012  4.1 s``. Plain text, so a log file or a pipe reads the same as a terminal."""

        def __init__(self, label: str) -> None:
            self.label, self.t0 = label, time.perf_counter()

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking or trainer.global_rank != 0:
                return
            parts = [f"{self.label}epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
            for key, value in sorted(trainer.callback_metrics.items()):
                if key.startswith(("train_loss", "val", "valid")) and not key.endswith("_step"):
                    parts.append(f"{key} {float(value):.4f}")
            parts.append(f"{time.perf_counter() - self.t0:.1f} s")
            print("  ".join(parts), file=sys.stderr, flush=True)

    return EpochLine


def make_trainer(*, log_dir: str | Path, max_epochs: int, callbacks: Sequence[Any] = (), loggers: Any = False,
                 grad_clip: float | None = None, accumulate: int = 1, min_epochs: int = 1,
                 deterministic: bool = False, precision: str = "auto", progress: bool = True,
                 label: str = ""):
    """A Lightning ``Trainer`` with mmrank's devices, checkpoints, determinism and progress.

    Args:
        log_dir: run log folder; the resume checkpoint goes to ``log_dir/checkpoints/last.ckpt``.
        max_epochs / min_epochs / grad_clip / accumulate: the loop, from the config.
        callbacks: model-specific callbacks (validation, early stopping, best weights).
        loggers: Lightning loggers, or False.
        deterministic: deterministic torch kernels (``torch.use_deterministic_algorithms``).
        precision: ``auto`` (mixed on GPUs, fp32 on the CPU), ``32``, ``16-mixed``, ``bf16-mixed``.
        progress: print one line per epoch on stderr.
        label: prefix of the progress line (a stage name).

    Returns:
        ``lightning.pytorch.Trainer``.

    Example:
        >>> trainer = make_trainer(log_dir="runs/x/logs", max_epochs=10, grad_clip=1.0)  # doctest: +SKIP
        >>> run_fit(trainer, module, train_loader, resume=False)  # doctest: +SKIP
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.strategies import DDPStrategy

    from mmrank.train.callbacks import RngStateCallback
    from mmrank.train.checkpoint_io import SafetensorsCheckpointIO

    quiet_lightning()
    world_size, _, local_size = world()
    device = accelerator()
    # "last" is rewritten at the end of every training epoch (after validation callbacks ran, since
    # Lightning runs checkpoint callbacks last): the point a resumed run restarts from.
    latest = ModelCheckpoint(dirpath=str(Path(log_dir) / CHECKPOINTS), filename="last", monitor=None, save_top_k=1,
                             save_on_train_epoch_end=True, enable_version_counter=False)
    all_callbacks = [*callbacks, latest, RngStateCallback()]
    if progress:
        all_callbacks.append(_epoch_line_callback()(f"{label} " if label else ""))
    strategy: Any = "auto"
    if world_size > 1:
        strategy = DDPStrategy(process_group_backend="nccl" if device == "gpu" else "gloo", find_unused_parameters=False)
    return pl.Trainer(
        accelerator=device,
        devices=local_size if world_size > 1 else 1,
        num_nodes=max(1, world_size // local_size),
        strategy=strategy,
        precision=resolve_precision(precision),
        max_epochs=max_epochs,
        min_epochs=min_epochs,
        gradient_clip_val=grad_clip,
        accumulate_grad_batches=accumulate,
        deterministic=deterministic,
        callbacks=all_callbacks,
        logger=loggers,
        plugins=[SafetensorsCheckpointIO()],
        default_root_dir=str(log_dir),
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


def run_fit(trainer, module, *loaders, resume: bool, log_dir: str | Path) -> None:
    """``trainer.fit(module, *loaders)``, from ``log_dir``'s last checkpoint when ``resume``."""
    ckpt = str(require_resume_checkpoint(log_dir)) if resume else None
    with warnings.catch_warnings():
        for message in _HARMLESS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, *loaders, ckpt_path=ckpt)
