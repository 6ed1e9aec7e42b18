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

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmrank.data.formats import BadRecord, raw_text
from mmrank.data.validate import Problem
from mmrank.errors import DataError
from mmrank.serve.policy import RerankPolicy, decide_many
from mmrank.serve.records import parse_line, ranking_set_of
from mmrank.serve.batch_output import AtomicLines, check_output_path
from mmrank.serve.reorder import FALLBACK, MODEL_ERROR, NON_FINITE, SHADOW, TIMEOUT, WRONG_LENGTH, Decision, ranked_entries


NOT_WRITABLE = ("a number is too large for a float (it reads as infinity) and cannot be written back as JSON",
                "write numbers within ±1.8e308")
# Exit codes of `mmrank rerank` (docs/serving.md, "Exit codes"); 2 is a usage/data error (nothing written).
EXIT_OK, EXIT_PARTIAL, EXIT_NOTHING_RERANKED = 0, 3, 4
# Fallbacks because the model failed (the others — outside_rollout, uncertainty — are the policy's choice).
FAULT_REASONS = frozenset({MODEL_ERROR, TIMEOUT, NON_FINITE, WRONG_LENGTH})


@dataclass
class BatchSummary:
    """Counts of one batch rerank. Every non-blank line is exactly one of: written (reranked,
    shadow or fallback, see ``status``/``reasons``) or quarantined."""

    lines_in: int = 0
    queries_written: int = 0
    quarantined: int = 0
    status: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    quarantine_path: str | None = None

    @property
    def model_faults(self) -> int:
        """Queries that fell back because the model failed (raised, NaN, wrong length, timeout)."""
        return sum(n for r, n in self.reasons.items() if r in FAULT_REASONS)

    @property
    def exit_code(self) -> int:
        """0 every line done as the policy wanted; 4 lines came in but the model ordered none of
        them (every line quarantined, or every scored query a model fault); 3 otherwise when some
        lines were quarantined or some queries hit a model fault."""
        worked = self.queries_written - self.model_faults
        if self.lines_in and worked == 0:
            return EXIT_NOTHING_RERANKED
        return EXIT_PARTIAL if self.quarantined or self.model_faults else EXIT_OK

    def outcome(self) -> str:
        """The one summary line a pipeline's log keeps."""
        what = {EXIT_OK: "ok", EXIT_PARTIAL: "partial", EXIT_NOTHING_RERANKED: "nothing reranked"}[self.exit_code]
        return (f"{what}: {self.lines_in} lines in — {self.status.get('reranked', 0)} reranked, "
                f"{self.status.get(SHADOW, 0)} shadow, {self.status.get(FALLBACK, 0)} fallback "
                f"({self.model_faults} model faults), {self.quarantined} quarantined (exit {self.exit_code})")

    def as_dict(self) -> dict:
        """The counts as JSON-ready data, with the derived ``model_faults`` and ``exit_code``
        (the quarantine file's path under ``"quarantine"``)."""
        return {
            "lines_in": self.lines_in, "queries_written": self.queries_written, "quarantined": self.quarantined,
            "status": dict(self.status), "reasons": dict(self.reasons), "quarantine": self.quarantine_path,
            "model_faults": self.model_faults, "exit_code": self.exit_code,
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

    The paths are checked before any line is read (DataError: an output that is a folder, the
    input itself, an unreadable input). ``progress(bytes_read)`` is called after each line.
    Returns the counts; ``summary.exit_code`` is what the CLI exits with."""
    in_path, out_path = Path(in_path), Path(out_path)
    quarantine_path = Path(quarantine_path) if quarantine_path else out_path.with_name(out_path.name + ".quarantine.jsonl")
    _check_paths(in_path, out_path, quarantine_path)
    try:
        source = open(in_path, "rb")
    except OSError as e:
        raise DataError(f"cannot read file: {e.strerror or e}", path=in_path, hint="check the path and its permissions") from None
    with source:
        out = AtomicLines(out_path)
        try:
            bad = AtomicLines(quarantine_path)
        except BaseException:
            out.discard()
            raise
        try:
            summary = _rerank_lines(ranker, source, in_path, out, bad, policy, chunk_size, progress)
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


def _check_paths(in_path: Path, out_path: Path, quarantine_path: Path) -> None:
    check_output_path(out_path, "--out")
    check_output_path(quarantine_path, "--quarantine")
    for path, option in ((out_path, "--out"), (quarantine_path, "--quarantine")):
        if in_path.resolve() == path.resolve():
            raise DataError(f"{option} would overwrite the input", path=path, hint="write to another file")
    if out_path.resolve() == quarantine_path.resolve():
        raise DataError("--quarantine is the same file as --out", path=out_path, hint="give them different paths")


def _rerank_lines(ranker, source, in_path: Path, out: AtomicLines, bad: AtomicLines, policy: RerankPolicy,
                  chunk_size: int, progress: Callable[[int], None] | None) -> BatchSummary:
    """Read ``source`` line by line: each line judged on its own, good ones scored
    ``chunk_size`` at a time into ``out``, bad ones into ``bad`` with their ``path:line``."""
    summary = BatchSummary()
    chunk: list[tuple[dict, object, int, bytes]] = []

    def flush() -> None:
        for (obj, _, no, raw), decision in zip(chunk, decide_many(ranker, [c[1] for c in chunk], policy)):
            try:
                out.write(reranked_object(obj, decision))
            except ValueError:  # a number JSON cannot hold (1e400 reads as infinity): the line is bad
                bad.write(_quarantine_row(in_path, no, BadRecord(*NOT_WRITABLE), raw))
                continue
            summary.status[decision.status] += 1
            summary.reasons[decision.reason] += 1
        chunk.clear()

    for no, raw in enumerate(source, start=1):
        if raw.strip():
            summary.lines_in += 1
            try:
                obj = parse_line(_utf8(raw))
                chunk.append((obj, ranking_set_of(obj), no, raw))
            except BadRecord as e:
                bad.write(_quarantine_row(in_path, no, e, raw))
            if len(chunk) >= chunk_size:
                flush()
        if progress is not None:
            progress(len(raw))
    flush()
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
