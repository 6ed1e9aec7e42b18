"""Run `mmrank` train/evaluate in a subprocess for integration tests.

The command module is imported explicitly, so these tests do not depend on which command
modules ``mmrank.cli`` registers by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MAIN = "import mmrank.cli.train_cmds; from mmrank.cli import main; main()"


def cli_script(tmp_path: Path) -> Path:
    """A script file running the CLI (torchrun needs a file or a module)."""
    path = tmp_path / "mmrank_cli.py"
    path.write_text(MAIN + "\n")
    return path


def env(threads: int = 1, **extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1", **extra}


def run_cli(args: list[str], timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=timeout, env=env(**extra))
    if proc.returncode != 0:
        raise AssertionError(f"mmrank {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc
