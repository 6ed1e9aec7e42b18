"""Per-user timelines of interactions: what a user had rated before a time, and in a window.

Events of a user are ordered by time, ties in file order (as ``ml100k_rerank_task`` orders them),
so "the history before tau" means the same thing everywhere it is used (retrieval queries,
personal preference profiles)."""

from __future__ import annotations

import numpy as np

from mmrank.data.model import Interactions
from mmrank.errors import DataError


class UserTimeline:
    """Index of ``inter`` by user: ``before(user, tau)`` and ``window(user, start, end)``."""

    def __init__(self, inter: Interactions) -> None:
        self.inter = inter
        users, user_idx = np.unique(inter.user_ids, return_inverse=True)
        self.order = np.lexsort((np.arange(len(inter)), inter.timestamps, user_idx))
        starts = np.searchsorted(user_idx[self.order], np.arange(len(users) + 1))
        self.bounds = {str(u): (int(starts[n]), int(starts[n + 1])) for n, u in enumerate(users)}

    def _events(self, user: str) -> np.ndarray:
        if user not in self.bounds:
            raise DataError(f"user {user!r} has no interactions", hint="use a user id of the interaction file")
        a, b = self.bounds[user]
        return self.order[a:b]

    def before(self, user: str, tau: float) -> np.ndarray:
        """Event rows of ``user`` with time < ``tau``, **most recent first**."""
        ev = self._events(user)
        return ev[self.inter.timestamps[ev] < tau][::-1]

    def window(self, user: str, start: float, end: float) -> np.ndarray:
        """Event rows of ``user`` with ``start <= time < end``, in time order."""
        ev = self._events(user)
        t = self.inter.timestamps[ev]
        return ev[(t >= start) & (t < end)]
