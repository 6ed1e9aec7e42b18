"""Run directories: what ``mmrank train`` writes and everything else reads.

Layout (every file written atomically: temp file + rename)::

    RUN/config.yaml          the resolved config (overrides and ${ENV} applied)
    RUN/model.safetensors    weights (neural and linear models) — or model.txt for LightGBM
    RUN/model.json           kind, params, modality dims, sha256 of the weight file
    RUN/calibrator.json      score → probability map fitted on validation data
    RUN/metrics.json         validation/test metrics, calibration, distillation, training curve
    RUN/predictions.parquet  split, query_id, candidate_id, label, score, probability
    RUN/fingerprint.json     data + split hashes, source file sha256s, git sha, package versions, seed
    RUN/logs/                training checkpoints (resume), CSV + TensorBoard logs

``load_model(run_dir)`` is THE way to load a trained model for scoring. It never imports
Lightning (the server loads models through it and stays small).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from mmrank.data.model import RankingSet, hash_ids
from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.errors import DataError

CONFIG = "config.yaml"
MODEL_JSON = "model.json"
CALIBRATOR = "calibrator.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
FINGERPRINT = "fingerprint.json"
LOGS = "logs"
PACKAGES = ("mmrank", "torch", "lightning", "numpy", "scipy", "scikit-learn", "lightgbm", "pandas", "safetensors", "pydantic")


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"


def _jsonable(v: Any):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy scalars/arrays and paths converted)."""
    return atomic_write_text(path, _json(obj))


def read_json(path: str | Path) -> Any:
    """Parse a run file's JSON; DataError naming the file when it is missing or broken."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path.name}: {e}", path=path, hint="point at a run directory written by `mmrank train`") from e


# -- fingerprints -------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_sha() -> str | None:
    """The commit of the installed source tree, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that decide a run's numbers (None for any not installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def split_fingerprint(parts: dict[str, RankingSet], files: dict[str, list[str]] | None = None) -> dict:
    """Per part: rows hash, query-id hash, sizes and the sha256 of each source file."""
    out: dict[str, Any] = {}
    for name, rset in parts.items():
        out[name] = {
            "data": rset.fingerprint(),
            "query_ids": hash_ids(rset.query_ids),
            "queries": rset.n_queries,
            "candidates": rset.n_candidates,
            "files": [{"path": str(p), "sha256": file_sha256(p)} for p in (files or {}).get(name, [])],
        }
    out["combined"] = hash_ids(f"{k}:{v['query_ids']}" for k, v in out.items())
    return out


def make_fingerprint(parts: dict[str, RankingSet], files: dict[str, list[str]] | None, seed: int | None) -> dict:
    """``fingerprint.json`` of a rerank run: per-split hashes and sizes, source file sha256s,
    git sha, package versions, Python version and seed.
    """
    return {
        "splits": split_fingerprint(parts, files),
        "git_sha": git_sha(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "seed": seed,
    }


# -- writing ------------------------------------------------------------------------------------
def write_predictions(run_dir: str | Path, parts: dict[str, tuple[RankingSet, np.ndarray, np.ndarray | None]]) -> Path:
    """``parts[name] = (rset, scores, probabilities or None)`` → one Parquet table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {k: [] for k in ("split", "query_id", "candidate_id", "label", "score", "probability")}
    for name, (rset, scores, probs) in parts.items():
        n = rset.n_candidates
        cols["split"].append(np.full(n, name, dtype=object))
        cols["query_id"].append(rset.query_ids[rset.query_index])
        cols["candidate_id"].append(rset.candidate_ids)
        cols["label"].append(rset.labels)
        cols["score"].append(np.asarray(scores, dtype=np.float64))
        cols["probability"].append(np.full(n, np.nan) if probs is None else np.asarray(probs, dtype=np.float64))
    table = pa.table({k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return atomic_write_bytes(Path(run_dir) / PREDICTIONS, sink.getvalue().to_pybytes())


def write_run(run_dir: str | Path, *, config_yaml: str, model, metrics: dict, fingerprint: dict,
              calibrator_json: dict | None = None) -> Path:
    """Write the run's files (the model through its own ``save``); predictions are written
    separately by ``write_predictions``. ``model.json`` is written last by the model, so a run
    that has one is complete."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, config_yaml)
    write_json(run_dir / FINGERPRINT, fingerprint)
    if calibrator_json is not None:
        write_json(run_dir / CALIBRATOR, calibrator_json)
    write_json(run_dir / METRICS, metrics)
    model.save(run_dir)
    return run_dir


# -- reading ------------------------------------------------------------------------------------
def _require_run(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / MODEL_JSON).is_file():
        raise DataError("not a finished run directory (no model.json)", path=run_dir,
                        hint="train one with `mmrank train CONFIG.yaml --out RUN`, or finish it with --resume")
    return run_dir


def model_kind(run_dir: str | Path) -> str:
    """The ``kind`` a finished run's ``model.json`` names (a key of the model registry)."""
    return read_json(_require_run(run_dir) / MODEL_JSON).get("kind")


def load_model(run_dir: str | Path):
    """The trained model of a run directory of either task (reranker or sequential recommender),
    through the one registry; checksums are verified by the model's own ``load``."""
    from mmrank.models.registry import model_class

    run_dir = _require_run(run_dir)
    return model_class(model_kind(run_dir)).load(run_dir)


@dataclass(frozen=True)
class Run:
    """A finished run directory: its model, resolved config and metrics."""

    path: Path
    kind: str
    task: str
    model: Any
    config: dict
    metrics: dict


def load_run(run_dir: str | Path) -> Run:
    """Everything a finished run directory holds that a user reads first.

    Example:
        >>> run = load_run("runs/cotrr")  # doctest: +SKIP
        >>> run.task, run.metrics["test"]["ndcg@10"]  # doctest: +SKIP
    """
    from mmrank.models.registry import task_of

    run_dir = _require_run(run_dir)
    kind = model_kind(run_dir)
    return Run(run_dir, kind, task_of(kind), load_model(run_dir), load_run_config(run_dir), load_metrics(run_dir))


def load_calibrator(run_dir: str | Path):
    """The run's fitted score → probability calibrator, or None when it has none."""
    from mmrank.calibrate import load_calibrator as _load

    path = Path(run_dir) / CALIBRATOR
    return _load(path) if path.is_file() else None


def load_metrics(run_dir: str | Path) -> dict:
    """The run's ``metrics.json`` as a dict."""
    return read_json(Path(run_dir) / METRICS)


def load_run_config(run_dir: str | Path) -> dict:
    """The run's resolved ``config.yaml`` as a dict (not validated: read what was trained)."""
    import yaml

    path = Path(run_dir) / CONFIG
    try:
        return yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise DataError(f"cannot read the run's config: {e}", path=path) from e
