"""Helpers every benchmark script shares: machine description, result files, BENCHMARKS.md assembly.

Each benchmark writes its own section to ``benchmarks/results/<topic>.md``; ``assemble()`` joins
those sections (sorted by file name) under a fixed header into ``BENCHMARKS.md``, so one script
never overwrites another's numbers.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

HEADER = """# Benchmarks

Numbers measured by the scripts in `benchmarks/`; each section names the exact command, the machine
and the date. Peers are measured in the same run and reported as ratios. Regenerate a section by
re-running its command (each script rewrites its own `benchmarks/results/*.md` and this file).

"""


def median_seconds(fn, repeats: int, warmup: bool = False) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (after one untimed call if ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gemm_peak(n: int = 1024, repeats: int = 20, dtype: str = "float32") -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n``-cube matmul (``dtype``: float32, or bfloat16 — oneDNN,
    AVX-512 BF16 where the CPU has it) at the current torch thread count."""
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_v = torch.__version__
    except Exception:  # torch is optional for some benchmarks
        torch_v = "n/a"
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, torch {torch_v}"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(REPO)) if script.is_relative_to(REPO) else sys.argv[0]
    return "python " + " ".join([shown, *sys.argv[1:]])


def stamp() -> str:
    return f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {git_sha()}, {machine()}"


def write_section(topic: str, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{topic}.md"
    path.write_text(markdown.rstrip() + "\n")
    assemble()
    return path


def assemble() -> Path:
    parts = [HEADER]
    for p in sorted(RESULTS.glob("*.md")):
        parts.append(p.read_text().rstrip() + "\n\n")
    out = REPO / "BENCHMARKS.md"
    out.write_text("".join(parts).rstrip() + "\n")
    return out
