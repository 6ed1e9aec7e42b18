"""The integrity audit: checks that can fail, a verdict, and the data for the report.

``audit(model, baseline, train=..., test=...).verdict`` -> "GO" | "PAUSE_AND_FIX" | "NO_GO".
"""

from mmrank.audit.policy import load_policy
from mmrank.audit.result import FAIL, PASS, SKIP, WARN, CheckResult
from mmrank.audit.runner import CHECKS, AuditReport, audit
from mmrank.audit.verdict import GO, NO_GO, PAUSE_AND_FIX

__all__ = ["audit", "AuditReport", "CheckResult", "CHECKS", "load_policy",
           "PASS", "WARN", "FAIL", "SKIP", "GO", "PAUSE_AND_FIX", "NO_GO"]
