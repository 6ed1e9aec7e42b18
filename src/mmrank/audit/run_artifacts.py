"""Plot data a training run left in its directory: reliability diagram and training curves.

Both are optional: a run without ``calibrator.json`` or ``logs/metrics.csv`` simply has no such
plot. Read here (at audit time) and stored in ``audit.json`` so ``mmrank report DIR`` can
rebuild the HTML from the audit alone.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path


def read_run_artifacts(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    out: dict = {}
    cal = run_dir / "calibrator.json"
    if cal.is_file():
        try:
            data = json.loads(cal.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
        reliability = data.get("reliability") if isinstance(data, dict) else None
        if isinstance(reliability, dict):
            out["reliability"] = reliability
    curves = run_dir / "logs" / "metrics.csv"  # Lightning's CSVLogger layout
    if curves.is_file():
        series: dict[str, list[list[float]]] = {}
        with curves.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                step = row.get("epoch") or row.get("step")
                for k, v in row.items():
                    if k in ("epoch", "step") or v in ("", None) or step in ("", None):
                        continue
                    try:
                        series.setdefault(k, []).append([float(step), float(v)])
                    except ValueError:
                        continue
        if series:
            out["training_curves"] = series
    return out
