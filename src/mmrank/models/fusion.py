"""V2 fusion: a deeper CoTRR (4 token layers by default) with the seeds' fix roadmap as switches.

Every switch is one config key under ``model.params``, off (0) by default, and adds one
auxiliary training loss (or, for modality dropout, one training-time corruption):

* ``entropy_weight``: attention-entropy regulariser. Adds ``−w · H(pool weights) / log T`` so the
  pool cannot collapse onto one modality token (the seeds' "one modality does all the work").
* ``modality_dropout``: with probability p each token's content is zeroed for a candidate in
  training (never all tokens of one candidate), so the model learns to rank with a modality
  missing — as happens in production when an image fails to load.
* ``reconstruction_weight``: an auxiliary head reconstructs the (normalised) input features
  from the pooled vector (MSE), keeping every modality's information in the representation.
* ``infonce_weight`` (+ ``infonce_pair`` = two token names, default the first two, and
  ``infonce_temperature``): InfoNCE aligning the two tokens' encoded vectors of the same
  candidate against other candidates of the batch.
* ``adversarial_weight``: a modality discriminator guesses which token an encoded vector came
  from, through a gradient-reversal layer (Ganin & Lempitsky 2015), pushing the encoder towards
  modality-invariant token vectors.

Auxiliary losses exist only in training mode; scoring is the CoTRR path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mmrank.errors import ConfigError
from mmrank.losses.infonce import infonce_loss
from mmrank.models.cotrr import CoTRRNet, CoTRRParams
from mmrank.models.neural import NeuralRanker


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Gradient-reversal layer (Ganin & Lempitsky 2015): identity forward, ``−scale ·`` gradient back.

    Placed between the token encoder and the modality discriminator, it lets the discriminator
    learn to tell tokens apart while pushing the encoder to make them indistinguishable, with one
    loss and one optimiser.

    Args:
        x: any tensor.
        scale: factor of the reversed gradient (no gradient flows to ``scale`` itself).

    Returns:
        A view of ``x`` with the same values.
    """
    return _GradReverse.apply(x, scale)


