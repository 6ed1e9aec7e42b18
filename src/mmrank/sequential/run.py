"""Train and evaluate sequential recommenders into run directories.

``train_sequential(config, out)``: read the RecBole dataset, split leave-one-out in time (last
event -> test, second last -> valid), build dense ids from the training part plus the item
catalogue, train (joint or staged), and write the run directory:
``config.yaml``, ``model.safetensors`` + ``model.json``, ``metrics.json`` (full ranking, and
sampled metrics marked ``sampled_``), ``predictions.parquet`` (per-user test/valid metrics, for
paired significance tests), ``fingerprint.json`` (data + split hashes, git sha, versions, seed),
``logs/`` (per-epoch CSV).

``evaluate_sequential(run_dir)``: reload the run and recompute its metrics from the data.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mmrank.config import dump_config
from mmrank.data.io_recbole import read_recbole
from mmrank.data.ml100k_items import load_item_features
from mmrank.data.model import Interactions, ItemFeatures
from mmrank.sequential.data import SequenceSplit, make_split
from mmrank.data.splits import leave_one_out
from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.errors import ConfigError, DataError
from mmrank.sequential.moe import SASRecMoERanker
from mmrank.sequential.sasrec import SASRecRanker
from mmrank.sequential.baselines import MostRecentRanker, PopularityRanker
from mmrank.runs import git_sha, package_versions
from mmrank.sequential.config import SequentialConfig
from mmrank.sequential.module import evaluate_stage, fit_net, mean_metrics

RANKERS = {c.kind: c for c in (SASRecRanker, SASRecMoERanker, PopularityRanker, MostRecentRanker)}


@dataclass
class SequenceData:
    """Everything a sequential run reads: the events, the split, the catalogue (titles) and the
    LOO split's fingerprint."""

    split: SequenceSplit
    catalogue: ItemFeatures | None
    loo_fingerprint: dict
    data_fingerprint: str
    inter_path: str
    interactions: Interactions


def load_sequence_data(path: str | Path) -> SequenceData:
    """RecBole folder -> leave-one-out ``SequenceSplit`` (catalogue = the ``.item`` file's items)."""
    interactions, catalogue, report = read_recbole(path, strict=False)
    if report.problems:
        first = report.problems[0].format()
        raise DataError(f"{len(report.problems)} bad record(s) in the dataset, first: {first}",
                        path=report.path, hint="run `mmrank data validate` and fix or drop them")
    loo = leave_one_out(interactions)
    split = make_split(interactions, loo.parts["train"], loo.parts["valid"], loo.parts["test"],
                       catalogue=None if catalogue is None else catalogue.item_ids, source=report.path)
    return SequenceData(split, catalogue, loo.fingerprint, interactions.fingerprint(), report.path, interactions)


