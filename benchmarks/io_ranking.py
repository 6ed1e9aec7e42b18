"""Speed of the ranking readers/writers on MQ2008 (S1..S5: 784 queries, 15,211 documents, 46 features).

Peers, measured in the same run on the same files: scikit-learn's ``load_svmlight_file``
(Cython, ``query_id=True``; no docids, no per-line validation) for LibSVM, and pandas
(``read_parquet`` / ``read_json(lines=True)``, no validation, no RankingSet) for the files
mmrank wrote. Each timing is the median of ``--repeats`` runs.

    python benchmarks/io_ranking.py [--data ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_svmlight_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, median_seconds, stamp, write_section  # noqa: E402

from mmrank.data.formats import read_ranking, write_ranking  # noqa: E402
from mmrank.data.model import concat_ranking_sets  # noqa: E402


LOAD_BEFORE = "%.2f %.2f %.2f" % os.getloadavg()  # at start, before this run adds its own load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    parts = [args.data / "ltr" / "MQ2008" / f"S{k}.txt" for k in range(1, 6)]

    def read_all_libsvm():
        return concat_ranking_sets([read_ranking(p, "libsvm")[0] for p in parts])

    rset = read_all_libsvm()
    assert (rset.n_queries, rset.n_candidates) == (784, 15211)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_ranking(rset, d / "mq.jsonl")
        write_ranking(rset, d / "mq.parquet")
        write_ranking(rset, d / "mq.txt")
        rows = [
            ("read LibSVM S1..S5 (validated, docids, RankingSet)", read_all_libsvm,
             "sklearn load_svmlight_file(query_id=True) x5", lambda: [load_svmlight_file(str(p), query_id=True) for p in parts]),
            ("read Parquet (validated, RankingSet)", lambda: read_ranking(d / "mq.parquet"),
             "pandas.read_parquet", lambda: pd.read_parquet(d / "mq.parquet")),
            ("read JSONL (validated, RankingSet)", lambda: read_ranking(d / "mq.jsonl"),
             "pandas.read_json(lines=True)", lambda: pd.read_json(d / "mq.jsonl", lines=True)),
            ("write LibSVM", lambda: write_ranking(rset, d / "w.txt"), None, None),
            ("write Parquet", lambda: write_ranking(rset, d / "w.parquet"), None, None),
            ("write JSONL", lambda: write_ranking(rset, d / "w.jsonl"), None, None),
        ]
        sizes = {ext: (d / f"mq.{ext}").stat().st_size for ext in ("txt", "parquet", "jsonl")}
        lines = [
            "## Ranking readers/writers on MQ2008 (S1..S5, 15,211 documents)",
            "",
            f"Command: `{command_line()}` — {stamp()}; load average before {LOAD_BEFORE} (1/5/15 min, 2 cores). "
            f"Median of {args.repeats} runs.",
            "",
            "| step | mmrank s | peer | peer s | ratio (mmrank / peer) |",
            "|---|---|---|---|---|",
        ]
        for name, fn, peer_name, peer_fn in rows:
            ours = median_seconds(fn, args.repeats)
            if peer_fn is None:
                lines.append(f"| {name} | {ours:.3f} | — | — | — |")
            else:
                theirs = median_seconds(peer_fn, args.repeats)
                lines.append(f"| {name} | {ours:.3f} | {peer_name} | {theirs:.3f} | {ours / theirs:.1f}x |")
        lines += ["", "File sizes written by mmrank: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()) + "."]
    out = write_section("io_ranking", "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
