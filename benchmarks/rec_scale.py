"""Recommendation at 1M events: `mmrank data inspect`, `mmrank recommend` latency, audit memory.

The data: ML-100K's 943 users replicated ``--copies`` times with new ids (``196`` → ``196``,
``196_1``, ... ``196_9``), same items, times and ratings — 1,000,000 events, 9,430 users × 1,682
items at 10 copies — written as a RecBole folder (with the ``.item`` titles) under ``--work``
(outside the repo: MovieLens may not be redistributed). Then, each as its own CLI process (what a
user types, Python start-up and imports included):

1. ``mmrank data inspect DIR --json`` (median of ``--repeats``); peer: ``pandas.read_csv`` of the
   ``.inter`` file alone (no validation, no summary);
2. ``mmrank train configs/ml100k_sasrec.yaml`` on it (``--epochs`` epochs), peak RSS;
3. ``mmrank recommend RUN --user U``: the first call (scores every user once and caches), then
   ``--repeats`` later calls for different users; peer: the same call with ``--data DIR``, which
   re-reads and re-splits every event as every call did before the cache;
4. ``mmrank audit --model RUN --baseline popularity``: wall time and peak RSS
   (``/usr/bin/time -v``).

Two phases, because only timings need an idle box: ``--phase memory`` (data, training, the
first recommend call, the audit: peak RSS; run under ``heavy``) then ``--phase timing`` (inspect
and recommend latency on the run the first phase left in ``--work``; run under
``HEAVY_THREADS=2 heavy``). Each phase adds its numbers to ``results/rec_scale.json``; the
timing phase writes the section.

    python benchmarks/rec_scale.py --phase memory [--data ../shared/data] [--copies 10] [--epochs 1] [--work DIR]
    python benchmarks/rec_scale.py --phase timing [--repeats 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, command_line, stamp  # noqa: E402

from mmrank.data.formats import load_interaction_data, write_interactions  # noqa: E402
from mmrank.data.interaction_data import InteractionData  # noqa: E402
from mmrank.data.model import Interactions  # noqa: E402

MMRANK = [sys.executable, "-m", "mmrank"]
_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def replicate(src: Path, dst: Path, copies: int) -> InteractionData:
    """ML-100K with every user copied ``copies`` times under new ids, as a RecBole folder."""
    data = load_interaction_data(src, "recbole")
    inter = data.interactions
    users = np.concatenate([inter.user_ids if k == 0 else np.char.add(inter.user_ids.astype(str), f"_{k}").astype(object)
                            for k in range(copies)])
    big = Interactions(users, np.tile(inter.item_ids, copies), np.tile(inter.timestamps, copies),
                       np.tile(inter.ratings, copies))
    out = InteractionData(big, data.items, data.report, "recbole")
    write_interactions(out, dst, "recbole")
    return out


def timed(cmd: list[str], rss: bool = False) -> tuple[float, int | None, str]:
    """(wall seconds, peak RSS in MB or None, output) of one command; a failure stops the benchmark."""
    full = ["/usr/bin/time", "-v", *cmd] if rss else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 3, 4):  # audit exits 3/4 for PAUSE_AND_FIX / NO_GO: still a finished audit
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    m = _RSS.search(proc.stderr)
    return seconds, (int(m.group(1)) // 1024 if m else None), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=("memory", "timing", "render"), required=True)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mmrank-recscale"))
    args = ap.parse_args()
    out = RESULTS / "rec_scale.json"
    res = json.loads(out.read_text()) if args.phase != "memory" and out.is_file() else {}
    if args.phase != "render":
        (memory_phase if args.phase == "memory" else timing_phase)(args, res)
        out.write_text(json.dumps(res, indent=1) + "\n")
    if args.phase != "memory":
        (RESULTS / "rec_scale.md").write_text(_markdown(res, args) + "\n")
    print(json.dumps(res, indent=1))


def memory_phase(args, res: dict) -> None:
    """Data, training, the first recommend call and the audit, with their peak RSS."""
    data_dir, run, audit_dir = args.work / "ml100kx", args.work / "run", args.work / "audit"
    for p in (run, audit_dir):
        subprocess.run(["rm", "-rf", str(p)], check=True)
    big = replicate(args.data / "ml-100k", data_dir, args.copies)
    inter = big.interactions
    res.update(events=len(inter), users=inter.n_users, items=inter.n_items, copies=args.copies, epochs=args.epochs,
               memory_stamp=stamp(), memory_load_before=os.getloadavg())
    train_s, train_rss, _ = timed([*MMRANK, "train", "configs/ml100k_sasrec.yaml", "--out", str(run),
                                   "--set", f"data.path={data_dir}", "--set", f"train.epochs={args.epochs}"], rss=True)
    first, first_rss, _ = timed([*MMRANK, "recommend", str(run), "--user", str(inter.user_ids[0])], rss=True)
    audit_s, audit_rss, _ = timed([*MMRANK, "audit", "--model", str(run), "--baseline", "popularity",
                                   "--out", str(audit_dir)], rss=True)
    verdict = json.loads((audit_dir / "audit.json").read_text())
    res.update(train_s=train_s, train_rss_mb=train_rss, recommend_first_s=first, recommend_first_rss_mb=first_rss,
               audit_s=audit_s, audit_rss_mb=audit_rss, audit_verdict=verdict["verdict"],
               audit_checks={c["name"]: c["status"] for c in verdict["checks"]}, memory_load_after=os.getloadavg())


def timing_phase(args, res: dict) -> None:
    """Inspect and recommend latency (later calls; the live path re-reading the data as peer)."""
    import pandas as pd

    data_dir, run = args.work / "ml100kx", args.work / "run"
    res.update(timing_stamp=stamp(), timing_load_before=os.getloadavg())
    inspect = [timed([*MMRANK, "data", "inspect", str(data_dir), "--json"])[0] for _ in range(args.repeats)]
    t0 = time.perf_counter()
    pd.read_csv(data_dir / f"{data_dir.name}.inter", sep="\t")
    res["inspect_s"], res["pandas_read_s"] = statistics.median(inspect), time.perf_counter() - t0
    ids = json.loads((run / "recommend" / "ids.json").read_text())["users"]
    users = [ids[k * (len(ids) // (args.repeats + 1))] for k in range(1, args.repeats + 1)]
    later = [timed([*MMRANK, "recommend", str(run), "--user", u])[0] for u in users]
    live, _, _ = timed([*MMRANK, "recommend", str(run), "--user", users[0], "--data", str(data_dir)])
    res.update(recommend_later_s=later, recommend_later_median_s=statistics.median(later), recommend_live_s=live,
               timing_load_after=os.getloadavg())


def _markdown(r: dict, args) -> str:
    load = lambda t: ", ".join(f"{x:.2f}" for x in t)  # noqa: E731
    return f"""## Recommendation at 1M events: inspect, recommend latency, audit memory (issue 18)

