"""Generated sequential data with a known answer, shared by the sequential-recommendation tests."""

from __future__ import annotations

import numpy as np

from mmrank.data.model import Interactions


def chain_interactions(n_types: int = 12, n_colours: int = 10, n_users: int = 400, length: int = 8,
                       seed: int = 0) -> Interactions:
    """Item content fully determines the next item. Items are ``t{type}c{colour}``; each user starts
    at a random item and then always reads the item of the next type (mod ``n_types``) and the same
    colour. ``length < n_types`` so no user reads an item twice."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        t0, c = int(rng.integers(n_types)), int(rng.integers(n_colours))
        for s in range(length):
            users.append(f"u{u}")
            items.append(f"t{(t0 + s) % n_types}c{c}")
            times.append(float(s))
    return Interactions(users, items, np.array(times))


def chain_features(item_ids, n_types: int = 12, n_colours: int = 10, seed: int = 1):
    """Item features in dense-id order (row 0 padding): ``text`` = one-hot type ++ one-hot colour
    (all a model needs), ``image`` = noise. Returns ``(feats, masks)`` for ``set_item_features``."""
    n = len(item_ids) + 1
    text = np.zeros((n, n_types + n_colours), dtype=np.float32)
    for d, raw in enumerate(item_ids, start=1):
        t, c = str(raw)[1:].split("c")
        text[d, int(t)] = 1.0
        text[d, n_types + int(c)] = 1.0
    noise = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    have = np.ones(n, dtype=bool)
    have[0] = False
    return {"text": text, "image": noise}, {"text": have, "image": have.copy()}
