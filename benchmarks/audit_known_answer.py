"""Detection and false-alarm rates of the audit on the fault SIMULATOR, over many seeds.

usage: python benchmarks/audit_known_answer.py [--seeds 20]

For every planted fault (tests/known_answer/simulator.py) and for the clean simulation, audits a
small LambdaMART against the text-only first stage on ``--seeds`` seeds and counts how often the
fault's own check fires, and on clean data how many check results WARN or FAIL. The simulator is
synthetic: these numbers describe the audit's checks, never any model's quality. Prints a
markdown section (the tests assert the same rates on fewer seeds).
"""

from __future__ import annotations

import argparse
import sys
import time

from common import REPO, command_line, stamp

sys.path.insert(0, str(REPO / "tests"))
from known_answer.test_known_answer import EXPECTED, audit_simulation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    seeds = range(100, 100 + args.seeds)  # not the seeds the tests use
    t0 = time.perf_counter()
    lines = ["## Audit known-answer rates (fault simulator)", "",
             f"Command: `{command_line()}` — {stamp()}. Seeds {seeds.start}..{seeds.stop - 1} (disjoint from the tests' seeds); "
             "small LambdaMART (60 trees, 7 leaves) vs the text-only first stage; synthetic data only.", "",
             "| planted fault | check | expected | flagged | verdict as expected |", "|---|---|---|---|---|"]
    for fault, (check, status, verdict) in EXPECTED.items():
        hits = verdicts = 0
        for seed in seeds:
            report = audit_simulation(seed, (fault,))
            hits += report[check].status == status
            verdicts += report.verdict == verdict
        lines.append(f"| {fault} | {check} | {status} | {hits}/{len(seeds)} | {verdicts}/{len(seeds)} ({verdict}) |")
        print(lines[-1], flush=True)
    warn = fail = total = go = 0
    for seed in seeds:
        report = audit_simulation(seed)
        applicable = [c for c in report.checks if c.status != "SKIP"]
        total += len(applicable)
        warn += sum(c.status == "WARN" for c in applicable)
        fail += sum(c.status == "FAIL" for c in applicable)
        go += report.verdict == "GO"
    lines += ["", f"Clean simulation: {fail} FAIL and {warn} WARN among {total} applicable check results "
              f"({warn / total:.1%} WARN); verdict GO on {go}/{len(seeds)} seeds. Took {time.perf_counter() - t0:.0f}s."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
