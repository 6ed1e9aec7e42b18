"""held_out_leakage: a held-out (user, item) that the model also trained on.

Per test event, is the same (user, item) among *that user's training events*? A recommender that
saw the test item in the user's history can score it from memory (a scorer that ranks the user's
own history first reaches nDCG@10 1.0 on such a split, 0.04 honestly); a re-watch is legal data
but not a fair test of "what comes next". The training events must be the ones the run recorded
(``provenance.*``), never "every event except the held-out ones" — a split that put an earlier
copy of the test event into training looks legal in time order (``temporal_leakage`` cannot see
it). When the run recorded training events that the audited data does not hold, the audit is
looking at other data: FAIL as well.
"""

from __future__ import annotations

import numpy as np

from mmrank.audit.result import FAIL, PASS, CheckResult
from mmrank.provenance import hash_strings

NAME = "held_out_leakage"


def _pairs(events) -> np.ndarray:
    return hash_strings(f"{u}\t{i}" for u, i in zip(events.user_ids, events.item_ids))


def check(ctx) -> CheckResult:
    """Measure the share of held-out (user, item) test events that are also among the
    training events the model was recorded to have seen.

    Rule (fixed, no policy key: limit 0): FAIL when any held-out pair is in training, or when
    training events the run recorded are missing from the audited data (``value`` 1.0: the
    audit is looking at other data); PASS otherwise. SKIP when ``train_interactions`` or
    ``test_interactions`` is unknown (evidence says what to provide). Never WARNs."""
    train, test = ctx.train_interactions, ctx.test_interactions
    if train is None or test is None:
        return CheckResult.skip(NAME, "the training events the model really saw are unknown",
                                provide=getattr(ctx, "provenance_hint", None)
                                or "pass train_interactions/test_interactions (the events the model trained and is judged on)")
    limit = 0.0
    rule = "FAIL if any held-out (user, item) is among that user's training events, or recorded events are missing"
    hit = np.isin(_pairs(test), _pairs(train))
    missing = int(getattr(ctx, "recorded_events_missing", 0) or 0)
    share = float(hit.mean()) if len(test) else 0.0
    examples = [f"user {u} item {i}" for u, i in zip(test.user_ids[hit][:10], test.item_ids[hit][:10])]
    evidence = {"test_events": len(test), "training_events": len(train), "held_out_in_training": int(hit.sum()),
                "examples": examples, "recorded_training_events_missing_from_data": missing}
    if hit.any():
        return CheckResult(NAME, FAIL, share, limit, rule, evidence,
                           f"{int(hit.sum())} of {len(test)} held-out (user, item) pairs are also in that user's "
                           f"training events (e.g. {examples[0]}): drop repeated (user, item) events before "
                           "splitting, or hold out only items the user has not seen")
    if missing:
        return CheckResult(NAME, FAIL, 1.0, limit, rule, evidence,
                           f"{missing} training events the run recorded are not in this data: the audit would "
                           "judge the model on other data — audit it on the data it was trained on (--data)")
    return CheckResult(NAME, PASS, share, limit, rule, evidence)
