"""The recommendation audit on generated data: each check can pass and can flag its fault.

Data: users in 4 groups of 10 items read consecutive items of their group's cycle (next item =
current + 1), so a sequential model can be near perfect and popularity is at chance. Item
features: ``text`` = one-hot group, ``image`` = one-hot position in the cycle.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmrank.audit import expert_usage, item_modality_ablation
from mmrank.audit.policy import load_policy
from mmrank.audit.recommender_context import RecommenderAuditContext
from mmrank.audit.recommender_runner import audit_recommender, run_events
from mmrank.cli import app
from mmrank.config import config_from_dict
from mmrank.data.ml100k_items import save_item_features
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.sequential.data import make_split
from mmrank.data.splits import leave_one_out
from mmrank.errors import ConfigError
from mmrank.provenance import write_provenance
from mmrank.sequential.moe import SASRecMoERanker
from mmrank.sequential.run import train_sequential

GROUPS, PER_GROUP, READS = 4, 10, 9


def cycle_events(n_users: int = 160, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(n_users):
        g, start = u % GROUPS, int(rng.integers(0, PER_GROUP))
        for t in range(READS):
            users.append(f"u{u}")
            items.append(f"{g * PER_GROUP + (start + t) % PER_GROUP + 1}")
            times.append(1000 * u + t)
    return Interactions(users, items, times)


def write_dataset(folder, events: Interactions) -> None:
    folder.mkdir(parents=True)
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"{u}\t{i}\t1\t{int(t)}" for u, i, t in zip(events.user_ids, events.item_ids, events.timestamps)]
    (folder / f"{folder.name}.inter").write_text("\n".join(rows) + "\n")


def item_features(ids) -> dict[str, np.ndarray]:
    idx = np.array([int(i) - 1 for i in ids])
    text = np.eye(GROUPS, dtype=np.float32)[idx // PER_GROUP]
    image = np.eye(PER_GROUP, dtype=np.float32)[idx % PER_GROUP]
    return {"text": text, "image": image}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An honest MoE run and an ID-only SASRec run on the same generated data."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("recaudit")
    write_dataset(root / "cycles", cycle_events())
    ids = [str(i) for i in range(1, GROUPS * PER_GROUP + 1)]
    save_item_features(ItemFeatures(ids, item_features(ids)), root / "features", {})
    params = {"hidden": 16, "layers": 1, "heads": 1, "max_len": READS, "dropout": 0.0}
    base = {"task": "sequential", "data": {"path": str(root / "cycles")},
            "train": {"epochs": 12, "batch_size": 32, "lr": 0.01, "patience": 12, "threads": 1},
            "evaluate": {"sampled_negatives": 20}}
    out = {}
    for name, kind, extra in (("sasrec", "sasrec", {}), ("moe", "sasrec_moe", {"n_experts": 2})):
        cfg = {**base, "model": {"kind": kind, "params": {**params, **extra}}}
        if kind == "sasrec_moe":
            cfg["data"] = {**cfg["data"], "item_features": str(root / "features")}
        train_sequential(config_from_dict(cfg), root / name)
        out[name] = root / name
    out["root"] = root
    return out


def test_honest_runs_pass_leakage_and_beat_popularity(runs):
    report = audit_recommender(runs["moe"], "popularity")
    by = {c.name: c for c in report.checks}
    assert by["temporal_leakage"].status == "PASS"
    assert by["temporal_leakage"].evidence["test_users"] == 160
    assert by["held_out_leakage"].status == "PASS" and by["held_out_leakage"].evidence["test_events"] == 160
    assert report.meta["provenance"] is True and report.verdict in ("GO", "PAUSE_AND_FIX")
    sig = by["significance"]
    assert sig.status == "PASS", sig.evidence
    assert sig.evidence["model_mean"] > 0.5 > sig.evidence["baseline_mean"]
    # The expert check reads the model's real router: its status follows its value.
    eu = by["expert_usage"]
    assert eu.status == ("WARN" if eu.value > 0.6 else "PASS")
    assert set(eu.evidence["mean_router_probability"]) == {"image", "text"}
    abl = by["modality_ablation"]
    assert set(abl.evidence["per_modality"]) == {"image", "text"} and abl.evidence["all_content_drop"] is not None
    assert report.meta["users"] == 160 and report.meta["task"] == "sequential"


def test_id_only_run_skips_content_checks(runs):
    report = audit_recommender(runs["sasrec"], runs["moe"])
    by = {c.name: c for c in report.checks}
    assert by["modality_ablation"].status == by["expert_usage"].status == "SKIP"
    assert by["significance"].evidence["queries"] == 160


def test_a_run_that_held_out_early_events_is_no_go(runs, tmp_path):
    """Plant the fault: the run's recorded test event is each user's *first* event, so it trained
    on that user's later events. The audit reads what the run recorded and says NO_GO (exit 4)."""
    import shutil

    leaky = tmp_path / "leaky"
    shutil.copytree(runs["moe"], leaky)
    events = cycle_events()
    first = np.r_[True, events.user_ids[1:] != events.user_ids[:-1]]  # rows are in (user, time) order
    write_provenance(leaky, {"train": events.take(np.flatnonzero(~first)), "test": events.take(np.flatnonzero(first))})
    train_events, test_events, missing = run_events(leaky, events)
    assert len(train_events) + len(test_events) == len(events) and missing == 0
    report = audit_recommender(leaky, "popularity", checks=["held_out_leakage", "temporal_leakage", "significance"])
    assert report["temporal_leakage"].status == "FAIL"
    assert report["temporal_leakage"].evidence["users_with_future_training"] == 160
    assert report.verdict == "NO_GO"
    result = CliRunner().invoke(app, ["audit", "--model", str(leaky), "--baseline", "popularity",
                                      "--out", str(tmp_path / "audit")])
    assert result.exit_code == 4, result.output
    assert (tmp_path / "audit" / "report.html").is_file()


