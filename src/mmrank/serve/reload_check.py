"""What a hot reload checks before it swaps a model in, and where it may load from.

*Where*: only run folders under the server's models root (``--models-root``, default the parent
of the served run). A path outside it — absolute, ``..``, or a symlink leading out — is answered
exactly like a folder that does not exist, so the endpoint never tells which server paths exist.

*What*: the new model must take the inputs the serving model takes and score the traffic the
server has seen. Three checks, each a one-line problem:

* both models declare their inputs (``input_dims``) and they differ;
* a probe query of each input layout the serving model recently scored (or, before any traffic,
  of the layout the serving model declares) makes the new model raise or return unusable scores
  — the same test ``reorder.decide`` applies to every request;

The caller can force a swap anyway (``"force": true``); the problems then stay visible in
``/health`` until the next reload.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from threading import Lock

from mmrank.serve.layout import Layout, declared_layout, probe_query
from mmrank.serve.reorder import FALLBACK, decide
from mmrank.serve.scoring import score_queries

MAX_TRAFFIC_LAYOUTS = 16  # distinct layouts remembered; a server sees one or two in practice


class IncompatibleModel(Exception):
    """The new model cannot serve the current traffic; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class TrafficLayouts:
    """The input layouts of the last queries the serving model scored (most recent last)."""

    def __init__(self, limit: int = MAX_TRAFFIC_LAYOUTS) -> None:
        self._seen: OrderedDict[Layout, None] = OrderedDict()
        self._limit = limit
        self._lock = Lock()

    def add(self, layout: Layout) -> None:
        """Remember ``layout`` (the oldest is forgotten past the limit)."""
        if layout in self._seen:  # the common case: no lock, no reordering needed for a check
            return
        with self._lock:
            self._seen[layout] = None
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)

    def snapshot(self) -> list[Layout]:
        """The remembered layouts, oldest first."""
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        """Forget every layout (after a forced reload: traffic is expected to change)."""
        with self._lock:
            self._seen.clear()


def resolve_under(root: Path, run_dir: str) -> Path | None:
    """``run_dir`` (relative to ``root``, or absolute) as a folder strictly inside ``root``; None
    when it is outside or does not exist — the caller answers both alike."""
    try:
        candidate = (root / run_dir).resolve()
        inside = root in candidate.parents and candidate.is_dir()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes, names too long
        return None
    return candidate if inside else None


def compatibility_problems(old_ranker, new_ranker, traffic: list[Layout]) -> list[str]:
    """Why ``new_ranker`` cannot take over from ``old_ranker`` on ``traffic``; [] when it can."""
    problems = []
    old_inputs, new_inputs = declared_layout(old_ranker), declared_layout(new_ranker)
    if old_inputs is not None and new_inputs is not None and old_inputs != new_inputs:
        problems.append(f"its inputs ({new_inputs.describe()}) differ from the serving model's ({old_inputs.describe()})")
    layouts = traffic or ([old_inputs] if old_inputs is not None else [])
    for layout in layouts:
        probe = probe_query(layout)
        (output,) = score_queries(new_ranker, probe)
        decision = decide(probe.n_candidates, None, output)
        if decision.status == FALLBACK:
            problems.append(f"it cannot score queries of the current traffic ({layout.describe()}): "
                            f"{decision.reason} {decision.detail}".strip())
    return problems


def without_paths(text: str, root: Path) -> str:
    """``text`` with the server's models root replaced by ``<models-root>`` (errors of a loader
    name the files they read)."""
    return text.replace(str(root), "<models-root>")
