"""provenance: was the model trained (or validated) on the test data it is judged on?

A run directory records hashes of every split it saw (``mmrank.provenance``). The audit compares
the test set with the run's ``train``/``valid`` splits: any test query whose id, (query, candidate)
pair or content was in them, or half of whose candidate rows are exact copies of training rows,
means the model is judged on what it learnt — FAIL, naming counts and examples. When the
``--train`` given to the audit is not what the run trained on, every other leakage check compares
the test set with the wrong data: FAIL too, saying so.

A model fitted by the audit itself (a kind, fitted on ``train``/``valid``) or handed over fitted
in Python is checked against ``train``/``valid`` as given (its evidence says ``source``). A run
directory without provenance (written before it was recorded) cannot be checked: SKIP, and the
policy's required checks turn that into PAUSE_AND_FIX.
"""

from __future__ import annotations

from mmrank.audit.context import AuditContext
from mmrank.audit.result import FAIL, PASS, CheckResult
from mmrank.provenance import Provenance, SplitRecord, hashes_of, overlap_of, read_provenance

NAME = "provenance"


def declared_provenance(ctx: AuditContext) -> Provenance:
    """The training data as the audit was given it (model fitted on train/valid)."""
    parts = {"train": ctx.train, "valid": ctx.valid}
    return Provenance({k: SplitRecord("ranking", hashes_of(v)) for k, v in parts.items() if v is not None})


def check(ctx: AuditContext) -> CheckResult:
    """Measure the share of test queries whose id, (query, candidate) pairs or content were in
    the model's recorded train/valid splits (the run directory's provenance, else the audit's
    own ``train``/``valid``).

    Rule (fixed, no policy key: limit 0): FAIL when any test query was trained or validated on,
    or when the audit's ``train`` is not the run's recorded training data (``value`` 1.0: the
    other leakage checks would compare against the wrong data); PASS otherwise. SKIP when the
    run directory recorded no provenance (a required check for rerank audits, so PAUSE_AND_FIX).
    Never WARNs."""
    rule = "FAIL if any test query was in the run's train/valid data, or --train is not what the run trained on"
    if ctx.run_dir is not None:
        prov = read_provenance(ctx.run_dir)
        if prov is None:
            return CheckResult.skip(NAME, f"the run {ctx.run_dir} recorded no provenance (trained before mmrank "
                                    "recorded it)", provide="retrain the run with this mmrank version so it "
                                    "records what it was trained on")
        source = f"run {ctx.run_dir}"
    else:
        prov, source = declared_provenance(ctx), "the audit's train/valid (the model is taken as fitted on them)"
    overlap = overlap_of(prov, ctx.test)
    recorded_train = prov.splits.get("train")
    train_matches = recorded_train is None or recorded_train.same_rows_as(ctx.train)
    evidence = {"source": source, "test_overlap": overlap.to_dict(), "train_is_the_runs_training_data": train_matches,
                "recorded_splits": {k: v.sizes for k, v in prov.splits.items()}}
    share = overlap.affected / overlap.total if overlap.total else 0.0
    if overlap.trained_on:
        return CheckResult(NAME, FAIL, share, 0.0, rule, evidence,
                           f"the model was trained on its test data: {overlap.summary()} — judge it on data "
                           "it never saw")
    if not train_matches:
        return CheckResult(NAME, FAIL, 1.0, 0.0, rule, evidence,
                           f"--train is not the data the run was trained on (recorded train: "
                           f"{recorded_train.sizes}): the leakage checks would compare the test set with other "
                           "data — pass the run's own training file as --train")
    return CheckResult(NAME, PASS, share, 0.0, rule, evidence)
