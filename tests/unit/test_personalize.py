"""Lightweight personalisation on small generated data (the ML-100K measurement is
benchmarks/personalize_ml100k.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.data.ml100k_items import save_item_features
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.errors import ConfigError, DataError
from mmrank.metrics import ndcg_at_k
from mmrank.personalize import PreferenceProfiles, personalised_scores, tune_beta
from mmrank.personalize.attributes import attribute_spec
from mmrank.personalize.history import profiles_before
from mmrank.personalize.profiles import preference_weights
from mmrank.personalize.reweight import standardise_per_query

NAMES = ["Action", "SciFi", "Comedy", "Drama", "year"]
SPEC_GROUPS = {"action": ["Action", "SciFi"], "comedy": ["Comedy"], "drama": ["Drama"]}


def spec():
    return attribute_spec("meta", SPEC_GROUPS, NAMES)


def test_attributes_are_any_of_their_columns():
    s = spec()
    meta = np.array([[1, 0, 0, 0, 0.3], [0, 1, 1, 0, -1.0], [0, 0, 0, 0, 2.0]])
    assert s.matrix(meta).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ConfigError, match="unknown"):
        attribute_spec("meta", {"x": ["Western"]}, NAMES)
    with pytest.raises(DataError, match="columns"):
        s.matrix(np.zeros((2, 3)))


def test_weights_are_shrunk_log_lifts():
    p = np.array([0.5, 0.25, 0.25])
    action_fan = np.array([[1, 0, 0]] * 40)
    w = preference_weights([action_fan, np.zeros((0, 3)), action_fan[:2]], p, alpha=10)
    assert w[0, 0] > 0.5 and w[0, 1] < -1.0  # likes action, avoids comedy
    assert np.allclose(w[1], 0.0)  # no history: the population rate, no preference
    assert 0 < w[2, 0] < w[0, 0]  # two ratings: the same direction, shrunk


def generated_queries(n_queries=200, n=20, seed=0, preference_matters=True):
    """Queries whose labels favour the user's preferred attribute when ``preference_matters``."""
    rng = np.random.default_rng(seed)
    attrs = rng.integers(0, 2, size=(n_queries * n, 3)).astype(np.float32)
    liked = rng.integers(0, 3, size=n_queries)
    weights = np.full((n_queries, 3), -0.5)
    weights[np.arange(n_queries), liked] = 1.0
    base = rng.normal(size=n_queries * n)
    qi = np.repeat(np.arange(n_queries), n)
    utility = base + (1.5 * attrs[np.arange(len(qi)), liked[qi]] if preference_matters else 0)
    labels = (utility > np.quantile(utility, 0.8)).astype(float)
    scores = base + rng.normal(0, 0.5, size=len(base))  # a reranker that sees only the base part
    return labels, scores, np.arange(0, n_queries * n + 1, n), attrs, weights


def test_reweighting_helps_when_preferences_matter_and_switches_off_when_not():
    labels, scores, offsets, attrs, weights = generated_queries()
    beta, table = tune_beta(labels, scores, offsets, attrs, weights)
    assert beta > 0 and table[beta] > table[0.0] + 0.05
    plain = ndcg_at_k(labels, scores, offsets, 10).mean()
    assert ndcg_at_k(labels, personalised_scores(scores, offsets, attrs, weights, beta), offsets, 10).mean() > plain + 0.05
    labels, scores, offsets, attrs, weights = generated_queries(seed=1, preference_matters=False)
    beta, table = tune_beta(labels, scores, offsets, attrs, weights)
    assert beta <= 0.1 and table[beta] >= table[1.0]  # preferences carry no signal: (almost) off
    z = personalised_scores(scores, offsets, attrs, weights, 0.0)
    assert np.allclose(z, standardise_per_query(scores, offsets))  # beta 0 keeps the reranker's order


