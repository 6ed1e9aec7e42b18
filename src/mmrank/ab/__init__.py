"""A/B analysis of rollout and shadow logs (docs/ab_testing.md).

* ``events``: the log schema (assignment and outcome events) and its reader;
* ``analysis``: sample-ratio mismatch, per-arm metrics with CIs, guardrails, the stop/rollback verdict;
* ``simulate``: logs with planted effects (the analysis's known answers).

The server writes the log (``mmrank.serve.ab_log``, ``mmrank serve --ab-log``).
"""

from mmrank.ab.analysis import ABReport, Rules, analyse
from mmrank.ab.events import read_ab_log

__all__ = ["ABReport", "Rules", "analyse", "read_ab_log"]
