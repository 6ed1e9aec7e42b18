"""Plot data a training run left in its directory: reliability diagram and training curves.

Both are optional: a run without calibration data (``metrics.json``'s ``calibration`` section,
written by ``mmrank train``) or ``logs/**/metrics.csv`` (Lightning's CSVLogger) simply has no
such plot. Read here (at audit time) and stored in ``audit.json`` so ``mmrank report DIR`` can
rebuild the HTML from the audit alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def read_run_artifacts(run_dir: str | Path) -> dict:
    """Collect a run directory's optional plot data for the audit report.

    Returns:
        A dict with ``"reliability"`` (the reliability table rows, after calibration when stored)
        and/or ``"training_curves"`` (``{column: [[epoch, mean value], ...]}`` from the first
        ``logs/**/metrics.csv``, per-epoch rows only, learning-rate columns left out); keys whose
        data the run lacks are absent."""
    run_dir = Path(run_dir)
    out: dict = {}
    reliability = _reliability(run_dir)
    if reliability:
        out["reliability"] = reliability
    for curves in sorted((run_dir / "logs").glob("**/metrics.csv"))[:1]:
        series: dict[str, list[list[float]]] = {}
        with curves.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                # Per-epoch curves only: Lightning logs the learning rate per optimiser step with no
                # epoch, and mixing step and epoch on one axis makes the plot unreadable.
                step = row.get("epoch")
                for k, v in row.items():
                    if k in ("epoch", "step") or k.startswith("lr-") or v in ("", None) or step in ("", None):
                        continue
                    try:
                        series.setdefault(k, []).append([float(step), float(v)])
                    except ValueError:
                        continue
        if series:
            out["training_curves"] = {k: _per_epoch_mean(v) for k, v in series.items()}
    return out


def _per_epoch_mean(points: list[list[float]]) -> list[list[float]]:
    """One point per epoch: a value logged every step (a sequential run's train loss) is averaged."""
    by_epoch: dict[float, list[float]] = {}
    for epoch, value in points:
        by_epoch.setdefault(epoch, []).append(value)
    return [[e, sum(v) / len(v)] for e, v in sorted(by_epoch.items())]


def _reliability(run_dir: Path) -> list[dict] | None:
    """The per-bin reliability table (``mmrank.calibrate.reliability_table`` rows), after
    calibration when both before and after are stored."""
    for name in ("metrics.json", "calibrator.json"):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        node = data.get("calibration", data) if isinstance(data, dict) else None
        if isinstance(node, dict) and isinstance(node.get("after"), dict):
            node = node["after"]
        rows = node.get("reliability") if isinstance(node, dict) else None
        if isinstance(rows, list) and rows:
            return rows
    return None
