"""P4: MQ2008 five folds — mean nDCG@10 of CoTRR / V2 fusion settings vs LightGBM LambdaMART,
all trained in the same run, with a paired randomization test over the test queries of all folds.

    MMRANK_DATA_DIR=../shared/data python benchmarks/p4_mq2008_quality.py --out benchmarks/results/p4.json

Fold k = train S_k..S_k+2, validation S_k+3, test S_k+4 (the published LETOR folds). Each
neural setting uses the preset's training settings (configs/mq2008_cotrr.yaml) unless
overridden with --epochs. Results are written after every (fold, model), so a cut-short run
still leaves its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmrank.config import TrainSettings
from mmrank.data.formats import load_ranking
from mmrank.data.model import concat_ranking_sets
from mmrank.metrics import evaluate_per_query
from mmrank.models.registry import build_ranker
from mmrank.stats import paired_bootstrap_ci, randomization_test

SETTINGS = {
    "lambdamart": ("lambdamart", {"seed": 0}),
    "cotrr": ("cotrr", {"d_model": 64, "n_heads": 4, "n_layers": 2, "list_context": False}),
    "cotrr+list_context": ("cotrr", {"d_model": 64, "n_heads": 4, "n_layers": 2, "list_context": True}),
    "fusion_v2": ("fusion", {"d_model": 64, "n_heads": 4, "list_context": False, "entropy_weight": 0.01, "modality_dropout": 0.1, "reconstruction_weight": 0.1}),
}


def fold_parts(data_dir: Path, k: int):
    part = lambda i: load_ranking(data_dir / "ltr" / "MQ2008" / f"S{(i - 1) % 5 + 1}.txt")  # noqa: E731
    return concat_ranking_sets([part(k), part(k + 1), part(k + 2)]), part(k + 3), part(k + 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/p4_mq2008.json")
    ap.add_argument("--folds", default="1,2,3,4,5")
    ap.add_argument("--models", default=",".join(SETTINGS))
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--merge", nargs="+", default=None, help="only merge these result files (folds run in parallel) and summarise")
    args = ap.parse_args()
    if args.merge:
        merged: dict = {"folds": {}}
        for path in args.merge:
            part = json.loads(Path(path).read_text())
            for k, models in part["folds"].items():
                merged["folds"].setdefault(k, {}).update(models)
            merged.setdefault("train", part.get("train"))
            merged.setdefault("settings", part.get("settings"))
        summarise(merged)
        Path(args.out).write_text(json.dumps(merged, indent=1))
        return
    torch.set_num_threads(args.threads)
    data_dir = Path(os.environ.get("MMRANK_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"folds": {}}
    result["settings"] = {k: v for k, v in SETTINGS.items()}
    result["train"] = {"max_epochs": args.epochs, "patience": args.patience, "lr": 1e-3, "batch_queries": 16, "loss": "combined"}
    for k in [int(f) for f in args.folds.split(",")]:
        train, valid, test = fold_parts(data_dir, k)
        fold = result["folds"].setdefault(str(k), {})
        for name in args.models.split(","):
            if name in fold:
                continue
            kind, params = SETTINGS[name]
            model = build_ranker(kind, params)
            t0 = time.perf_counter()
            if kind in ("cotrr", "fusion"):
                settings = TrainSettings(max_epochs=args.epochs, patience=args.patience, lr=1e-3, batch_queries=16,
                                         progress=False, seed=0, threads=args.threads)
                with tempfile.TemporaryDirectory() as logs:
                    model.fit(train, valid, settings, log_dir=logs)
            else:
                model.fit(train, valid)
            per_query = evaluate_per_query(test, model.score(test), ["ndcg@1", "ndcg@5", "ndcg@10"])
            fold[name] = {
                "seconds": time.perf_counter() - t0,
                "epochs": len(getattr(model, "history_", [])) or None,
                "mean": {m: float(per_query[m].mean()) for m in ("ndcg@1", "ndcg@5", "ndcg@10")},
                "per_query_ndcg@10": per_query["ndcg@10"].tolist(),
            }
            print(f"fold {k} {name}: nDCG@10 {fold[name]['mean']['ndcg@10']:.4f} ({fold[name]['seconds']:.0f}s)", flush=True)
            out.write_text(json.dumps(result, indent=1))
    summarise(result)
    out.write_text(json.dumps(result, indent=1))


def summarise(result: dict) -> None:
    """Per model: mean test nDCG@10 over the folds it finished and, for neural settings, the paired
    comparison with LambdaMART over all test queries of the folds both finished."""
    folds = result["folds"]
    names = sorted({n for f in folds.values() for n in f})
    summary: dict = {"models": {}}
    for n in names:
        # Each model against LambdaMART over the folds where both finished.
        common = sorted(k for k, f in folds.items() if n in f and ("lambdamart" in f or n == "lambdamart"))
        summary["models"].setdefault(n, {})["folds"] = common
        pq = np.concatenate([folds[k][n]["per_query_ndcg@10"] for k in common]) if common else np.zeros(0)
        summary["models"][n] |= {"mean_ndcg@10_over_queries": float(pq.mean()) if len(pq) else None,
                                "mean_ndcg@10_over_folds": float(np.mean([folds[k][n]["mean"]["ndcg@10"] for k in common])) if common else None}
        if n != "lambdamart" and "lambdamart" in names and common:
            base = np.concatenate([folds[k]["lambdamart"]["per_query_ndcg@10"] for k in common])
            test = randomization_test(pq, base, seed=0)
            ci = paired_bootstrap_ci(pq, base, seed=0)
            summary["models"][n]["vs_lambdamart"] = {"difference": float(np.mean(pq - base)), "p_value": test.pvalue,
                                                     "ci95": [ci.low, ci.high], "ratio": float(pq.mean() / base.mean())}
    result["summary"] = summary
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
