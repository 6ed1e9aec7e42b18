"""Per-user preference weights over a few item attributes, learned from the user's history.

For user u and attribute a, with ``n_u`` history items of which ``n_ua`` have the attribute and
``p_a`` the share of all users' history items that have it (the population rate)::

    w_ua = log((n_ua + alpha p_a) / (n_u + alpha)) − log(p_a)

the log-lift of the user's rate over the population's, shrunk towards 0 by ``alpha`` pseudo-items
at the population rate (a user with three ratings does not get strong opinions). ``w_ua > 0``:
the user takes more of attribute a than people do. Reweighting with these is in ``reweight``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.errors import ConfigError, DataError
from mmrank.personalize.attributes import AttributeSpec

FORMAT_VERSION = 1


def preference_weights(history_attributes: Sequence[np.ndarray], population_rate: np.ndarray, alpha: float) -> np.ndarray:
    """``(U, A)`` weights of each history (``(h_u, A)`` 0/1 attribute rows) — the module's formula."""
    if alpha < 0:
        raise ConfigError(f"alpha={alpha} — use a non-negative number of pseudo-items")
    p = np.clip(np.asarray(population_rate, dtype=np.float64), 1e-6, 1.0)
    counts = np.array([h.sum(axis=0) if len(h) else np.zeros(len(p)) for h in history_attributes], dtype=np.float64)
    sizes = np.array([len(h) for h in history_attributes], dtype=np.float64)[:, None]
    rate = (counts + alpha * p) / np.maximum(sizes + alpha, 1e-12)
    return np.log(np.maximum(rate, 1e-6)) - np.log(p)


@dataclass
class PreferenceProfiles:
    """Fitted profiles: the attribute spec, ``alpha``, the population rate, the reweighting
    strength ``beta`` and ``weights[user] -> (A,)``. Users without a profile get zeros (no change)."""

    spec: AttributeSpec
    alpha: float
    population_rate: np.ndarray
    beta: float = 0.0
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, spec: AttributeSpec, histories: Mapping[str, np.ndarray], alpha: float = 10.0,
            population_rate: np.ndarray | None = None) -> "PreferenceProfiles":
        """Profiles of every user in ``histories`` (user → ``(h, A)`` attribute rows of the items
        the user rated); the population rate is the pooled rate of all these histories unless given."""
        users = list(histories)
        if not users:
            raise DataError("no user history to learn preferences from")
        rows = [np.asarray(histories[u], dtype=np.float64).reshape(-1, len(spec.names)) for u in users]
        if population_rate is None:
            pooled = np.concatenate(rows) if sum(len(r) for r in rows) else np.zeros((0, len(spec.names)))
            population_rate = pooled.mean(axis=0) if len(pooled) else np.full(len(spec.names), 0.5)
        weights = preference_weights(rows, population_rate, alpha)
        return cls(spec, float(alpha), np.asarray(population_rate, dtype=np.float64), 0.0, dict(zip(users, weights)))

    def weights_for(self, users: Sequence[str]) -> np.ndarray:
        """``(len(users), A)`` weights; zeros for an unknown user."""
        zero = np.zeros(len(self.spec.names))
        return np.stack([self.weights.get(str(u), zero) for u in users]) if len(users) else np.zeros((0, len(zero)))

    def save(self, path: str | Path) -> Path:
        """Write the profiles as JSON (atomically)."""
        obj = {"format_version": FORMAT_VERSION, "attributes": self.spec.to_dict(), "alpha": self.alpha,
               "population_rate": self.population_rate.tolist(), "beta": self.beta,
               "weights": {u: [round(float(x), 5) for x in w] for u, w in self.weights.items()}}
        return atomic_write_text(path, json.dumps(obj) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PreferenceProfiles":
        """Read profiles written by :meth:`save`.

        Raises:
            DataError: when the file is missing or not a profiles file.
        """
        try:
            obj = json.loads(Path(path).read_text())
            spec = AttributeSpec.from_dict(obj["attributes"])
            return cls(spec, float(obj["alpha"]), np.asarray(obj["population_rate"], dtype=np.float64), float(obj["beta"]),
                       {u: np.asarray(w, dtype=np.float64) for u, w in obj["weights"].items()})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"not a preference profiles file ({type(e).__name__}: {e})", path=path,
                            hint="write it with `mmrank personalize fit`") from None
