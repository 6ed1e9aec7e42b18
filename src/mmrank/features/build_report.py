"""The features report: what every encoder run saw, item by item, with counts that add up.

An item's modality ends in exactly one of three states:

* ``ok``: a real vector was computed (or read from the cache);
* ``missing``: there was no input to encode (no poster file, an empty text) — the row is zero
  *and* masked out;
* ``failed``: there was an input but it could not be encoded (a corrupt or truncated image) —
  zero and masked out, with the reason.

So ``items == ok + missing + failed`` for every modality, and nothing is dropped silently.
``warnings`` are inputs that were encoded but are degraded (an item without an overview whose
text is built from its title and genres only); they stay ``ok`` and are listed for review.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrank.atomic_io import atomic_write_text

STATES = ("ok", "missing", "failed")


@dataclass
class FeatureIssue:
    modality: str
    item_id: str
    path: str | None
    state: str  # "missing" | "failed" | "warning"
    reason: str

    def to_dict(self) -> dict:
        """Return the issue as a JSON-ready dict (modality, item_id, path, state, reason)."""
        return {"modality": self.modality, "item_id": self.item_id, "path": self.path,
                "state": self.state, "reason": self.reason}


@dataclass
class ModalityCounts:
    items: int = 0
    ok: int = 0
    missing: int = 0
    failed: int = 0
    cache_hits: int = 0
    computed: int = 0

    def to_dict(self) -> dict:
        """Return the counts as a JSON-ready dict.

        Returns:
            ``{"items", "ok", "missing", "failed", "cache_hits", "computed"}``.
        """
        return dict(self.__dict__)


@dataclass
class FeaturesReport:
    """Counts per modality plus every bad or degraded input (path + reason)."""

    counts: dict[str, ModalityCounts] = field(default_factory=dict)
    issues: list[FeatureIssue] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    def modality(self, name: str) -> ModalityCounts:
        """Return the counts of modality ``name``, creating zero counts on first use.

        Args:
            name: the modality, e.g. ``"image"``.

        Returns:
            The live :class:`ModalityCounts` (callers add ``cache_hits`` / ``computed`` to it).
        """
        return self.counts.setdefault(name, ModalityCounts())

    def record(self, modality: str, item_id: str, state: str, reason: str = "", path: str | None = None) -> None:
        """Count one item's outcome; ``missing``/``failed`` need a reason and are listed."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        counts = self.modality(modality)
        counts.items += 1
        setattr(counts, state, getattr(counts, state) + 1)
        if state != "ok":
            self.issues.append(FeatureIssue(modality, str(item_id), path, state, reason))

    def warn(self, modality: str, item_id: str, reason: str, path: str | None = None) -> None:
        """List a degraded input that was still encoded (state ``"warning"``); the counts do not change.

        Args:
            modality: the modality, e.g. ``"text"``.
            item_id: the item.
            reason: what is degraded, e.g. ``"empty overview: text built from title and genres only"``.
            path: the input file, if any.
        """
        self.issues.append(FeatureIssue(modality, str(item_id), path, "warning", reason))

    def record_mask(self, modality: str, item_ids, mask: np.ndarray, problems: dict[int, tuple[str, str]],
                    paths=None) -> None:
        """Record a whole modality at once: ``problems[row] = (state, reason)`` for masked rows."""
        for row, (iid, ok) in enumerate(zip(item_ids, mask)):
            path = None if paths is None or paths[row] is None else str(paths[row])
            if ok:
                self.record(modality, iid, "ok", path=path)
            else:
                state, reason = problems.get(row, ("missing", "no input"))
                self.record(modality, iid, state, reason, path=path)

    def check_counts(self) -> None:
        """Check that every modality's ``items == ok + missing + failed``.

        A mismatch means a bug in the code that filled the report, not bad data, hence an assertion.

        Raises:
            AssertionError: when the counts of a modality do not add up.
        """
        for name, c in self.counts.items():
            if c.items != c.ok + c.missing + c.failed:
                raise AssertionError(f"features report bug: {name}: {c.items} items != "
                                     f"{c.ok} ok + {c.missing} missing + {c.failed} failed")

    def issues_of(self, modality: str | None = None, state: str | None = None) -> list[FeatureIssue]:
        """Filter the listed issues by modality and/or state.

        Args:
            modality: keep only this modality; None for all.
            state: keep only ``"missing"``, ``"failed"`` or ``"warning"``; None for all.

        Returns:
            The matching issues in the order they were recorded.
        """
        return [i for i in self.issues
                if (modality is None or i.modality == modality) and (state is None or i.state == state)]

    def to_dict(self) -> dict:
        """Return the report as a JSON-ready dict, after checking its counts.

        Returns:
            ``{"counts": {modality: counts}, "issues": [...], "timings_s": {step: seconds}}`` with
            timings rounded to 0.1 ms.

        Raises:
            AssertionError: when the counts do not add up (see :meth:`check_counts`).
        """
        self.check_counts()
        return {
            "counts": {k: v.to_dict() for k, v in self.counts.items()},
            "issues": [i.to_dict() for i in self.issues],
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
        }

    def write(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as indented UTF-8 JSON, atomically.

        Args:
            path: destination file, e.g. ``features_report.json``.

        Returns:
            The path written.
        """
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
