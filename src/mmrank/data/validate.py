"""Record-level validation shared by every reader, and the quarantine that keeps bad records.

Readers parse one *record* at a time (a JSONL line, a LibSVM query group, an interaction row)
and hand each problem to a ``ReadReport``. In strict mode the first problem raises
``DataError``; otherwise the record is quarantined with its reason and reading goes on, so that
``records_in == records_read + records_quarantined`` always holds: nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mmrank.atomic_io import atomic_write_text
from mmrank.errors import DataError


@dataclass
class Problem:
    path: str
    line: int | None
    message: str
    hint: str
    record: str = ""

    def format(self) -> str:
        """Render the problem as the CLI's one-line message ``path:line: message — hint``.

        The raw ``record`` is not part of it; it goes to the quarantine file only.
        """
        return DataError(self.message, path=self.path, line=self.line, hint=self.hint).format()


@dataclass
class ReadReport:
    """What a reader saw: counts, problems, and the quarantined raw records."""

    path: str
    strict: bool = False
    records_in: int = 0
    records_read: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def records_quarantined(self) -> int:
        """Number of records set aside as bad (one per problem)."""
        return len(self.problems)

    @property
    def ok(self) -> bool:
        """True when no record was quarantined."""
        return not self.problems

    def bad(self, line: int | None, message: str, hint: str, record: str = "") -> None:
        """Report one bad record: raise in strict mode, quarantine otherwise."""
        problem = Problem(self.path, line, message, hint, record)
        if self.strict:
            raise DataError(message, path=self.path, line=line, hint=hint)
        self.problems.append(problem)

    def check_counts(self) -> None:
        """Check the reader's bookkeeping: ``records_in == records_read + records_quarantined``.

        This guards the promise that nothing is dropped silently; a mismatch is a bug in the reader,
        not in the user's data, hence not a ``DataError``.

        Raises:
            AssertionError: when the counts do not add up.
        """
        if self.records_in != self.records_read + self.records_quarantined:
            raise AssertionError(
                f"reader bug: {self.records_in} records in, {self.records_read} read, "
                f"{self.records_quarantined} quarantined"
            )

    def write_quarantine(self, path: str | Path) -> Path:
        """One JSON object per bad record: location, reason, the raw text."""
        rows = [
            json.dumps(
                {"path": p.path, "line": p.line, "reason": p.message, "hint": p.hint, "record": p.record},
                ensure_ascii=False,
            )
            for p in self.problems
        ]
        return atomic_write_text(path, "".join(r + "\n" for r in rows))

    def summary(self) -> dict:
        """Return the counts as a JSON-ready dict (without the problems themselves).

        Returns:
            ``{"path", "records_in", "records_read", "records_quarantined"}``.
        """
        return {
            "path": self.path,
            "records_in": self.records_in,
            "records_read": self.records_read,
            "records_quarantined": self.records_quarantined,
        }


class QueryChecker:
    """Checks one query's candidates against the rules every RankingSet must satisfy.

    Keeps the modality dims seen first so that a dimension change in a later record is caught
    at that record (with its line), not later as a shape error deep inside numpy."""

    def __init__(self, label_range: tuple[float, float] | None = None) -> None:
        self.label_range = label_range
        self.dims: dict[str, int] = {}
        self.query_dims: dict[str, int] = {}

    def problems(
        self,
        candidate_ids: Sequence[str],
        labels: Sequence[float],
        features: dict[str, np.ndarray] | None = None,
        query_features: dict[str, np.ndarray] | None = None,
        baseline_scores: Sequence[float] | None = None,
    ) -> list[tuple[str, str]]:
        """(message, hint) pairs; empty when the query is good. Records dims of good queries."""
        out: list[tuple[str, str]] = []
        if len(candidate_ids) == 0:
            return [("empty query: no candidates", "drop the query or add its candidates")]
        seen: set[str] = set()
        dups = sorted({c for c in candidate_ids if c in seen or seen.add(c)})
        if dups:
            out.append(
                (f"duplicate candidate id(s) {', '.join(map(repr, dups[:5]))} in one query",
                 "give every candidate of a query a unique id")
            )
        lab = np.asarray(labels, dtype=np.float64)
        if not np.all(np.isfinite(lab)):
            out.append(("label is NaN or infinite", "labels must be finite numbers"))
        elif self.label_range is not None:
            lo, hi = self.label_range
            bad = lab[(lab < lo) | (lab > hi)]
            if bad.size:
                out.append(
                    (f"label {bad[0]:g} outside the declared range [{lo:g}, {hi:g}]",
                     "fix the label or widen --label-range")
                )
        if baseline_scores is not None:
            if not np.all(np.isfinite(np.asarray(baseline_scores, dtype=np.float64))):
                out.append(("baseline score is NaN or infinite", "baseline scores must be finite"))
        for kind, feats, dims in (("modality", features, self.dims), ("query feature", query_features, self.query_dims)):
            for name, mat in (feats or {}).items():
                mat = np.asarray(mat, dtype=np.float64)
                d = mat.shape[-1] if mat.ndim else 1
                if name in dims and dims[name] != d:
                    out.append(
                        (f"{kind} {name!r} has dimension {d}, earlier records have {dims[name]}",
                         f"give every record the same {name!r} dimension")
                    )
                elif not np.all(np.isfinite(mat)):
                    out.append((f"{kind} {name!r} contains NaN or infinite values", "replace them with finite numbers"))
        if not out:
            for kind_feats, dims in ((features, self.dims), (query_features, self.query_dims)):
                for name, mat in (kind_feats or {}).items():
                    mat = np.asarray(mat)
                    dims.setdefault(name, mat.shape[-1] if mat.ndim else 1)
        return out


def is_finite_number(x) -> bool:
    """Tell whether a parsed JSON value is a usable number.

    ``bool`` is refused although it subclasses ``int``: ``true`` in a label column is a data mistake,
    not the number 1. Numeric strings are refused too.

    Args:
        x: any value, typically from ``json.loads``.

    Returns:
        True for finite ``int`` / ``float`` values (numpy scalars other than float64 are refused).
    """
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