def test_a_run_without_provenance_cannot_be_go(runs, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["moe"], old)
    for name in ("provenance.json", "provenance.safetensors"):
        (old / name).unlink(missing_ok=True)
    report = audit_recommender(old, "popularity", checks=["held_out_leakage", "temporal_leakage", "significance"])
    assert report["held_out_leakage"].status == report["temporal_leakage"].status == "SKIP"
    assert report.verdict == "PAUSE_AND_FIX"
    assert any(r.startswith("not checked: held_out_leakage — retrain the run") for r in report.reasons)


def test_baseline_from_another_split_is_refused(runs, tmp_path):
    other = tmp_path / "other"
    write_dataset(other, cycle_events(n_users=40, seed=1))
    cfg = config_from_dict({"task": "sequential", "data": {"path": str(other)}, "model": {"kind": "popularity"}})
    train_sequential(cfg, tmp_path / "pop_other")
    with pytest.raises(ConfigError, match="different splits"):
        audit_recommender(runs["moe"], tmp_path / "pop_other")


def test_a_cold_start_run_is_audited_on_its_own_split(runs, tmp_path):
    """The audit re-splits the data as the run's config says (cold start here), so it audits the
    split the run was trained and evaluated on: same fingerprint, so the run's recorded metrics."""
    cfg = config_from_dict({"task": "sequential", "data": {"path": str(runs["root"] / "cycles"),
                                                           "cold_start": {"fraction": 0.3}},
                            "model": {"kind": "popularity"}})
    train_sequential(cfg, tmp_path / "pop_cold")
    report = audit_recommender(tmp_path / "pop_cold", None, checks=["held_out_leakage"])
    assert report.meta["split"]["name"] == "cold_start_items"
    assert report.meta["model_metrics"].startswith("read from the run's predictions.parquet")
    assert report["held_out_leakage"].status == "PASS"


def test_cli_without_files_for_a_reranker_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mmrank", "audit", "--model", "lambdamart", "--baseline",
                           "heuristic", "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "--train and --test are required" in proc.stderr


# -- the checks on models whose dependence on each modality is known --------------------------------
class ContentRanker:
    """A real content recommender: score = <mean text of the history, text_i> (group match) plus,
    when ``uses_image``, <one-hot of the next cycle position, image_i>. ``set_ablation`` treats a
    modality as missing (zero rows), as the MoE does."""

    def __init__(self, split, uses_image: bool) -> None:
        self.split, self.uses_image = split, uses_image
        ids = list(split.items.ids)
        feats = item_features(ids)
        self.text = np.vstack([np.zeros((1, GROUPS)), feats["text"]])
        self.image = np.vstack([np.zeros((1, PER_GROUP)), feats["image"]])
        self.modalities, self.off = ["image", "text"], set()

    def set_ablation(self, modalities) -> None:
        self.off = set(modalities)

    def score_users(self, users, histories):
        text = self.text * ("text" not in self.off)
        image = self.image * ("image" not in self.off)
        out = np.zeros((len(users), len(self.text)))
        for r, u in enumerate(users.tolist()):
            seq = histories.of(int(u))
            out[r] = text @ text[seq].mean(0)
            if self.uses_image:
                nxt = np.roll(self.image[seq[-1]], 1)
                out[r] += image @ nxt
        out[:, 0] = -np.inf
        return torch.from_numpy(out)


