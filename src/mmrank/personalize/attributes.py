"""A few item attributes to hold preferences over: named groups of columns of an item modality.

An attribute is 1 for an item when any of its columns is non-zero (e.g. "action" = any of the
Action, Adventure, Sci-Fi, War, Western, Fantasy genre flags). The attributes of a candidate are
read from the candidate's own modality columns, so a candidate file that carries the modality (the
ML-100K task's ``meta``) needs nothing else at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mmrank.errors import ConfigError, DataError

# Five genre groups over the ML-100K ``meta`` modality (docs/ml100k_tasks.md): every genre but
# "unknown" and "Documentary" (too rare to hold a preference about) is in exactly one group.
ML100K_GENRES = {
    "action": ["Action", "Adventure", "SciFi", "War", "Western", "Fantasy"],
    "comedy": ["Comedy", "Children", "Animation", "Musical"],
    "drama": ["Drama"],
    "romance": ["Romance"],
    "dark": ["Crime", "Thriller", "Mystery", "FilmNoir", "Horror"],
}
PRESETS = {"ml100k-genres": ("meta", ML100K_GENRES)}


@dataclass(frozen=True)
class AttributeSpec:
    """``modality`` and, per attribute name, the column indices that make it."""

    modality: str
    names: tuple[str, ...]
    columns: tuple[tuple[int, ...], ...]

    def matrix(self, values: np.ndarray) -> np.ndarray:
        """``(n, A)`` 0/1 float32: attribute a is 1 when any of its columns is non-zero."""
        values = np.asarray(values)
        width = max(c for cols in self.columns for c in cols) + 1
        if values.ndim != 2 or values.shape[1] < width:
            raise DataError(f"modality {self.modality!r} has shape {values.shape}; the attributes need {width} columns",
                            hint="use the modality the attributes were defined on")
        return np.stack([np.any(values[:, list(cols)] != 0, axis=1) for cols in self.columns], axis=1).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-ready form (stored with the profiles)."""
        return {"modality": self.modality, "names": list(self.names), "columns": [list(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, obj: dict) -> "AttributeSpec":
        """Inverse of :meth:`to_dict`."""
        return cls(obj["modality"], tuple(obj["names"]), tuple(tuple(int(i) for i in c) for c in obj["columns"]))


def attribute_spec(modality: str, groups: Mapping[str, Sequence[str]], feature_names: Sequence[str]) -> AttributeSpec:
    """Resolve named column groups against a modality's column names.

    Raises:
        ConfigError: for fewer than 1 or more than 8 attributes, an empty group, or a column
            name the modality does not have.
    """
    if not 1 <= len(groups) <= 8:
        raise ConfigError(f"{len(groups)} attributes — use a few (3 to 5 is the point: one weight each per user)")
    position = {str(n): i for i, n in enumerate(feature_names)}
    columns = []
    for name, cols in groups.items():
        unknown = [c for c in cols if c not in position]
        if not cols or unknown:
            raise ConfigError(f"attribute {name!r}: unknown or no columns {unknown or list(cols)} of {modality!r} "
                              f"— its columns are {list(position)[:30]}")
        columns.append(tuple(position[c] for c in cols))
    return AttributeSpec(modality, tuple(groups), tuple(columns))
