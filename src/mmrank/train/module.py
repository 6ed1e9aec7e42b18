"""The one LightningModule: any network ``net(x, mask) -> (scores (B, L), aux_losses)`` trained
with a list loss from ``mmrank.losses``; validation nDCG@k computed with ``mmrank.metrics`` on
the full validation set. Nothing model-specific lives here."""

from __future__ import annotations

from typing import Callable

import lightning.pytorch as pl
import numpy as np
import torch

from mmrank.data.model import RankingSet
from mmrank.metrics import evaluate


class RankerModule(pl.LightningModule):
    def __init__(self, net: torch.nn.Module, loss_fn: Callable, loss_params: dict, settings, valid: RankingSet) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = loss_fn
        self.loss_params = dict(loss_params)
        self.settings = settings
        self.valid = valid
        self.monitor_key = f"val_{settings.monitor}"
        self.history: list[dict] = []
        self._val_rows: list[np.ndarray] = []
        self._val_scores: list[np.ndarray] = []
        self._train_losses: list[float] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """List loss (+ the network's auxiliary losses) on one padded batch of queries."""
        scores, aux = self.net(batch["x"], batch["mask"])
        rank_loss = self.loss_fn(scores.float(), batch["labels"], batch["mask"], **self.loss_params)
        loss = rank_loss + sum(aux.values(), torch.zeros((), device=rank_loss.device))
        n = int(batch["mask"].any(dim=1).sum())
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        for name, value in aux.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self._train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Score one validation batch; rows are gathered for the epoch-end metric."""
        scores, _ = self.net(batch["x"], batch["mask"])
        m = batch["mask"].cpu().numpy()
        self._val_rows.append(batch["rows"].cpu().numpy()[m])
        self._val_scores.append(scores.float().cpu().numpy()[m])

    def on_validation_epoch_end(self) -> None:
        """The monitored metric over the whole validation set (logged; one history row per epoch)."""
        scores = np.zeros(self.valid.n_candidates)
        for rows, vals in zip(self._val_rows, self._val_scores):
            scores[rows] = vals
        self._val_rows, self._val_scores = [], []
        value = evaluate(self.valid, scores, [self.settings.monitor])[self.settings.monitor]
        # Every rank scored the whole validation set, so the value is already the same everywhere.
        self.log(self.monitor_key, value, prog_bar=True, sync_dist=True)
        if not self.trainer.sanity_checking:
            self.history.append({
                "epoch": int(self.current_epoch) + 1,  # counted from 1, as printed
                "train_loss": float(np.mean(self._train_losses)) if self._train_losses else None,
                self.monitor_key: float(value),
                "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]),
            })
        self._train_losses = []

    def configure_optimizers(self):
        """AdamW + ReduceLROnPlateau on the monitored validation metric."""
        s = self.settings
        opt = torch.optim.AdamW(self.net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=s.lr_factor, patience=s.lr_patience)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": self.monitor_key, "interval": "epoch"}}

    # The per-epoch history travels in the checkpoint so a resumed run reports the whole curve.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the per-epoch history in the checkpoint (a resumed run reports the whole curve)."""
        checkpoint["mmrank_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the history a checkpoint carries."""
        self.history = list(checkpoint.get("mmrank_history", []))