def cycle_split():
    events = cycle_events()
    loo = leave_one_out(events)
    return make_split(events, loo.parts["train"], loo.parts["valid"], loo.parts["test"])


def context(model, split) -> RecommenderAuditContext:
    policy = load_policy({"significance": {"bootstrap_resamples": 2000}})
    return RecommenderAuditContext(model=model, baseline=None, split=split, baseline_split=None,
                                   policy=policy, sampled_negatives=0)


def test_ablation_flags_the_modality_a_model_ignores():
    split = cycle_split()
    result = item_modality_ablation.check(context(ContentRanker(split, uses_image=False), split))
    assert result.status == "WARN" and result.evidence["dead"] == ["image"]
    assert result.evidence["per_modality"]["image"]["drop"]["mean"] == 0.0
    assert result.evidence["per_modality"]["text"]["drop"]["low"] > 0.05


def test_ablation_passes_when_every_modality_matters():
    split = cycle_split()
    result = item_modality_ablation.check(context(ContentRanker(split, uses_image=True), split))
    assert result.status == "PASS", result.evidence
    assert result.value >= 0.005


def test_expert_usage_warns_on_a_collapsed_router_only():
    split = cycle_split()
    ranker = SASRecMoERanker(hidden=8, layers=1, heads=1, max_len=READS, n_experts=3)
    ranker.set_item_features(*_aligned(split))
    ranker.build(split)
    router = ranker.net_.moe.towers["text"].router
    with torch.no_grad():
        for tower in ranker.net_.moe.towers.values():
            tower.router.weight.zero_()
            tower.router.bias.zero_()
    balanced = expert_usage.check(context(ranker, split))
    assert balanced.status == "PASS" and abs(balanced.value - 1 / 3) < 1e-6
    with torch.no_grad():
        router.bias.copy_(torch.tensor([8.0, 0.0, 0.0]))
    collapsed = expert_usage.check(context(ranker, split))
    assert collapsed.status == "WARN" and collapsed.evidence["collapsed"] == ["text"]
    assert collapsed.value > 0.99 and collapsed.evidence["top1_share"]["text"][0] == 1.0


def _aligned(split):
    feats = item_features(list(split.items.ids))
    full = {m: np.vstack([np.zeros((1, v.shape[1]), np.float32), v]) for m, v in feats.items()}
    mask = np.ones(split.n_items + 1, dtype=bool)
    mask[0] = False
    return full, {m: mask for m in full}


def test_sampled_metric_with_full_ranking_headline_warns_on_a_flip_only():
    from types import SimpleNamespace

    from mmrank.audit import sampled_metric

    def ctx(model_sampled, headline):
        values = {"model": {"full": np.full(50, 0.10), "sampled": np.full(50, model_sampled)},
                  "baseline": {"full": np.full(50, 0.12), "sampled": np.full(50, 0.45)}}
        return SimpleNamespace(policy=load_policy(), sampled_vs_full=values, headline=headline,
                               metric="ndcg@10", extras={})

    inflated = sampled_metric.check(ctx(0.40, "full"))         # 4x inflated, same order
    assert inflated.status == "PASS" and inflated.evidence["ordering_flips"] is False
    flipped = sampled_metric.check(ctx(0.50, "full"))          # sampled says the model wins
    assert flipped.status == "WARN" and flipped.evidence["ordering_flips"] is True
    assert sampled_metric.check(ctx(0.40, "sampled")).status == "WARN"  # a sampled headline: the gap counts
    assert inflated.threshold is None and inflated.value > 2  # the gap is shown, not judged


def test_audited_on_other_data_than_the_run_recorded_is_a_fail(runs, tmp_path):
    import shutil

    other = tmp_path / "other_data"
    shutil.copytree(runs["moe"], other)
    events = cycle_events()
    extra = Interactions(["u0"], ["999"], [5.0])  # an event the run trained on that this data lacks
    both = Interactions(np.concatenate([events.user_ids, extra.user_ids]), np.concatenate([events.item_ids, extra.item_ids]),
              np.concatenate([events.timestamps, extra.timestamps]))
    last = np.r_[events.user_ids[1:] != events.user_ids[:-1], True]
    write_provenance(other, {"train": both.take(np.r_[np.flatnonzero(~last), len(events)]),
                             "test": events.take(np.flatnonzero(last))})
    report = audit_recommender(other, "popularity", checks=["held_out_leakage"])
    held = report["held_out_leakage"]
    assert held.status == "FAIL" and held.evidence["recorded_training_events_missing_from_data"] == 1
    assert "other data" in held.advice
