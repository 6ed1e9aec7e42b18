"""Ranking losses, one per file (allRank style): ``loss(scores, labels, mask, **options)``.

Every list loss takes ``scores (B, L)``, ``labels (B, L)`` and a ``mask (B, L)`` bool (True =
real candidate) and returns a scalar; padded slots never change the value. ``get_loss`` maps a
config name to the function, so configs can name ``loss: lambdaloss`` with ``loss_params``.
"""

from __future__ import annotations

import inspect
from typing import Callable

from mmrank.errors import ConfigError
from mmrank.losses.combined import combined_loss
from mmrank.losses.focal import focal_loss
from mmrank.losses.infonce import infonce_loss
from mmrank.losses.lambdaloss import lambdaloss
from mmrank.losses.listmle import listmle_loss
from mmrank.losses.ranknet import ranknet_loss

LIST_LOSSES: dict[str, Callable] = {
    "combined": combined_loss,
    "listmle": listmle_loss,
    "focal": focal_loss,
    "lambdaloss": lambdaloss,
    "ranknet": ranknet_loss,
}


def loss_options(name: str) -> list[str]:
    """The keyword options a named list loss accepts (for config validation)."""
    fn = get_loss(name)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind == p.KEYWORD_ONLY and p.name != "generator"]


def get_loss(name: str) -> Callable:
    """Look up a list loss by its config name (``train.loss``).

    Args:
        name: one of ``LIST_LOSSES``: ``combined``, ``listmle``, ``focal``, ``lambdaloss``,
            ``ranknet``. (``infonce_loss`` is not a list loss and has no name here.)

    Returns:
        The loss function, called as ``fn(scores, labels, mask, **loss_params)``.

    Raises:
        ConfigError: when ``name`` is not a known loss.

    Example:
        >>> import torch
        >>> fn = get_loss("ranknet")
        >>> s, y = torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
        >>> round(float(fn(s, y, torch.tensor([[True, True, False]]))), 4)
        0.3133
    """
    try:
        return LIST_LOSSES[name]
    except KeyError:
        raise ConfigError(f"train.loss: unknown loss {name!r} — use one of {sorted(LIST_LOSSES)}") from None


def check_loss_params(name: str, params: dict) -> None:
    """Fail before training when a loss option is unknown."""
    allowed = loss_options(name)
    for key in params:
        if key not in allowed:
            raise ConfigError(f"train.loss_params.{key}: not an option of loss {name!r} — allowed: {allowed}")


__all__ = [
    "LIST_LOSSES", "check_loss_params", "combined_loss", "focal_loss", "get_loss", "infonce_loss",
    "lambdaloss", "listmle_loss", "loss_options", "ranknet_loss",
]
