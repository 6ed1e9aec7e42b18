"""Verdict rules, the policy file and the audit.json round trip."""

from __future__ import annotations

import pytest

from mmrank.audit import FAIL, GO, NO_GO, PASS, PAUSE_AND_FIX, SKIP, WARN, AuditReport, CheckResult, load_policy
from mmrank.audit.verdict import decide
from mmrank.errors import ConfigError


def checks(**status):
    names = ["provenance", "split_overlap", "near_duplicates", "feature_label_leakage", "label_permutation_control",
             "modality_ablation", "baseline_agreement", "significance"]
    return [CheckResult(n, status.get(n, PASS), 0.0, 0.0, "rule", advice=f"fix {n}") for n in names]


def test_all_pass_is_go_and_skips_do_not_count():
    policy = load_policy()
    v = decide(checks() + [CheckResult.skip("attention_share", "no attention")], policy)
    assert v.decision == GO and v.exit_code == 0


@pytest.mark.parametrize("name", ["split_overlap", "feature_label_leakage"])
def test_any_leakage_fail_is_no_go(name):
    v = decide(checks(**{name: FAIL}), load_policy())
    assert v.decision == NO_GO and v.exit_code == 4 and name in v.reasons[0]


def test_gain_ci_below_zero_is_no_go():
    assert decide(checks(significance=FAIL), load_policy()).decision == NO_GO


@pytest.mark.parametrize("status", [{"modality_ablation": WARN}, {"baseline_agreement": WARN},
                                    {"significance": WARN}, {"split_overlap": WARN}])
def test_significant_gain_with_integrity_warnings_pauses(status):
    v = decide(checks(**status), load_policy())
    assert v.decision == PAUSE_AND_FIX and v.exit_code == 3
    assert any(next(iter(status)) in r for r in v.reasons)


def test_no_baseline_comparison_cannot_be_go():
    v = decide([c for c in checks() if c.name != "significance"], load_policy())
    assert v.decision == PAUSE_AND_FIX


@pytest.mark.parametrize("name", ["label_permutation_control", "provenance"])
def test_a_required_check_that_skips_pauses_and_says_what_to_provide(name):
    results = [c if c.name != name else CheckResult.skip(name, "why", provide="give X") for c in checks()]
    v = decide(results, load_policy())
    assert v.decision == PAUSE_AND_FIX and f"not checked: {name} — give X" in v.reasons
    assert decide([c for c in checks() if c.name != name], load_policy()).decision == PAUSE_AND_FIX
    # not required for sequential audits; their own required list applies there
    seq = [CheckResult(n, PASS) for n in ("held_out_leakage", "temporal_leakage", "significance")]
    assert decide(seq, load_policy(), task="sequential").decision == GO
    assert decide(seq[1:], load_policy(), task="sequential").reasons == [
        "not checked: held_out_leakage — it was not run (run every check, or drop it from verdict.required.sequential)"]


def test_leakage_checks_are_a_policy_choice():
    policy = load_policy({"verdict": {"leakage_checks": ["split_overlap"]}})
    assert decide(checks(feature_label_leakage=FAIL), policy).decision == PAUSE_AND_FIX


def test_policy_overrides_merge_and_typos_are_refused(tmp_path):
    p = load_policy({"significance": {"alpha": 0.01}})
    assert p["significance"]["alpha"] == 0.01 and p["significance"]["min_gain"] == 0.0
    f = tmp_path / "policy.yaml"
    f.write_text("baseline_agreement:\n  warn_spearman: 0.8\n")
    assert load_policy(f)["baseline_agreement"]["warn_spearman"] == 0.8
    with pytest.raises(ConfigError, match="alphaa"):
        load_policy({"significance": {"alphaa": 0.01}})
    f.write_text("- not a mapping\n")
    with pytest.raises(ConfigError):
        load_policy(f)


def test_report_round_trips_through_json(tmp_path):
    report = AuditReport(NO_GO, ["split_overlap FAIL"], checks(split_overlap=FAIL) + [CheckResult.skip("x", "why")],
                         load_policy(), {"metrics": {"model": {"mean": 0.5}}}, {"seconds": {"a": 1.0}})
    report.save(tmp_path / "audit.json")
    back = AuditReport.load(tmp_path / "audit.json")
    assert back.to_dict() == report.to_dict()
    assert back["split_overlap"].status == FAIL and back["x"].status == SKIP
    assert back.exit_code == 4


def test_check_result_refuses_unknown_status_and_prints_value_beside_threshold():
    with pytest.raises(ValueError):
        CheckResult("x", "MAYBE")
    line = CheckResult("near_duplicates", WARN, 0.0123, 0.0, "WARN if share > 0").line()
    assert "0.0123" in line and "WARN if share > 0" in line


def test_a_partial_policy_dict_naming_verdict_keeps_every_other_section():
    import numpy as np

    from mmrank.audit import audit
    from mmrank.data.model import RankingSet
    from mmrank.models.baselines import HeuristicBaseline

    rng = np.random.default_rng(0)
    rset = RankingSet(query_ids=[f"q{i}" for i in range(12)], offsets=np.arange(0, 61, 5), candidate_ids=[str(i) for i in range(60)],
                      labels=rng.integers(0, 3, 60), baseline_scores=rng.normal(size=60))
    report = audit(HeuristicBaseline(), None, train=rset, test=rset, checks=["sample_size"],
                   policy={"verdict": load_policy()["verdict"]})
    assert "significance" in report.policy and report.policy["metric"] == "ndcg@10"
