"""GO / PAUSE_AND_FIX / NO_GO from the checks' statuses, by the policy's rules.

* NO_GO — any FAIL among the leakage checks (the numbers cannot be trusted), or ``significance``
  FAILs (the gain's CI lies below zero: the model is worse than the baseline).
* PAUSE_AND_FIX — otherwise, when any check WARNs or FAILs, or the gain is not significant.
* GO — every applicable check PASSes (SKIPped checks did not apply and do not count), and every
  check the policy *requires* for the task (``verdict.required.<task>``) ran: a required check
  that SKIPs (or was not run) gives PAUSE_AND_FIX "not checked: NAME — what to provide".
"""

from __future__ import annotations

from dataclasses import dataclass

from mmrank.audit.result import FAIL, PASS, SKIP, WARN, CheckResult

GO, PAUSE_AND_FIX, NO_GO = "GO", "PAUSE_AND_FIX", "NO_GO"
EXIT_CODES = {GO: 0, PAUSE_AND_FIX: 3, NO_GO: 4}


@dataclass
class Verdict:
    """The audit's decision (``GO``, ``PAUSE_AND_FIX`` or ``NO_GO``) and the reasons behind it."""

    decision: str
    reasons: list[str]

    @property
    def exit_code(self) -> int:
        """The process exit status for this decision: GO 0, PAUSE_AND_FIX 3, NO_GO 4."""
        return EXIT_CODES[self.decision]


def _reason(c: CheckResult) -> str:
    return f"{c.name} {c.status}: {c.advice or c.rule}"


def not_checked(checks: list[CheckResult], policy: dict, task: str | tuple[str, ...]) -> list[str]:
    """Reasons for each check the policy requires for ``task`` (or for any of several: e.g.
    ``("rerank", "rerank_timed")`` for reranking data with times) that SKIPped or did not run."""
    tasks = (task,) if isinstance(task, str) else tuple(task)
    lists = policy["verdict"].get("required") or {}
    required = list(dict.fromkeys(name for t in tasks for name in (lists.get(t) or [])))
    by_name = {c.name: c for c in checks}
    out = []
    for name in required:
        c = by_name.get(name)
        if c is None:
            where = next(t for t in tasks if name in (lists.get(t) or []))
            out.append(f"not checked: {name} — it was not run (run every check, or drop it from verdict.required.{where})")
        elif c.status == SKIP:
            why = c.evidence.get("provide") or c.evidence.get("reason") or "it did not apply"
            out.append(f"not checked: {name} — {why}")
    return out


def decide(checks: list[CheckResult], policy: dict, task: str | tuple[str, ...] = "rerank") -> Verdict:
    """The verdict for ``checks`` of a ``task`` ("rerank" or "sequential"; a tuple adds the
    required checks of each, e.g. ``("rerank", "rerank_timed")``) audit."""
    leakage = set(policy["verdict"]["leakage_checks"])
    by_name = {c.name: c for c in checks}
    leaks = [c for c in checks if c.name in leakage and c.status == FAIL]
    significance = by_name.get("significance")
    if leaks or (significance is not None and significance.status == FAIL):
        worst = leaks + ([significance] if significance is not None and significance.status == FAIL else [])
        return Verdict(NO_GO, [_reason(c) for c in worst])
    problems = [_reason(c) for c in checks if c.status in (WARN, FAIL)]
    if significance is None or significance.status == SKIP:
        problems.append("significance WARN: audit against a baseline (--baseline)")
    problems += [r for r in not_checked(checks, policy, task) if not r.startswith("not checked: significance")]
    if problems:
        return Verdict(PAUSE_AND_FIX, problems)
    assert all(c.status in (PASS, SKIP) for c in checks)
    return Verdict(GO, ["every applicable check passed: " + ", ".join(c.name for c in checks if c.status == PASS)])