class FusionNet(CoTRRNet):
    def __init__(self, token_dims: list[int], *, entropy_weight: float = 0.0, modality_dropout: float = 0.0,
                 reconstruction_weight: float = 0.0, infonce_weight: float = 0.0, infonce_pair: tuple[int, int] = (0, 1),
                 infonce_temperature: float = 0.1, adversarial_weight: float = 0.0, **kw) -> None:
        super().__init__(token_dims, **kw)
        d = self.token_emb.shape[1]
        self.entropy_weight = entropy_weight
        self.modality_dropout = modality_dropout
        self.reconstruction_weight = reconstruction_weight
        self.infonce_weight = infonce_weight
        self.infonce_pair = tuple(infonce_pair)
        self.infonce_temperature = infonce_temperature
        self.adversarial_weight = adversarial_weight
        # Heads exist only when switched on, so a model file never carries dead weights.
        self.reconstruct = nn.Linear(d, sum(token_dims)) if reconstruction_weight else None
        self.discriminator = (
            nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, len(token_dims))) if adversarial_weight else None
        )

    def _drop_modalities(self, content: torch.Tensor) -> torch.Tensor:
        B, L, T, _ = content.shape
        keep = torch.rand(B, L, T, device=content.device) >= self.modality_dropout
        keep = keep | ~keep.any(dim=-1, keepdim=True)  # never drop every token of a candidate
        return content * keep.unsqueeze(-1).to(content.dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        """Score candidates and, in training mode, compute the switched-on auxiliary losses.

        In training, modality dropout (if set) zeroes token contents before encoding. In eval mode the
        auxiliary dict is empty and nothing is dropped, so scoring is CoTRR's path.

        Args:
            x: (B, L, D) float32 token columns side by side (un-normalised; buffers normalise).
            mask: (B, L) bool, True for real candidates.

        Returns:
            ``(scores, aux)``: (B, L) scores, and ``{name: weighted scalar}`` for each active term
            (``entropy``, ``reconstruction``, ``infonce``, ``adversarial``), already multiplied by its
            weight so the trainer just adds them to the ranking loss.
        """
        content = self.token_content(x)
        if self.training and self.modality_dropout > 0:
            content = self._drop_modalities(content)
        state = self.encode(content, mask)
        scores = self.score_hidden(state["hidden"])
        aux: dict[str, torch.Tensor] = {}
        if not self.training:
            return scores, aux
        m = mask.bool()
        real = m.unsqueeze(-1)
        T = content.shape[-2]
        if self.entropy_weight and T > 1:
            w = state["pool_weights"]
            entropy = -(w * w.clamp_min(1e-12).log()).sum(-1) / math.log(T)
            aux["entropy"] = -self.entropy_weight * entropy[m].mean()
        if self.reconstruct is not None:
            target = (x - self.in_mean) / self.in_std
            err = (self.reconstruct(state["pooled"]) - target).pow(2) * real
            aux["reconstruction"] = self.reconstruction_weight * err.sum() / (real.sum() * target.shape[-1]).clamp_min(1)
        if self.infonce_weight:
            i, j = self.infonce_pair
            tokens = state["tokens"]
            aux["infonce"] = self.infonce_weight * infonce_loss(tokens[..., i, :], tokens[..., j, :], m, temperature=self.infonce_temperature)
        if self.discriminator is not None:
            tokens = grad_reverse(state["tokens"][m])  # (M, T, d)
            logits = self.discriminator(tokens)
            target = torch.arange(T, device=x.device).expand(tokens.shape[0], T)
            aux["adversarial"] = self.adversarial_weight * F.cross_entropy(logits.reshape(-1, T), target.reshape(-1))
        return scores, aux


class FusionParams(CoTRRParams):
    n_layers: int = Field(4, ge=0)
    entropy_weight: float = Field(0.0, ge=0)
    modality_dropout: float = Field(0.0, ge=0, lt=1)
    reconstruction_weight: float = Field(0.0, ge=0)
    infonce_weight: float = Field(0.0, ge=0)
    infonce_pair: list[str] | None = None
    infonce_temperature: float = Field(0.1, gt=0)
    adversarial_weight: float = Field(0.0, ge=0)


class FusionV2(NeuralRanker):
    """CoTRR's architecture, deeper, with the V2 regularisers (see the module docstring)."""

    kind = "fusion"
    Params = FusionParams
    network_class = FusionNet

    def _pair_indices(self) -> tuple[int, int]:
        names = [t.name for t in self.layout_]
        pair = self.params.infonce_pair
        if pair is None:
            return (0, 1) if len(names) > 1 else (0, 0)
        if len(pair) != 2 or any(p not in names for p in pair):
            raise ConfigError(f"model.params.infonce_pair: {pair} — give two of the model's tokens: {names}")
        return names.index(pair[0]), names.index(pair[1])

    def network_kwargs(self) -> dict:
        """Add the V2 switches to CoTRR's network arguments, resolving ``infonce_pair`` to token indices.

        Needs the token layout (it runs inside ``prepare`` / ``load``).

        Returns:
            The keyword arguments for :class:`FusionNet`.

        Raises:
            ConfigError: when ``infonce_weight`` is set but the data gives only one token, or
                ``infonce_pair`` does not name two of the model's tokens.
        """
        p = self.params
        kw = super().network_kwargs()
        if p.infonce_weight and len(self.layout_) < 2:
            raise ConfigError("model.params.infonce_weight: InfoNCE needs two tokens, the data gives one — set it to 0")
        kw.update(entropy_weight=p.entropy_weight, modality_dropout=p.modality_dropout,
                  reconstruction_weight=p.reconstruction_weight, infonce_weight=p.infonce_weight,
                  infonce_pair=self._pair_indices(), infonce_temperature=p.infonce_temperature,
                  adversarial_weight=p.adversarial_weight)
        return kw
