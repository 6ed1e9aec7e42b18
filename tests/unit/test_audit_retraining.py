"""Checks that retrain or re-score the model: permutation control, modality ablation, engines."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from known_answer.rankers import ResidualOnFirstStage, RidgeRanker
from known_answer.simulator import simulate
from mmrank.audit import FAIL, PASS, WARN, audit
from mmrank.audit.label_permutation_control import permute_within_queries
from mmrank.errors import ConfigError
from mmrank.models.baselines import LambdaMART

FAST = {"significance": {"bootstrap_resamples": 500, "permutation_resamples": 500}}


def run(sim, model, checks, **kw):
    return audit(model.fit(sim.train), None, train=sim.train, test=sim.test, policy=FAST, checks=checks, **kw)


def test_permutation_keeps_each_querys_labels():
    sim = simulate(0, n_train=20, n_test=5)
    p = permute_within_queries(sim.train, seed=1)
    assert not np.array_equal(p.labels, sim.train.labels)
    for i in range(sim.train.n_queries):
        a, b = sim.train.offsets[i], sim.train.offsets[i + 1]
        assert sorted(p.labels[a:b]) == sorted(sim.train.labels[a:b])


def test_permutation_control_passes_an_honest_model():
    sim = simulate(1, n_train=80, n_test=60)
    res = run(sim, RidgeRanker(), ["label_permutation_control"], n_jobs=1)["label_permutation_control"]
    assert res.status == PASS
    ev = res.evidence
    assert abs(ev["permuted_per_seed"]["mean"] - ev["chance"]) < 0.05
    assert ev["model"] > ev["chance"] + 0.2


def test_permutation_control_fails_when_the_first_stage_score_leaks_labels():
    sim = simulate(2, n_train=80, n_test=60)
    rng = np.random.default_rng(0)
    for rset in (sim.train, sim.test):  # a first stage that (wrongly) saw the judgements
        rset.baseline_scores = rset.labels + rng.normal(0, 0.3, rset.n_candidates)
    res = run(sim, ResidualOnFirstStage(alpha=1e4), ["label_permutation_control"], n_jobs=1)["label_permutation_control"]
    assert res.status == FAIL
    assert res.value >= 0.5 and res.evidence["permuted_lift_ci"]["low"] > 0


def test_engines_and_worker_counts_give_identical_results():
    sim = simulate(3, n_train=60, n_test=40)
    model = LambdaMART(n_estimators=20, num_leaves=7, num_threads=1)
    one = run(sim, model, ["label_permutation_control"], n_jobs=1)["label_permutation_control"]
    two = run(sim, model, ["label_permutation_control"], n_jobs=2)["label_permutation_control"]
    assert one.to_dict() == two.to_dict()
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (optional extra mmrank[ray]); joblib 1 vs 2 workers checked")
    on_ray = run(sim, model, ["label_permutation_control"], engine="ray", n_jobs=2)["label_permutation_control"]
    assert on_ray.to_dict() == one.to_dict()


def test_ray_engine_missing_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    sim = simulate(4, n_train=30, n_test=20)
    with pytest.raises(ConfigError, match="pip install"):
        run(sim, RidgeRanker(), ["label_permutation_control"], engine="ray")
    with pytest.raises(ConfigError, match="engine"):
        run(sim, RidgeRanker(), ["label_permutation_control"], engine="spark")


def test_modality_ablation_warns_on_a_dead_modality_and_passes_live_ones():
    live = run(simulate(5, n_train=150, n_test=100), RidgeRanker(), ["modality_ablation"], n_jobs=1)["modality_ablation"]
    assert live.status == PASS, live.evidence
    assert set(live.evidence["per_modality"]) == {"image", "meta", "text"}
    dead = run(simulate(5, ["dead_modality"], n_train=150, n_test=100), RidgeRanker(), ["modality_ablation"],
               n_jobs=1)["modality_ablation"]
    assert dead.status == WARN and dead.evidence["dead"] == ["image"]
    assert "image" in dead.advice
    image = dead.evidence["per_modality"]["image"]
    assert image["carries_signal"] is False and image["finding"].startswith("image: dead")
    assert dead.evidence["per_modality"]["text"]["carries_signal"] is True
    assert all("p_holm" in d for d in image["drop"].values()) and dead.evidence["correction"] == "holm"


def test_modality_ablation_can_retrain_without_each_modality():
    sim = simulate(6, ["dead_modality"], n_train=120, n_test=80)
    res = audit(RidgeRanker().fit(sim.train), None, train=sim.train, test=sim.test, n_jobs=2,
                policy={**FAST, "modality_ablation": {"retrain": True}}, checks=["modality_ablation"])["modality_ablation"]
    drops = res.evidence["per_modality"]
    assert set(drops["text"]["drop"]) == {"train_mean", "shuffled", "retrained_without"}
    assert drops["text"]["drop"]["retrained_without"]["mean"] > 0.05
    assert abs(drops["image"]["drop"]["retrained_without"]["mean"]) < 0.02
    assert res.status == WARN


def test_models_can_be_named_by_kind():
    """audit("lambdamart", "heuristic", ...) builds, fits and retrains registry models itself."""
    sim = simulate(7, n_train=60, n_test=40)
    report = audit("lambdamart", "heuristic", train=sim.train, test=sim.test, policy=FAST, n_jobs=1,
                   checks=["label_permutation_control", "significance"])
    assert report.meta["model"] == "LambdaMART" and report.meta["baseline"] == "HeuristicBaseline"
    assert report["label_permutation_control"].status == PASS  # the factory retrained it
    assert report["significance"].status == PASS
    with pytest.raises(ConfigError, match="neither a run directory nor a model kind"):
        audit("no-such-model", None, train=sim.train, test=sim.test)


def test_each_permuted_retrain_gets_its_own_training_seed_and_the_validation_rows():
    from mmrank.audit.label_permutation_control import retrain_bound, seeded

    model, options, found = seeded(LambdaMART(seed=0), {"settings": {"seed": 0, "max_epochs": 2}}, 1234)
    assert found and model.get_params()["seed"] == 1234 and options["settings"] == {"seed": 1234, "max_epochs": 2}
    assert not seeded(RidgeRanker(), {}, 5)[2]
    sim = simulate(4, n_train=60, n_test=40)
    valid = simulate(5, n_train=5, n_test=20).test
    res = audit(LambdaMART(n_estimators=20, num_leaves=7, num_threads=1).fit(sim.train, valid), None,
                train=sim.train, valid=valid, test=sim.test, policy=FAST, checks=["label_permutation_control"],
                n_jobs=1)["label_permutation_control"]
    ev = res.evidence
    assert ev["training_seed_per_retrain"] and ev["validation"] and len(set(np.round(ev["per_retrain_lift"], 12))) == 3
    # the spread between retrains decides as well as the query bootstrap: lifts that disagree in sign
    assert retrain_bound(np.array([0.05, -0.01, 0.02])) < 0 < retrain_bound(np.array([0.05, 0.051, 0.049]))


def test_fits_and_retrains_share_one_pool_and_match_an_audit_of_prefitted_models():
    """Models given Unfitted are fitted inside the audit's one job pool, beside the permuted
    retrains and the probes: on 2 workers the checks equal those of an audit handed the same
    models fitted beforehand, and the report says what each job cost."""
    from functools import partial

    from mmrank.audit.rankers import Unfitted

    sim = simulate(5, n_train=60, n_test=40)
    model_f = partial(LambdaMART, n_estimators=20, num_leaves=7, num_threads=1)
    base_f = partial(LambdaMART, n_estimators=5, num_leaves=3, num_threads=1)
    checks = ["feature_label_leakage", "label_permutation_control", "modality_ablation", "significance"]
    direct = audit(model_f().fit(sim.train), base_f().fit(sim.train), train=sim.train, test=sim.test, make_model=model_f,
                   policy=FAST, n_jobs=1, checks=checks)
    pooled = audit(Unfitted(model_f), Unfitted(base_f), train=sim.train, test=sim.test, policy=FAST, n_jobs=2,
                   checks=checks)
    assert [c.to_dict() for c in pooled.checks] == [c.to_dict() for c in direct.checks]
    assert set(pooled.meta["fit_seconds"]) == {"model", "baseline"}
    assert {"label_permutation_control", "feature_label_leakage", "modality_ablation"} <= set(pooled.meta["job_seconds"])
    assert pooled.meta["model"] == "LambdaMART" and pooled.meta["job_pool_seconds"] > 0
