"""Speed of the interaction readers and splits on ML-100K (100,000 ratings).

Reference peer, measured in the same run: ``pandas.read_csv`` of the same files with no
validation at all (the floor any checked reader is compared with). Each timing is the median of
``--repeats`` runs.

    python benchmarks/io_interactions.py [--data ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, command_line, median_seconds, stamp  # noqa: E402

from mmrank.data.io_movielens import read_movielens_raw  # noqa: E402
from mmrank.data.io_recbole import read_recbole  # noqa: E402
from mmrank.data.splits import leave_one_out, temporal_split  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ml = args.data / "ml-100k"
    inter, _, _ = read_recbole(ml)
    # The same data with one bad record appended: the reader falls back to its line-by-line
    # path to locate it (a temp copy outside the repo; the data may not be redistributed).
    dirty = Path(tempfile.mkdtemp(prefix="mmrank-bench-"))
    shutil.copy(ml / "raw" / "u.item", dirty / "u.item")
    (dirty / "u.data").write_bytes((ml / "raw" / "u.data").read_bytes() + b"1\t1\tfive\t0\n")

    rows = [
        ("read_recbole (ml-100k.inter + .item, validated)", lambda: read_recbole(ml),
         "pandas.read_csv(ml-100k.inter) + .item", lambda: (pd.read_csv(ml / "ml-100k.inter", sep="\t"),
                                                          pd.read_csv(ml / "ml-100k.item", sep="\t"))),
        ("read_movielens_raw (u.data + u.item, validated)", lambda: read_movielens_raw(ml / "raw"),
         "pandas.read_csv(u.data) + u.item", lambda: (pd.read_csv(ml / "raw" / "u.data", sep="\t", header=None),
                                                     pd.read_csv(ml / "raw" / "u.item", sep="|", header=None, encoding="latin-1"))),
        ("read_movielens_raw, u.data + 1 bad line (line-by-line path)", lambda: read_movielens_raw(dirty),
         "pandas.read_csv(u.data) + u.item", lambda: (pd.read_csv(dirty / "u.data", sep="\t", header=None),
                                                     pd.read_csv(dirty / "u.item", sep="|", header=None, encoding="latin-1"))),
        ("leave_one_out (943 users)", lambda: leave_one_out(inter), None, None),
        ("temporal_split (0.1 / 0.1)", lambda: temporal_split(inter, 0.1, 0.1), None, None),
    ]
    lines = [
        "## Interaction readers and splits on ML-100K",
        "",
        f"Command: `{command_line()}` — {stamp()}; 2-core CPU dev box, shared with parallel work "
        f"(timings are under that contention). Median of {args.repeats} runs.",
        "",
        "| step | mmrank s | peer | peer s | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, fn, peer_name, peer_fn in rows:
        ours = median_seconds(fn, args.repeats)
        if peer_fn is None:
            lines.append(f"| {name} | {ours:.3f} | — | — | — |")
        else:
            peer = median_seconds(peer_fn, args.repeats)
            lines.append(f"| {name} | {ours:.3f} | {peer_name} (no validation) | {peer:.3f} | {ours / peer:.1f}x |")
    shutil.rmtree(dirty, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "io_interactions.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
