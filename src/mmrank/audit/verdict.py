"""GO / PAUSE_AND_FIX / NO_GO from the checks' statuses, by the policy's rules.

* NO_GO — any FAIL among the leakage checks (the numbers cannot be trusted), or ``significance``
  FAILs (the gain's CI lies below zero: the model is worse than the baseline).
* PAUSE_AND_FIX — otherwise, when any check WARNs or FAILs, or the gain is not significant.
* GO — every applicable check PASSes (SKIPped checks did not apply and do not count).
"""

from __future__ import annotations

from dataclasses import dataclass

from mmrank.audit.result import FAIL, PASS, SKIP, WARN, CheckResult

GO, PAUSE_AND_FIX, NO_GO = "GO", "PAUSE_AND_FIX", "NO_GO"
EXIT_CODES = {GO: 0, PAUSE_AND_FIX: 3, NO_GO: 4}


@dataclass
class Verdict:
    decision: str
    reasons: list[str]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.decision]


def _reason(c: CheckResult) -> str:
    return f"{c.name} {c.status}: {c.advice or c.rule}"


def decide(checks: list[CheckResult], policy: dict) -> Verdict:
    leakage = set(policy["verdict"]["leakage_checks"])
    by_name = {c.name: c for c in checks}
    leaks = [c for c in checks if c.name in leakage and c.status == FAIL]
    significance = by_name.get("significance")
    if leaks or (significance is not None and significance.status == FAIL):
        worst = leaks + ([significance] if significance is not None and significance.status == FAIL else [])
        return Verdict(NO_GO, [_reason(c) for c in worst])
    problems = [c for c in checks if c.status in (WARN, FAIL)]
    if significance is None or significance.status == SKIP:
        problems.append(CheckResult("significance", WARN, rule="no baseline comparison: a gain cannot be shown",
                                    advice="audit against a baseline (--baseline)"))
    if problems:
        return Verdict(PAUSE_AND_FIX, [_reason(c) for c in problems])
    assert all(c.status in (PASS, SKIP) for c in checks)
    return Verdict(GO, ["every applicable check passed: " + ", ".join(c.name for c in checks if c.status == PASS)])
