"""Batch rerank of a JSONL file (native schema or Step5 ``scored.jsonl``), line by line.

Memory stays bounded by ``chunk_size`` queries whatever the file length: lines are read one at
a time, scored ``chunk_size`` at a time, and written straight to a temp file that is renamed
over the output only at the end (a crash never leaves half an output). Each output line is the
input object with its candidates reordered, each carrying ``score``, ``rank`` and
``original_rank``, plus the query's ``status`` and ``reason`` (and, in shadow mode, the
``model_order`` the model would have used). A bad line goes to the quarantine file with its
``path:line`` and reason; every good line is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from mmrank.data.formats import BadRecord, raw_text
from mmrank.data.validate import Problem
from mmrank.errors import DataError
from mmrank.serve.policy import RerankPolicy, decide_many
from mmrank.serve.records import parse_line, ranking_set_of
from mmrank.serve.reorder import SHADOW, Decision, ranked_entries


@dataclass
class BatchSummary:
    lines_in: int = 0
    queries_written: int = 0
    quarantined: int = 0
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    quarantine_path: str | None = None

    def as_dict(self) -> dict:
        return {
            "lines_in": self.lines_in, "queries_written": self.queries_written, "quarantined": self.quarantined,
            "status": dict(self.status), "reasons": dict(self.reasons), "quarantine": self.quarantine_path,
        }


def reranked_object(obj: dict, decision: Decision) -> dict:
    """The input query object with its candidates in the decided order, annotated."""
    cands = obj["candidates"]
    out = {k: v for k, v in obj.items() if k != "candidates"}
    out["status"], out["reason"] = decision.status, decision.reason
    if decision.detail:
        out["detail"] = decision.detail
    if decision.uncertainty is not None:
        out["uncertainty"] = decision.uncertainty
    if decision.status == SHADOW:
        out["model_order"] = [cands[int(i)]["candidate_id"] for i in decision.model_order]
    out["candidates"] = [
        {**cands[pos], "score": score, "rank": rank, "original_rank": orig} for pos, score, rank, orig in ranked_entries(decision)
    ]
    return out


class _AtomicLines:
    """A text file written line by line to a temp file, renamed into place on ``commit``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        self.file: TextIO = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def write(self, obj: dict) -> None:
        self.file.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
        self.count += 1

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.file.close()
        Path(self.tmp).unlink(missing_ok=True)


def rerank_file(
    ranker,
    in_path: str | Path,
    out_path: str | Path,
    policy: RerankPolicy,
    *,
    quarantine_path: str | Path | None = None,
    chunk_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> BatchSummary:
    """Rerank every query of ``in_path`` into ``out_path``; bad lines into ``quarantine_path``
    (default ``<out>.quarantine.jsonl``, written only when there are bad lines, else removed).
    ``progress(bytes_read)`` is called after each line."""
    in_path, out_path = Path(in_path), Path(out_path)
    quarantine_path = Path(quarantine_path) if quarantine_path else out_path.with_name(out_path.name + ".quarantine.jsonl")
    if in_path.resolve() == out_path.resolve():
        raise DataError("output would overwrite the input", path=out_path, hint="write to another file")
    try:
        source = open(in_path, "rb")
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror or e}", path=in_path, hint="check the path and its permissions") from None
    summary = BatchSummary()
    out, bad = _AtomicLines(out_path), _AtomicLines(quarantine_path)
    chunk: list[tuple[dict, object]] = []

    def flush() -> None:
        for (obj, _), decision in zip(chunk, decide_many(ranker, [q for _, q in chunk], policy)):
            out.write(reranked_object(obj, decision))
            summary.status[decision.status] += 1
            summary.reasons[decision.reason] += 1
        chunk.clear()

    try:
        with source:
            for no, raw in enumerate(source, start=1):
                if raw.strip():
                    summary.lines_in += 1
                    try:
                        obj = parse_line(_utf8(raw))
                        chunk.append((obj, ranking_set_of(obj)))
                    except BadRecord as e:
                        bad.write(_quarantine_row(in_path, no, e, raw))
                    if len(chunk) >= chunk_size:
                        flush()
                if progress is not None:
                    progress(len(raw))
            flush()
    except BaseException:
        out.discard()
        bad.discard()
        raise
    out.commit()
    summary.queries_written, summary.quarantined = out.count, bad.count
    if bad.count:
        bad.commit()
        summary.quarantine_path = str(quarantine_path)
    else:
        bad.discard()
        quarantine_path.unlink(missing_ok=True)  # a stale quarantine from an earlier run would mislead
    return summary


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _quarantine_row(path: Path, line: int, bad: BadRecord, raw: bytes) -> dict:
    """Same fields as ``ReadReport.write_quarantine`` plus the one-line ``path:line: reason — hint``."""
    problem = Problem(str(path), line, bad.message, bad.hint, raw_text(raw).rstrip("\n"))
    return {"path": problem.path, "line": line, "reason": problem.message, "hint": problem.hint,
            "record": problem.record, "error": problem.format()}
