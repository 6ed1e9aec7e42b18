"""LightGBM LambdaMART on the five standard MQ2008 folds: mean NDCG@1/5/10 ± sd over folds.

usage: python benchmarks/ltr_baselines.py [--data-dir DIR]   (DIR holds ltr/MQ2008 and ltr/make_folds.sh;
default $MMRANK_DATA_DIR or ../shared/data). Folds are rebuilt into a temp folder with make_folds.sh.
Writes benchmarks/results/ltr_baselines.md and re-assembles BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, command_line, stamp, write_section
from mmrank.data.formats import load_ranking
from mmrank.metrics import evaluate
from mmrank.models.baselines import LambdaMART

METRICS = ("ndcg@1", "ndcg@5", "ndcg@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("MMRANK_DATA_DIR", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    data = Path(args.data_dir)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["sh", str(data / "ltr" / "make_folds.sh"), tmp], check=True)
        for k in range(1, 6):
            fold = Path(tmp) / "MQ2008" / f"Fold{k}"
            train, valid, test = (load_ranking(fold / f"{p}.txt", "libsvm", n_features=46) for p in ("train", "vali", "test"))
            t0 = time.perf_counter()
            model = LambdaMART(seed=0).fit(train, valid)
            secs = time.perf_counter() - t0
            res = evaluate(test, model.score(test), METRICS)
            rows.append([res[m] for m in METRICS] + [secs, model.booster_.best_iteration])
            print(f"Fold{k}: " + "  ".join(f"{m}={res[m]:.4f}" for m in METRICS) + f"  fit {secs:.1f}s")
    arr = np.array(rows)
    mean, sd = arr.mean(0), arr.std(0, ddof=1)
    lines = [
        "## LTR baselines: LightGBM LambdaMART on MQ2008 (5 folds)",
        "",
        f"Command: `{command_line()}` — {stamp()}.",
        "Protocol: standard LETOR 4.0 folds (train 3 parts, validation 1, test 1); LambdaMART (lambdarank, 2^rel−1 gains, "
        "lr 0.05, 31 leaves, early stopping on validation NDCG@10, seed 0); test metrics use mmrank.metrics "
        "(exponential gain; queries without relevant documents count 1, as LightGBM does).",
        "",
        "| fold | NDCG@1 | NDCG@5 | NDCG@10 | fit s | trees |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {k + 1} | {r[0]:.4f} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.1f} | {int(r[4])} |" for k, r in enumerate(rows)]
    lines.append(
        f"| **mean ± sd** | **{mean[0]:.4f} ± {sd[0]:.4f}** | **{mean[1]:.4f} ± {sd[1]:.4f}** | **{mean[2]:.4f} ± {sd[2]:.4f}** | {mean[3]:.1f} | |"
    )
    print(write_section("ltr_baselines", "\n".join(lines)))


if __name__ == "__main__":
    main()
