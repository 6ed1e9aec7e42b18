"""P6: wall time of a full audit INCLUDING the fits of the model and the baseline, by engine and
worker count, in one run.

usage: python benchmarks/p6_audit.py [--model cotrr|lambdamart] [--runs joblib:1,joblib:2,ray:2,joblib:1@2]
       [--max-epochs N] [--task-dir FEATURES/rerank [--interactions RATINGS]] [--data-dir DIR] [--out FILE]

Each row is one complete audit as `mmrank audit --model KIND --baseline lambdamart` runs it: the
model (CoTRR from configs/mq2008_cotrr.yaml, or LambdaMART) and the LambdaMART baseline are *not*
fitted beforehand — the audit fits them in its one job pool together with the permuted-label
retrains and the probes, then runs every check (packaged policy: 10,000 bootstrap resamples,
10,000 permutations, 3 retrains). ``engine:N`` runs the pool on N workers (joblib processes or Ray
workers), each job on one thread; ``engine:N@T`` gives the in-process run T torch/BLAS threads (a
peer: what threads alone do). The rows' checks are compared (values, statuses, evidence). Also
reported: every check's own cost in the first row (its seconds after the pool plus its pool
jobs' own seconds). Data: MQ2008 Fold1, or the ML-100K reranking task (``--task-dir``, built by
`mmrank data features --dataset ml100k`; with its task.json and ``--interactions`` the time checks
run too).
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
from mmrank.audit.rankers import Unfitted
from mmrank.data.formats import load_ranking
from mmrank.models.registry import build_ranker


def threads(n: int) -> None:
    """In-process torch and BLAS/OpenMP threads (pool workers set their own: one each)."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(n)


def load_data(args):
    if args.task_dir:
        task = Path(args.task_dir)
        sets = tuple(load_ranking(task / f"{p}.parquet") for p in ("train", "valid", "test"))
        times = events = None
        if (task / "task.json").is_file() and args.interactions:
            from mmrank.audit.timed_queries import read_query_times
            from mmrank.data.formats import read_interactions

            times, events = read_query_times(task / "task.json"), read_interactions(args.interactions)[0]
        return sets, times, events, f"the ML-100K reranking task ({task})"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["sh", str(Path(args.data_dir) / "ltr" / "make_folds.sh"), tmp], check=True)
        fold = Path(tmp) / "MQ2008" / "Fold1"
        sets = tuple(load_ranking(fold / f"{p}.txt", "libsvm", n_features=46) for p in ("train", "vali", "test"))
    return sets, None, None, "MQ2008 Fold1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("MMRANK_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--model", default="cotrr", choices=["cotrr", "lambdamart"])
    ap.add_argument("--runs", default="joblib:1,joblib:2,ray:2")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap CoTRR's epochs (config: 20 with patience 5)")
    ap.add_argument("--task-dir", help="train/valid/test.parquet (+ task.json) of a reranking task instead of MQ2008 Fold1")
    ap.add_argument("--interactions", help="the ratings the task was built from (enables the time checks)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "audit_p6_ml100k.md"))
    args = ap.parse_args()
    (train, valid, test), times, events, data_name = load_data(args)
    config = yaml.safe_load((REPO / "configs" / f"mq2008_{args.model}.yaml").read_text())
    params = config["model"].get("params") or {}
    fit_options = {}
    if args.model == "cotrr":  # what `mmrank audit --config` does: the config's train settings go to fit
        settings = {**config.get("train", {}), "progress": False}
        if args.max_epochs:
            settings["max_epochs"] = args.max_epochs
        fit_options = {"settings": settings}
    factory = partial(build_ranker, args.model, params)
    base_factory = partial(build_ranker, "lambdamart", {"num_threads": 1})  # default params, one thread per job
    load = os.getloadavg()
    rows, reference, report, first = [], None, None, None
    for spec in args.runs.split(","):
        engine, rest = spec.split(":")
        n, _, t = rest.partition("@")
        threads(int(t or 1))
        # every CoTRR job sets its own torch threads (Ray workers would otherwise inherit OMP_NUM_THREADS of the shell)
        opts = {"settings": {**fit_options["settings"], "threads": int(t or 1)}} if fit_options else {}
        t0 = time.perf_counter()
        report = audit(Unfitted(factory, opts), Unfitted(base_factory), train=train, test=test, valid=valid,
                       make_model=factory, fit_options=opts, engine=engine, n_jobs=int(n),
                       query_times=times, interactions=events)
        secs = time.perf_counter() - t0
        checks = json.dumps([c.to_dict() for c in report.checks], sort_keys=True)
        same = reference is None or checks == reference
        reference = reference or checks
        first = first or report
        rows.append((spec, secs, report, same))
        print(f"{spec}: {secs:.1f}s verdict {report.verdict} identical={same} pool={report.meta['job_pool_seconds']}s "
              f"fits={report.meta['fit_seconds']}", flush=True)
    threads(1)
    end_load = os.getloadavg()
    base = rows[0][1]
    lines = [
        f"## P6: full audit incl. both fits on {data_name}",
        "",
        f"Command: `{command_line()}` — {stamp()}. Load average {load[0]:.2f} at start, {end_load[0]:.2f} at the "
        "end (1-minute).",
        f"Model {args.model} (configs/mq2008_{args.model}.yaml params"
        + (f", train settings {fit_options['settings']}" if fit_options else "") + ") vs LambdaMART (default params, one "
        "thread). Each row = one whole audit: both fits, the permuted-label retrains and the probes in ONE job pool "
        f"(longest first), then all {len(report.checks)} checks with the packaged policy. Pool workers run one thread "
        "each; `@T` = T in-process threads.",
        "",
        "| engine:workers | wall time incl. fits (s) | speed-up vs first row | job pool (s) | fits' own s (model, baseline) "
        "| verdict | identical checks |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec, secs, rep, same in rows:
        fits = rep.meta["fit_seconds"]
        lines.append(f"| {spec} | {secs:.1f} | {base / secs:.2f}x | {rep.meta['job_pool_seconds']:.1f} | "
                     f"{fits.get('model', 0):.1f}, {fits.get('baseline', 0):.1f} | {rep.verdict} | {'yes' if same else 'NO'} |")
    seconds, jobs = first.meta["seconds"], first.meta["job_seconds"]
    cost = sorted(((name, seconds.get(name, 0.0), jobs.get(name, 0.0)) for name in seconds), key=lambda e: -(e[1] + e[2]))
    lines += ["", f"Each check's own cost in the `{rows[0][0]}` row (seconds after the pool + its pool jobs' own seconds): "
              + ", ".join(f"{n} {a:.1f} + {b:.1f}" for n, a, b in cost) + ".", "",
              f"Verdict {report.verdict}; checks: " + ", ".join(f"{c.name} {c.status}" for c in report.checks) + ".", ""]
    lines += [f"- {r}" for r in report.reasons]
    Path(args.out).write_text("\n".join(lines) + "\n")
    from common import assemble

    assemble()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
