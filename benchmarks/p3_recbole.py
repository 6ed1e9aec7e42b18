"""P3: wall time until validation NDCG@10 reaches RecBole 1.2.1 SASRec's best, same split
(leave-one-out, time order) and full ranking; plus final test NDCG@10 of both.

RecBole runs in its own venv (numpy<2): start it first, in the background, with its log kept:

    THREADS=1 bash ../shared/peers/recbole/run_sasrec.sh ../shared/data > recbole.out 2>&1 &
    # RecBole also writes log/SASRec/*.log in its (temporary) working folder: copy it out.

then either train ours here against RecBole's best valid NDCG@10:

    python benchmarks/p3_recbole.py --recbole-log SASRec.log --train configs/ml100k_sasrec.yaml --out /tmp/p3_run

or read an existing run (its model.json holds per-epoch wall seconds and valid metrics):

    python benchmarks/p3_recbole.py --recbole-log SASRec.log --ours RUN

Prints one JSON object. When RecBole's log has not finished (no test result line), its best is
the best *so far*, and the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seqrec_common import first_reaching, recbole_epochs, run_history  # noqa: E402


def recbole_test(log_text: str) -> dict | None:
    """RecBole's final test metrics: the JSON line ``run_sasrec.sh`` prints last, else the
    "test result" line of RecBole's own log (colour codes and OrderedDict repr allowed)."""
    for line in reversed(log_text.splitlines()):
        if line.startswith('{"peer"'):
            return {k: float(v) for k, v in json.loads(line)["test"].items()}
    m = re.search(r"test result\S*\s*:\s*(.*)", log_text)
    if m is None:
        return None
    return {k: float(v) for k, v in re.findall(r"'([\w@]+)',?:? ([\d.]+)", m.group(1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recbole-log", required=True)
    ap.add_argument("--ours", help="an existing sequential run directory")
    ap.add_argument("--train", help="config to train with target_ndcg = RecBole's best valid NDCG@10")
    ap.add_argument("--out", help="run directory for --train")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()

    rb = recbole_epochs(args.recbole_log)
    if not rb:
        sys.exit(f"{args.recbole_log}: no finished RecBole epoch yet")
    best = max(rb, key=lambda r: r["valid_ndcg@10"])
    rb_test = recbole_test(Path(args.recbole_log).read_text(errors="replace"))
    target = best["valid_ndcg@10"]

    if args.train:
        from mmrank.config import load_config
        from mmrank.sequential.run import train_sequential

        import resource
        import time

        cfg = load_config(args.train, args.set + [f"train.target_ndcg={target}"])
        wall0, cpu0 = time.perf_counter(), time.process_time()
        train_sequential(cfg, args.out)
        run = Path(args.out)
        used = {"wall_seconds_total": round(time.perf_counter() - wall0, 2),
                "cpu_seconds_total": round(time.process_time() - cpu0, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    else:
        run = Path(args.ours)
    used = locals().get("used", {})
    ours = run_history(run)
    metrics = json.loads((run / "metrics.json").read_text())
    hit = first_reaching(ours, "valid_ndcg@10", target, "seconds")
    out = {
        "recbole": {"epochs_logged": len(rb), "finished": rb_test is not None,
                    "best_valid_ndcg@10": target, "best_epoch": best["epoch"],
                    "seconds_to_best": best["cumulative_seconds"], "test": rb_test,
                    "mean_train_seconds_per_epoch": round(sum(r["train_seconds"] or 0 for r in rb) / len(rb), 2)},
        "ours": {"run": str(run), "epochs": len(ours),
                 "best_valid_ndcg@10": max(r["valid_ndcg@10"] for r in ours),
                 "seconds_to_recbole_best": None if hit is None else hit["seconds"],
                 "epoch_reaching_it": None if hit is None else hit["epoch"],
                 "train_seconds": metrics.get("train_seconds"),
                 "test_ndcg@10": metrics["test"]["ndcg@10"], **used},
    }
    if hit is not None:
        out["time_ratio_ours_over_recbole"] = round(hit["seconds"] / best["cumulative_seconds"], 4)
    if rb_test is not None:
        out["test_ndcg@10_ours_minus_recbole"] = round(metrics["test"]["ndcg@10"] - rb_test["ndcg@10"], 4)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
