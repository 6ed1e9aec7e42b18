"""The model a server is using right now, and the swap that replaces it without dropping a request.

A request reads ``slot.current`` once and keeps that ``LoadedModel`` to the end, so a reload
that happens mid-request cannot change the model under it. A reload loads the new run fully
(and checks it scores) *before* one reference assignment swaps it in — atomic in Python — so
there is never a moment without a working model, and a run that fails to load leaves the old
one serving.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mmrank.errors import ConfigError
from mmrank.runs import load_model


@dataclass(frozen=True)
class LoadedModel:
    """A loaded run: the ranker, where it came from, its id and content version."""

    ranker: object
    run_dir: Path
    kind: str
    model_id: str
    version: str
    loaded_at: float


def load_run(run_dir: str | Path) -> LoadedModel:
    """Load a run directory for scoring (through the one loader, never the training stack)."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: run directory not found — pass the folder `mmrank train` wrote")
    ranker = load_model(run_dir)
    if hasattr(ranker, "fused_scorer"):  # CoTRR / V2
        import torch

        # the first request must not pay the fast path's one-off set-up (the ONNX Runtime export,
        # ~1.4 s at the default size, longer than most request timeouts): do it before serving
        ranker.fused_scorer().prepare(torch.get_num_threads())
    kind = str(getattr(ranker, "kind", type(ranker).__name__))
    return LoadedModel(
        ranker=ranker,
        run_dir=run_dir,
        kind=kind,
        model_id=f"{kind}:{run_dir.name}",
        version=_run_version(run_dir),
        loaded_at=time.time(),
    )


def _run_version(run_dir: Path) -> str:
    """Content hash of the run's description files: changes whenever the model does."""
    h = hashlib.sha256()
    for name in ("model.json", "fingerprint.json", "model.txt", "model.safetensors"):
        p = run_dir / name
        if p.is_file():
            h.update(name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


class ModelSlot:
    """Holds the current LoadedModel; ``reload`` swaps in another run directory."""

    def __init__(self, loaded: LoadedModel) -> None:
        self._current = loaded
        self._reload_lock = threading.Lock()  # one reload at a time; requests never take it

    @property
    def current(self) -> LoadedModel:
        """The model being served now; a reload replaces it in one assignment, so a request
        that read it keeps a consistent model."""
        return self._current

    def reload(self, run_dir: str | Path, probe=None) -> LoadedModel:
        """Load ``run_dir`` fully, run ``probe(loaded)`` (raise to refuse it: the app's probe
        checks the new model scores the current traffic, ``serve.reload_check``), then swap."""
        with self._reload_lock:
            loaded = load_run(run_dir)
            if probe is not None:
                probe(loaded)
            self._current = loaded
            return loaded
