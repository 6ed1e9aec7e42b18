"""The batch rerank's output files: checked before any work, written line by line to a temp file
next to the target and renamed over it at the end.

The temp file is ``.<name>.<pid>.mmrank-tmp`` in the target's folder, created with the mode a plain
``open()`` gives (0666 minus the umask, not ``mkstemp``'s 0600). A run that dies without cleaning
up (kill -9, power loss) leaves it behind under a name the next run for the same output finds: it
is removed there when the process that wrote it is gone. A run that is stopped (Ctrl-C, SIGTERM
through the CLI's handler, an exception) removes its own temp file at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from mmrank.atomic_io import TEMP_SUFFIX, remove_stale_temp_files, temp_path
from mmrank.errors import DataError

__all__ = ["TEMP_SUFFIX", "AtomicLines", "check_output_path", "remove_stale_temp_files", "temp_path"]


def check_output_path(path: Path, option: str) -> None:
    """DataError before any work when ``path`` cannot be an output file (a folder, or under a file)."""
    if path.is_dir():
        raise DataError(f"{option} {path} is a directory", hint=f"give {option} a file path, e.g. {path / 'reranked.jsonl'}")
    if path.exists() and not path.is_file():  # /dev/null, a FIFO: renaming over it would replace it
        raise DataError(f"{option} {path} is not a regular file", hint=f"give {option} the path of a file to (over)write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(f"{option} {path}: {parent} is a file, not a folder", hint=f"give {option} a path inside a folder")


class AtomicLines:
    """A JSONL file written line by line to its temp file, renamed into place on ``commit``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temp_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(path)
            # O_EXCL: never write into a file another writer holds; 0o666 & ~umask like open()
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, 0o666)
        except OSError as e:
            raise DataError(f"cannot write next to the output: {e.strerror or e}", path=path,
                            hint="check the folder exists and is writable") from None
        self.file: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def write(self, obj: dict) -> None:
        """Append ``obj`` as one JSON line (NaN refused: it is not JSON)."""
        self.file.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
        self.count += 1

    def commit(self) -> None:
        """Close and rename the temp file over the target."""
        self.file.close()
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.tmp.unlink(missing_ok=True)
            raise DataError(f"cannot replace the output: {e.strerror or e}", path=self.path,
                            hint="was it made a folder while the rerank ran? give another path") from None

    def discard(self) -> None:
        """Close and remove the temp file; the target is left as it was."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)
