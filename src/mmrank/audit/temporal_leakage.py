"""temporal_leakage: training interactions that happen after what the model is asked to predict.

Per user: any training event strictly later than that user's earliest test event (the model
saw the future of the very user it is evaluated on). Globally, when the policy names a cut
time: any training event at or after the cut. Needs interaction data (user, item, timestamp):
a recommender's recorded events, or a time-split reranking task's queries turned into events
(``mmrank.audit.timed_queries``: ``--interactions`` with the task's ``task.json``; there the
task's single test cut becomes the global cut).
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, CheckResult
from mmrank.data.model import Interactions

NAME = "temporal_leakage"


def users_with_future_training(train: Interactions, test: Interactions) -> tuple[np.ndarray, int]:
    """(ids of test users with a training event after their first test event, number of such events)."""
    first_test: dict[str, float] = {}
    for u, t in zip(test.user_ids.tolist(), test.timestamps.tolist()):
        if u not in first_test or t < first_test[u]:
            first_test[u] = t
    cut = np.array([first_test.get(u, np.inf) for u in train.user_ids.tolist()])
    late = train.timestamps > cut
    return np.unique(train.user_ids[late]), int(late.sum())


def check(ctx: AuditContext) -> CheckResult:
    """Measure the share of test users with a training event later than their first test
    event and, when policy ``temporal_leakage.global_cut`` is set, the share of training events
    at or after that cut; ``value`` is the larger.

    Rule (policy ``temporal_leakage.max_violation_share``, 0 by default): FAIL when the value
    exceeds it (the model saw the future: a leakage check, NO_GO); PASS otherwise. SKIP without
    train and test interactions. Never WARNs."""
    if ctx.train_interactions is None or ctx.test_interactions is None:
        return CheckResult.skip(NAME, "no interaction timestamps given (train/test events)",
                                provide=getattr(ctx, "interactions_hint", None))
    p = ctx.policy[NAME]
    limit = float(p["max_violation_share"])
    train, test = ctx.train_interactions, ctx.test_interactions
    users, n_events = users_with_future_training(train, test)
    n_test_users = len(np.unique(test.user_ids))
    share = len(users) / n_test_users if n_test_users else 0.0
    evidence = {"test_users": n_test_users, "users_with_future_training": len(users),
                "future_training_events": n_events, "examples": users[:10].tolist(),
                "training_events": len(train), "test_events": len(test)}
    shares = {"users": share}
    if p.get("global_cut") is not None:
        cut = float(p["global_cut"])
        after = int((train.timestamps >= cut).sum())
        evidence.update({"global_cut": cut, "training_events_after_cut": after})
        shares["events_after_cut"] = after / len(train) if len(train) else 0.0
    value = max(shares.values())
    rule = f"FAIL if share > {limit:g}"
    if value > limit:
        return CheckResult(NAME, FAIL, value, limit, rule, evidence,
                           "split by time: every training event of a user must precede that user's test "
                           "event (leave-last-out) or a global cut time")
    return CheckResult(NAME, PASS, value, limit, rule, evidence)