Data: ML-100K's users replicated {r['copies']}x with new ids: {r['events']:,} events, {r['users']:,} users ×
{r['items']:,} items (RecBole folder with titles). Every number is one CLI process (`python -m mmrank ...`),
Python start-up and imports included.

Memory phase (`python benchmarks/rec_scale.py --phase memory` under `heavy`, one slot; the box shared,
load {load(r['memory_load_before'])} before, {load(r['memory_load_after'])} after) — {r['memory_stamp']}:

| step | wall (shared box) | peak RSS (`/usr/bin/time -v`) |
|---|---|---|
| `mmrank train configs/ml100k_sasrec.yaml`, {r['epochs']} epoch (data read, split, train, full + sampled evaluation) | {r['train_s']:.0f} s | {r['train_rss_mb']} MB |
| `mmrank recommend RUN --user U`, first call (scores all {r['users']:,} users once, caches the top 100) | {r['recommend_first_s']:.1f} s | {r['recommend_first_rss_mb']} MB |
| `mmrank audit --model RUN --baseline popularity` ({r['audit_verdict']}) | {r['audit_s']:.0f} s | **{r['audit_rss_mb']} MB** |

Timing phase (`python benchmarks/rec_scale.py --phase timing` under `HEAVY_THREADS=2 heavy`, the
box to itself; load {load(r['timing_load_before'])} before, {load(r['timing_load_after'])} after) — {r['timing_stamp']}:

| step | mmrank | peer | peer value | ratio |
|---|---|---|---|---|
| `mmrank recommend RUN --user U`, later calls (median of {len(r['recommend_later_s'])}; max {max(r['recommend_later_s']):.2f} s) | **{r['recommend_later_median_s']:.2f} s** | the same call with `--data DIR` (re-reads and re-splits every event: every call before the cache) | {r['recommend_live_s']:.1f} s | {r['recommend_live_s'] / r['recommend_later_median_s']:.0f}x faster |
| `mmrank data inspect DIR --json` (median of {args.repeats}) | {r['inspect_s']:.2f} s | `pandas.read_csv(.inter)` in-process, no validation, no summary | {r['pandas_read_s']:.2f} s | {r['inspect_s'] / r['pandas_read_s']:.1f}x |

{_peer(r)}Goals (issue 18): recommend after the first call < 1 s — **{'met' if max(r['recommend_later_s']) < 1 else 'not met'}**;
recommendation audit < 2 GB RSS — **{'met' if r['audit_rss_mb'] < 2048 else 'not met'}** ({r['audit_rss_mb']} MB).
"""


def _peer(r: dict) -> str:
    """Optional rows measured by hand in the same session (``peer_main``: the same steps with the
    code before this change; ``p7``: evaluation throughput before/after), when the JSON has them."""
    text = ""
    if "peer_main" in r:
        p = r["peer_main"]
        text += ("Peer, the code before this change (`git archive main src`, same data, same box, one slot): "
                 f"audit {p['audit_s']:.0f} s, **{p['audit_rss_mb']} MB** peak RSS (this change: {r['audit_rss_mb']} MB, "
                 f"{r['audit_rss_mb'] / p['audit_rss_mb']:.2f}x); "
                 f"`mmrank recommend` (every call re-reads and re-splits the data) {p['recommend_s']:.1f} s, "
                 f"{p['recommend_rss_mb']} MB; `mmrank data inspect` {p['inspect_s']:.1f} s. {p.get('note', '')}\n\n")
    if "p7" in r:
        text += r["p7"] + "\n\n"
    return text


if __name__ == "__main__":
    main()