def aligned_item_features(folder: str | Path, split: SequenceSplit, modalities: list[str] | None
                          ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Item modality matrices ``(n_items+1, d)`` in dense-id order (row 0 = padding, masked).

    An item of the split without a feature row gets a zero, masked row (content tower skips it)."""
    items, _ = load_item_features(folder)
    names = sorted(items.features) if modalities is None else list(modalities)
    missing = set(names) - set(items.features)
    if missing:
        raise ConfigError(f"data.modalities: {sorted(missing)} not in {folder} — "
                          f"available: {sorted(items.features)}")
    row = items.row_of()
    rows = np.array([row.get(str(i), -1) for i in split.items.ids])
    feats, masks = {}, {}
    for m in names:
        mat = np.zeros((split.n_items + 1, items.features[m].shape[1]), dtype=np.float32)
        mask = np.zeros(split.n_items + 1, dtype=bool)
        have = rows >= 0
        mat[1:][have] = items.features[m][rows[have]]
        mask[1:][have] = items.masks[m][rows[have]]
        feats[m], masks[m] = mat, mask
    return feats, masks


def make_ranker(cfg: SequentialConfig):
    """The configured ranker, parameters checked (before any data is read)."""
    try:
        ranker = RANKERS[cfg.model.kind](**cfg.model.params)
    except TypeError as e:
        raise ConfigError(f"model.params: {e} — see `SequentialModel` in docs/sequential.md") from None
    if cfg.model.kind == "sasrec_moe" and not cfg.data.item_features:
        raise ConfigError("data.item_features: required by sasrec_moe — build the folder with "
                          "`mmrank data features --dataset ml100k --data-dir DIR --out OUT`")
    return ranker


def build_ranker(cfg: SequentialConfig, data: SequenceData, ranker=None):
    """``make_ranker`` plus, for sasrec_moe, the item features aligned with the split's dense ids."""
    ranker = ranker or make_ranker(cfg)
    if cfg.model.kind == "sasrec_moe":
        ranker.set_item_features(*aligned_item_features(cfg.data.item_features, data.split, cfg.data.modalities))
    return ranker


def _train_options(cfg: SequentialConfig, log_dir: Path | None) -> dict:
    t = cfg.train
    return dict(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                patience=t.patience, seed=t.seed, crop=t.crop, target_ndcg=t.target_ndcg,
                stop_at_target=t.stop_at_target, progress=t.progress,
                log_dir=None if log_dir is None else str(log_dir))


def _is_content(name: str) -> bool:
    return name.startswith("moe.")


def _is_gate_or_content(name: str) -> bool:
    return name.startswith(("moe.", "id_gate.", "score_gate."))


def fit_staged(ranker: SASRecMoERanker, split: SequenceSplit, options: dict, stage_epochs: int) -> list[dict]:
    """The seeds' schedule: pretrain SASRec (IDs only) -> pretrain the content tower (transformer
    frozen, content scores) -> joint (gates + content, transformer frozen) -> end to end."""
    net = ranker.net
    started = time.perf_counter()
    stages = [
        ("pretrain_sasrec", "id", "id", lambda n: not _is_gate_or_content(n), 1.0),
        ("pretrain_content", "id", "content", _is_content, 1.0),
        ("joint", "fused", "fused", _is_gate_or_content, 1.0),
        ("end_to_end", "fused", "fused", None, 0.3),
    ]
    history: list[dict] = []
    for name, input_mode, score_mode, trainable, lr_scale in stages:
        net.input_mode, net.score_mode = input_mode, score_mode
        opts = dict(options, epochs=min(stage_epochs, options["epochs"]), lr=options["lr"] * lr_scale)
        rows = fit_net(ranker, split, trainable=trainable, stage_name=name, epoch_offset=len(history),
                       started=started, **opts)
        history += rows
    net.input_mode = net.score_mode = "fused"
    return history


def _fingerprint(cfg: SequentialConfig, data: SequenceData) -> dict:
    return {"data": {"path": data.inter_path, "interactions": data.data_fingerprint},
            "split": {"method": "leave_one_out", **data.loo_fingerprint},
            "vocab": {"items": data.split.items.fingerprint(), "users": data.split.users.fingerprint()},
            "git_sha": git_sha(), "seed": cfg.train.seed, "versions": package_versions()}


def evaluate_all(ranker, split: SequenceSplit, cfg: SequentialConfig) -> tuple[dict, list[dict]]:
    """Mean metrics per stage (``test`` / ``valid``; sampled ones prefixed ``sampled_``) and the
    per-user rows for ``predictions.parquet``."""
    metrics: dict = {}
    rows: list[dict] = []
    for stage in ("valid", "test"):
        t0 = time.perf_counter()
        per_user = evaluate_stage(ranker, split, stage, cfg.evaluate.ks, chunk_size=cfg.evaluate.chunk_size,
                                  sampled_negatives=cfg.evaluate.sampled_negatives, seed=cfg.train.seed)
        seconds = time.perf_counter() - t0
        metrics[stage] = {k: round(v, 6) for k, v in mean_metrics(per_user).items()}
        metrics[stage]["users"] = int(len(per_user["users"]))
        metrics[stage]["eval_seconds"] = round(seconds, 3)
        targets = split.target_for(stage)
        for j, u in enumerate(per_user["users"]):
            rows.append({"user_id": str(split.users.ids[u]), "stage": stage,
                         "target_item": str(split.items.ids[targets[u] - 1]),
                         **{k: float(v[j]) for k, v in per_user.items() if k != "users"}})
    metrics["protocol"] = ("leave-one-out in time; full ranking over all catalogue items with each "
                           "user's seen items masked; sampled_* = target among "
                           f"{cfg.evaluate.sampled_negatives} random unseen items (SAMPLED, not full)")
    return metrics, rows


def _write_predictions(path: Path, rows: list[dict]) -> None:
    import io

    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def train_sequential(config: SequentialConfig, out: str | Path, resume: bool = False) -> dict:
    """Train ``config`` into the run directory ``out``; returns the metrics written to
    ``metrics.json``. With ``resume`` and a model already in ``out``, training restarts from its
    weights (the optimiser state is not kept: no pickled checkpoints)."""
    out = Path(out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    if (out / "model.json").exists() and not resume:
        raise ConfigError(f"{out}: already holds a run — pass --resume to continue it or choose another --out")
    started = time.perf_counter()
    ranker = make_ranker(config)
    data = load_sequence_data(config.data.path)
    ranker = build_ranker(config, data, ranker)
    atomic_write_text(out / "config.yaml", dump_config(config))
    atomic_write_text(out / "fingerprint.json", json.dumps(_fingerprint(config, data), indent=1))
    options = _train_options(config, out / "logs")
    if config.model.kind in ("popularity", "most_recent"):
        ranker.fit(data.split)
    else:
        ranker.build(data.split)
        if resume and (out / "model.json").exists():
            ranker.net.load_state_dict(type(ranker).load(out).net.state_dict())
        if config.train.schedule == "staged":
            if config.model.kind != "sasrec_moe":
                raise ConfigError("train.schedule: staged needs model.kind sasrec_moe — use joint for sasrec")
            ranker.history = fit_staged(ranker, data.split, options, config.train.stage_epochs)
        else:
            ranker.history = fit_net(ranker, data.split, **options)
    train_seconds = time.perf_counter() - started
    ranker.save(out)
    metrics, rows = evaluate_all(ranker, data.split, config)
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["model"] = config.model.kind
    if hasattr(ranker, "expert_usage"):
        metrics["expert_usage"] = ranker.expert_usage()
        metrics["modality_share"] = ranker.modality_share()
    history = getattr(ranker, "history", [])
    if history:
        metrics["epochs"] = len(history)
        reached = [r["reached_target_seconds"] for r in history if "reached_target_seconds" in r]
        metrics["reached_target_seconds"] = reached[0] if reached else None
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    _write_predictions(out / "predictions.parquet", rows)
    return metrics


def load_run(run_dir: str | Path):
    """The ranker and config of a sequential run directory."""
    from mmrank.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "model.json").is_file():
        raise DataError("not a run directory (model.json missing)", path=run_dir,
                        hint="train one with `mmrank train configs/ml100k_sasrec.yaml --out RUN`")
    config = load_config(run_dir / "config.yaml")
    kind = json.loads((run_dir / "model.json").read_text())["kind"]
    return RANKERS[kind].load(run_dir), config


def evaluate_sequential(run_dir: str | Path, data: str | Path | None = None) -> dict:
    """Recompute a run's metrics (on ``data``, a RecBole folder, or the run's own data path).

    The leave-one-out split is rebuilt and must match the run's vocabulary: an id the model
    never saw raises ``UnknownIdError`` naming the id and file."""
    ranker, config = load_run(run_dir)
    seq = load_sequence_data(data or config.data.path)
    metrics, _ = evaluate_all(ranker, split_for(ranker, seq), config)
    if hasattr(ranker, "expert_usage"):
        metrics["expert_usage"] = ranker.expert_usage()
        metrics["modality_share"] = ranker.modality_share()
    return metrics


def split_for(ranker, seq: SequenceData) -> SequenceSplit:
    """The data's leave-one-out split in the ranker's own dense ids (re-encoded through its
    vocabularies when the data's differ; an id the model never saw raises ``UnknownIdError``)."""
    split = seq.split
    if list(split.items.ids) != list(ranker.items.ids) or list(split.users.ids) != list(ranker.users.ids):
        split = _reencode(seq, ranker)
    return split


def _reencode(seq: SequenceData, ranker) -> SequenceSplit:
    from mmrank.sequential.data import build_histories

    s = seq.split
    src = seq.inter_path
    users_raw = s.users.ids
    uidx = ranker.users.encode(users_raw, src)
    train_pairs = [(users_raw[u], s.items.ids[i - 1]) for u in range(s.train.n_users) for i in s.train.of(u)]
    inter = Interactions([p[0] for p in train_pairs], [p[1] for p in train_pairs],
                         np.arange(len(train_pairs), dtype=np.float64))
    hist = build_histories(inter, ranker.users, ranker.items, src)

    def remap(targets: np.ndarray) -> np.ndarray:
        out = np.zeros(len(ranker.users), dtype=np.int64)
        have = targets > 0
        out[uidx[have]] = ranker.items.encode(s.items.ids[targets[have] - 1], src)
        return out

    return SequenceSplit(ranker.users, ranker.items, hist, remap(s.valid_target), remap(s.test_target),
                         ranker.cold_items)


def recommend(run_dir: str | Path, user: str, k: int = 10, data: str | Path | None = None) -> list[dict]:
    """Top ``k`` items for ``user`` after everything they have seen (train + valid + test events),
    seen items left out: ``[{"rank", "item_id", "title", "score"}, ...]``."""
    ranker, config = load_run(run_dir)
    seq = load_sequence_data(data or config.data.path)
    s = seq.split
    u_own = ranker.users.encode([user], f"--user (users of {run_dir})")[0]
    u_data = s.users.encode([user], seq.inter_path)[0]
    full = s.history_for("test").append(s.test_target).of(u_data)
    history = ranker.items.encode(s.items.ids[full - 1], seq.inter_path)
    scores = ranker.score_users(torch.tensor([u_own]), _OneUser(u_own, history))[0].double()
    scores[torch.from_numpy(history)] = float("-inf")
    scores[0] = float("-inf")
    top = torch.topk(scores, min(k, len(scores) - 1 - len(set(history.tolist()))))
    titles = {}
    if seq.catalogue is not None and seq.catalogue.titles is not None:
        titles = dict(zip(seq.catalogue.item_ids, seq.catalogue.titles))
    out = []
    for r, (score, idx) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        item = str(ranker.items.ids[idx - 1])
        out.append({"rank": r, "item_id": item, "title": titles.get(item, item), "score": score})
    return out


class _OneUser:
    """A Histories stand-in holding one user's sequence (for scoring a single user)."""

    def __init__(self, user: int, items: np.ndarray) -> None:
        self.user, self.items = user, items

    def of(self, user: int) -> np.ndarray:
        return self.items