def test_profiles_before_a_cut_use_only_earlier_history(tmp_path):
    items = ItemFeatures(item_ids=["a", "b", "c"], features={"meta": np.array([[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], float)})
    inter = Interactions(user_ids=["u"] * 4 + ["v"] * 2, item_ids=["a", "a", "a", "b", "c", "c"],
                         timestamps=[1, 2, 3, 10, 1, 2], ratings=[5] * 6)
    prof = profiles_before(inter, items, spec(), {"u@early": ("u", 5), "u@late": ("u", 11), "v": ("v", 99)}, alpha=1.0)
    early, late = prof.weights_for(["u@early", "u@late"])
    assert early[1] < late[1]  # the comedy rated at t=10 counts only after the cut
    assert np.allclose(prof.weights_for(["nobody"]), 0)
    prof.beta = 0.4
    prof.save(tmp_path / "p.json")
    back = PreferenceProfiles.load(tmp_path / "p.json")
    assert back.beta == 0.4 and back.spec == prof.spec and np.allclose(back.weights_for(["v"]), prof.weights_for(["v"]), atol=1e-4)


def test_cli_fit_and_apply_reorder_by_preference(tmp_path):
    items = ItemFeatures(item_ids=["a", "b", "c", "d"], features={"meta": np.array(
        [[1, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [1, 1, 0, 0, 0]], dtype=np.float32)})
    save_item_features(items, tmp_path / "items", {"feature_names": {"meta": NAMES}})
    (tmp_path / "data.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                         + "".join(f"u1\ta\t5\t{t}\n" for t in range(1, 2)) + "u1\td\t4\t3\nu2\tb\t5\t1\nu2\tc\t3\t2\n")
    (tmp_path / "attrs.json").write_text(json.dumps({"modality": "meta", "attributes": SPEC_GROUPS}))
    runner = CliRunner()
    res = runner.invoke(app, ["personalize", "fit", "--items", str(tmp_path / "items"), "--interactions",
                              str(tmp_path / "data.inter"), "--out", str(tmp_path / "p.json"), "--alpha", "1",
                              "--attributes", str(tmp_path / "attrs.json")])
    assert res.exit_code == 0, res.output
    meta = {k: v.tolist() for k, v in zip(items.item_ids, items.features["meta"])}
    line = {"query_id": "u1@test", "candidates": [
        {"candidate_id": c, "score": s, "features": {"meta": meta[c]}} for c, s in (("b", 0.9), ("c", 0.8), ("a", 0.7))]}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n" + json.dumps({**line, "query_id": "stranger"}) + "\n")
    res = runner.invoke(app, ["personalize", "apply", "--profiles", str(tmp_path / "p.json"), "--beta", "2",
                              "--in", str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 0 and "2 queries (1 users with a profile), 1 reordered" in res.output, res.output
    fan, stranger = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert fan["candidates"][0]["candidate_id"] == "a"  # the action fan gets the action movie first
    assert [c["candidate_id"] for c in stranger["candidates"]] == ["b", "c", "a"]  # no profile: unchanged
    (tmp_path / "bad.jsonl").write_text('{"query_id": "u1", "candidates": [{"candidate_id": "a", "score": 1}]}\n')
    res = runner.invoke(app, ["personalize", "apply", "--profiles", str(tmp_path / "p.json"), "--in",
                              str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "bad.jsonl:1: candidates lack the 'meta' modality" in res.output


def test_cli_tune_stores_the_best_beta(tmp_path):
    labels, scores, offsets, attrs, weights = generated_queries(n_queries=60)
    groups = {"action": ["Action"], "comedy": ["Comedy"], "drama": ["Drama"]}
    s = attribute_spec("meta", groups, NAMES)
    profiles = PreferenceProfiles(s, 10.0, np.full(3, 0.5), 0.0, {f"u{q}": weights[q] for q in range(60)})
    profiles.save(tmp_path / "p.json")
    meta = np.zeros((len(labels), 5))
    meta[:, [0, 2, 3]] = attrs
    lines = []
    for q in range(60):
        a, b = offsets[q], offsets[q + 1]
        lines.append(json.dumps({"query_id": f"u{q}@valid", "candidates": [
            {"candidate_id": f"c{i}", "label": labels[i], "score": scores[i], "features": {"meta": meta[i].tolist()}}
            for i in range(a, b)]}))
    (tmp_path / "valid.jsonl").write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(app, ["personalize", "tune", "--profiles", str(tmp_path / "p.json"), "--in", str(tmp_path / "valid.jsonl")])
    assert res.exit_code == 0, res.output
    assert PreferenceProfiles.load(tmp_path / "p.json").beta > 0
