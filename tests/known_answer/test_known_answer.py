"""Known-answer suite: every planted fault is flagged by the check made for it (100%), and the
clean simulator gives no FAIL over 20 seeds and at most 5% WARN. Data from the SIMULATOR only;
nothing here measures model quality."""

from __future__ import annotations

import pytest

from known_answer.simulator import FAULTS, simulate
from mmrank.audit import FAIL, GO, NO_GO, PAUSE_AND_FIX, WARN, audit
from mmrank.models.baselines import HeuristicBaseline, LambdaMART

FAST = {"significance": {"bootstrap_resamples": 2000, "permutation_resamples": 2000}}
EXPECTED = {  # fault -> (check that must flag it, its status, the verdict)
    "query_leak": ("split_overlap", FAIL, NO_GO),
    "label_feature": ("feature_label_leakage", FAIL, NO_GO),
    "dead_modality": ("modality_ablation", WARN, PAUSE_AND_FIX),
    "sampled_eval": ("sampled_metric", WARN, PAUSE_AND_FIX),
    "temporal_leak": ("temporal_leakage", FAIL, NO_GO),
}
SEEDS = range(20)


def audit_simulation(seed: int, faults=()):
    sim = simulate(seed, faults)
    model = LambdaMART(n_estimators=60, num_leaves=7, learning_rate=0.1, num_threads=1).fit(sim.train)
    return audit(model, HeuristicBaseline().fit(sim.train), train=sim.train, test=sim.test,
                 train_interactions=sim.train_events, test_interactions=sim.test_events,
                 policy={**FAST, **sim.policy}, n_jobs=1)


def test_every_fault_has_an_expected_check():
    assert set(EXPECTED) == set(FAULTS)


@pytest.mark.parametrize("fault", FAULTS)
def test_planted_fault_is_flagged_by_its_check(fault):
    check, status, verdict = EXPECTED[fault]
    for seed in range(3):
        report = audit_simulation(seed, (fault,))
        assert report[check].status == status, (fault, seed, report[check].line())
        assert report.verdict == verdict, (fault, seed, report.reasons)


def test_clean_simulation_over_20_seeds_has_no_fail_and_at_most_5_percent_warn():
    warns = fails = total = 0
    for seed in SEEDS:
        report = audit_simulation(seed)
        applicable = [c for c in report.checks if c.status != "SKIP"]
        total += len(applicable)
        fails += sum(c.status == FAIL for c in applicable)
        warns += sum(c.status == WARN for c in applicable)
        assert report.verdict in (GO, PAUSE_AND_FIX)
    assert fails == 0
    assert warns <= 0.05 * total
