"""P6: wall time of a full `mmrank audit` on MQ2008 Fold1, by engine and worker count.

usage: python benchmarks/p6_audit.py [--model cotrr|lambdamart] [--runs joblib:1,joblib:2,ray:2] [--data-dir DIR]
       [--task-dir FEATURES/rerank]   (the ML-100K reranking task built by `mmrank data features`)

The model (CoTRR from configs/mq2008_cotrr.yaml, or LambdaMART) and the LambdaMART baseline are
trained once; then the full audit (all checks, the packaged policy: 10,000 bootstrap resamples,
10,000 permutations, 3 permuted-label retrains) runs once per engine setting. The audit's
retraining jobs are what the engine parallelises. Also checks that every engine gives the same
checks (values, statuses, evidence). Writes benchmarks/results/audit.md (the lead merges it
into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

import yaml

from common import REPO, command_line, stamp
from mmrank.audit import audit
from mmrank.data.formats import load_ranking
from mmrank.models.registry import build_ranker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("MMRANK_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--model", default="cotrr", choices=["cotrr", "lambdamart"])
    ap.add_argument("--runs", default="joblib:1,joblib:2,ray:2")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap CoTRR's epochs (config: 30 with patience 6)")
    ap.add_argument("--task-dir", help="train/valid/test.parquet of a reranking task (e.g. OUT/rerank of `mmrank data "
                                       "features --dataset ml100k`) instead of MQ2008 Fold1")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "audit.md"))
    args = ap.parse_args()
    if args.task_dir:
        task = Path(args.task_dir)
        train, valid, test = (load_ranking(task / f"{p}.parquet") for p in ("train", "valid", "test"))
        data_name = f"the ML-100K reranking task ({task})"
    else:
        data = Path(args.data_dir)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["sh", str(data / "ltr" / "make_folds.sh"), tmp], check=True)
            fold = Path(tmp) / "MQ2008" / "Fold1"
            train, valid, test = (load_ranking(fold / f"{p}.txt", "libsvm", n_features=46) for p in ("train", "vali", "test"))
        data_name = "MQ2008 Fold1"
    config = yaml.safe_load((REPO / "configs" / f"mq2008_{args.model}.yaml").read_text())
    params = config["model"].get("params") or {}
    fit_options = {}
    if args.model == "cotrr":  # what `mmrank audit --config` does: the config's train settings go to fit
        settings = {**config.get("train", {}), "progress": False}
        if args.max_epochs:
            settings["max_epochs"] = args.max_epochs
        fit_options = {"settings": settings}
    factory = partial(build_ranker, args.model, params)
    t0 = time.perf_counter()
    model = factory().fit(train, valid, **fit_options)
    fit_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    baseline = build_ranker("lambdamart", {}).fit(train, valid)
    fit_base = time.perf_counter() - t0
    print(f"fit {args.model}: {fit_model:.1f}s, baseline LambdaMART: {fit_base:.1f}s")

    rows, reference, report = [], None, None
    for spec in args.runs.split(","):
        engine, n = spec.split(":")
        t0 = time.perf_counter()
        report = audit(model, baseline, train=train, test=test, valid=valid, make_model=factory,
                       fit_options=fit_options, engine=engine, n_jobs=int(n))
        secs = time.perf_counter() - t0
        checks = json.dumps([c.to_dict() for c in report.checks], sort_keys=True)
        same = reference is None or checks == reference
        reference = reference or checks
        slowest = sorted(report.meta["seconds"].items(), key=lambda kv: -kv[1])[:3]
        rows.append((spec, secs, report.verdict, same, slowest))
        print(f"{spec}: {secs:.1f}s verdict {report.verdict} identical={same} slowest={slowest}")

    base = rows[0][1]
    lines = [
        f"## P6: full audit on {data_name}",
        "",
        f"Command: `{command_line()}` — {stamp()}. Machine: 2-core CPU dev box, shared with parallel work "
        "(other helpers ran tests and benchmarks at the same time, so times are upper bounds).",
        f"Model {args.model} (configs/mq2008_{args.model}.yaml params"
        + (f", train settings {fit_options['settings']}" if fit_options else "") + ") vs LambdaMART (default params); fit once before "
        f"the audits: {args.model} {fit_model:.1f}s, LambdaMART {fit_base:.1f}s. Audit = all {len(report.checks)} checks with the packaged "
        "policy (BCa bootstrap, permutation tests, permuted-label retrains of the model, each with its own seed).",
        "",
        "| engine:workers | audit wall time (s) | vs first row | verdict | identical checks | slowest checks (s) |",
        "|---|---|---|---|---|---|",
    ]
    for spec, secs, verdict, same, slowest in rows:
        lines.append(f"| {spec} | {secs:.1f} | {base / secs:.2f}x | {verdict} | {'yes' if same else 'NO'} | "
                     + ", ".join(f"{k} {v:.1f}" for k, v in slowest) + " |")
    total = fit_model + fit_base + min(r[1] for r in rows)
    lines += ["", f"Total incl. fitting both models (fastest engine): {total:.1f}s (target ≤ 600 s on 2 cores).", "",
              f"Verdict {report.verdict}; checks: " + ", ".join(f"{c.name} {c.status}" for c in report.checks) + ".", ""]
    lines += [f"- {r}" for r in report.reasons]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
