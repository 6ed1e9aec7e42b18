"""Callbacks that make a resumed run continue exactly where the killed one stopped."""

from __future__ import annotations

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RngStateCallback(Callback):
    """Stores the python, numpy and torch RNG states in every checkpoint and restores them on
    resume. Dropout masks and ListMLE's random tie-breaks draw from these generators, so without
    this a resumed run would diverge from an uninterrupted one after the first step."""

    def state_dict(self) -> dict:
        """The python, numpy and torch RNG states, JSON/tensor-encodable."""
        py = random.getstate()
        np_state = np.random.get_state()
        return {
            "python": [py[0], list(py[1]), py[2]],
            "numpy": {"key": np_state[1], "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
            "torch": torch.random.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the RNG states a checkpoint carries."""
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        n = state["numpy"]
        np.random.set_state(("MT19937", np.asarray(n["key"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        torch.random.set_rng_state(state["torch"])
