"""Train and evaluate sequential recommenders into run directories.

``train_sequential(config, out)``: read the data (any interaction format), split it by the
configured protocol (``mmrank.sequential.protocols``: leave-one-out in time or sequence order,
the data's own split, explicit target files, random — never file order called time), build dense
ids from the training part plus the item catalogue, train (joint or staged) through the one
Trainer factory, and write the run directory: ``config.yaml``, ``model.safetensors`` +
``model.json``, ``metrics.json`` (full ranking, sampled metrics marked ``sampled_``, and the split
protocol under ``split``), ``predictions.parquet`` (per-user test/valid metrics, for paired
significance tests), ``fingerprint.json`` (data + split hashes, git sha, versions, seed),
``provenance.*`` (hashes of the events of every part: what the model was trained on),
``recommend/`` (what ``mmrank recommend`` needs without re-reading the data: every user's seen
items and the titles), ``logs/`` (per-epoch JSON lines, CSV, the resume checkpoint).

``evaluate_sequential(run_dir)``: reload the run and recompute its metrics from the data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from mmrank.atomic_io import atomic_write_bytes, atomic_write_text
from mmrank.config import dump_config
from mmrank.errors import ConfigError, DataError
from mmrank.models.registry import build_ranker as build_model
from mmrank.models.registry import kinds, task_of
from mmrank.runs import git_sha, load_model, model_kind, package_versions
from mmrank.sequential.coldstart import cold_mask, prediction_rows, warm_cold_breakdown
from mmrank.sequential.config import SequentialConfig
from mmrank.sequential.data import SequenceSplit
from mmrank.sequential.dataset import (
    SequenceData,
    aligned_item_features,
    load_sequence_data,
    split_for,
)
from mmrank.sequential.protocols import SplitProtocol
from mmrank.sequential.recommend_state import write_recommend_state
from mmrank.sequential.evaluation import evaluate_stage, mean_metrics
from mmrank.sequential.folds import evaluation_split
from mmrank.sequential.schedule import fit_staged
from mmrank.sequential.training import fit_net
from mmrank.train.trainer import checkpoint_path

BASELINES = ("popularity", "most_recent")
CONTENT_KINDS = ("sasrec_moe", "sasrec_content")  # kinds that read data.item_features
LOGS = "logs"


def make_ranker(cfg: SequentialConfig):
    """The configured ranker, parameters checked (before any data is read)."""
    ranker = build_model(cfg.model.kind, cfg.model.params)
    if cfg.model.kind in CONTENT_KINDS and not cfg.data.item_features:
        raise ConfigError(f"data.item_features: required by {cfg.model.kind} — build the folder with "
                          "`mmrank data item-features OUT --modality text=text_feat.npy ...` (any data) or "
                          "`mmrank data features --dataset ml100k --data-dir DIR --out OUT`")
    return ranker


def build_ranker(cfg: SequentialConfig, data: SequenceData, ranker=None):
    """``make_ranker`` plus, for the content kinds, the item features aligned with the split's dense ids."""
    ranker = ranker or make_ranker(cfg)
    if cfg.model.kind in CONTENT_KINDS:
        ranker.set_item_features(*aligned_item_features(cfg.data.item_features, data.split, cfg.data.modalities))
    return ranker


def _train_options(cfg: SequentialConfig, log_dir: Path, resume: bool) -> dict:
    t = cfg.train
    return dict(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay,
                patience=t.patience, seed=t.seed, crop=t.crop, target_ndcg=t.target_ndcg,
                stop_at_target=t.stop_at_target, progress=t.progress, grad_clip=t.grad_clip,
                deterministic=t.deterministic, resume=resume, log_dir=str(log_dir))


def _fingerprint(cfg: SequentialConfig, data: SequenceData) -> dict:
    return {"data": {"path": data.inter_path, "interactions": data.data_fingerprint, "order": data.interactions.order},
            "split": {"method": data.protocol.name, **data.split_fingerprint},
            "vocab": {"items": data.split.items.fingerprint(), "users": data.split.users.fingerprint()},
            "git_sha": git_sha(), "seed": cfg.train.seed, "versions": package_versions()}


def evaluate_all(ranker, split: SequenceSplit, cfg: SequentialConfig, protocol: SplitProtocol | None = None
                 ) -> tuple[dict, list[dict]]:
    """Mean metrics per stage (``test`` / ``valid``; sampled ones prefixed ``sampled_``), the
    protocol (``protocol`` sentence, ``split`` details) and the per-user rows for
    ``predictions.parquet`` (``n_targets``: a user's held-out items in the stage, ``target_item``
    the first of them)."""
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
        cold = cold_mask(split, stage, per_user["users"])
        metrics.setdefault("warm_cold", {})[stage] = warm_cold_breakdown(per_user, cold)
        rows += prediction_rows(per_user, split, stage, cold)
    split_text = "leave-one-out in time" if protocol is None else protocol.description
    several = "; a user with several held-out items: mean over them, the others taken out of the ranking" \
        if (split.test_targets.counts() > 1).any() or (split.valid_targets.counts() > 1).any() else ""
    metrics["protocol"] = (f"{split_text}; full ranking over all catalogue items with each user's seen items "
                           f"masked{several}; sampled_* = target among {cfg.evaluate.sampled_negatives} random unseen "
                           "items (SAMPLED, not full)")
    if protocol is not None:
        metrics["split"] = protocol.to_dict()
    return metrics, rows


def _write_predictions(path: Path, rows: list[dict]) -> None:
    import io

    import pandas as pd

    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def _check_out(config: SequentialConfig, out: Path, resume: bool) -> None:
    """Refuse to overwrite a finished run, and to resume one that never checkpointed."""
    if (out / "model.json").exists():
        if resume:
            raise ConfigError(f"{out}: this run already finished (model.json exists) — nothing to resume; "
                              "train into another --out")
        raise ConfigError(f"{out}: already holds a run — pass --resume to continue it or choose another --out")
    if resume and config.model.kind not in BASELINES:
        stages = [out / LOGS / "train"] if config.train.schedule == "joint" else list((out / LOGS).glob("*"))
        if not any(checkpoint_path(d).exists() or (d / "final.json").exists() for d in stages):
            raise DataError("nothing to resume: no training checkpoint", path=out / LOGS,
                            hint="train without --resume first")


def _fit(ranker, config: SequentialConfig, data: SequenceData, out: Path, resume: bool) -> None:
    if config.model.kind in BASELINES:
        ranker.fit(data.split)
        return
    from mmrank.train.fit import seed_everything

    seed_everything(config.train.seed)  # before the weights are created: the same seed, the same init
    ranker.build(data.split)
    if config.train.schedule == "staged":
        if config.model.kind != "sasrec_moe":
            raise ConfigError("train.schedule: staged needs model.kind sasrec_moe — use joint for sasrec")
        ranker.history_ = fit_staged(ranker, data.split, _train_options(config, out / LOGS, resume), config.train.stage_epochs)
    else:
        ranker.history_ = fit_net(ranker, data.split, **_train_options(config, out / LOGS / "train", resume))


def train_sequential(config: SequentialConfig, out: str | Path, resume: bool = False) -> dict:
    """Train ``config`` into the run directory ``out``; returns the metrics written to
    ``metrics.json``.

    Args:
        config: a validated ``SequentialConfig``.
        out: the run directory.
        resume: continue a killed run from its last checkpoint (``out/logs/.../last.ckpt``):
            weights, optimiser, RNG states and early-stopping state are restored, so the final
            metrics equal an uninterrupted run's (timing fields aside).

    Returns:
        The metrics dict (``valid``, ``test``, ``epochs``, ``train_seconds``, ...).
    """
    out = Path(out)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    _check_out(config, out, resume)
    started = time.perf_counter()
    ranker = make_ranker(config)  # parameter errors before any data is read
    data = evaluation_split(load_sequence_data(config.data), config.data)
    if config.train.progress:
        _tell(f"split: {data.protocol.description}" + "".join(f"\nnote: {n}" for n in data.notices))
    ranker = build_ranker(config, data, ranker)
    atomic_write_text(out / "config.yaml", dump_config(config))
    atomic_write_text(out / "fingerprint.json", json.dumps(_fingerprint(config, data), indent=1))
    _write_provenance(out, data)
    _fit(ranker, config, data, out, resume)
    train_seconds = time.perf_counter() - started
    metrics, rows = evaluate_all(ranker, data.split, config, data.protocol)
    if data.notices:
        metrics["notices"] = list(data.notices)
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["model"] = config.model.kind
    if hasattr(ranker, "expert_usage"):
        metrics["expert_usage"] = ranker.expert_usage()
    if hasattr(ranker, "modality_share"):
        metrics["modality_share"] = ranker.modality_share()
    _write_fallbacks(out, ranker, config, data, metrics)
    history = getattr(ranker, "history_", [])
    if history:
        metrics["epochs"] = len(history)
        reached = [r["reached_target_seconds"] for r in history if "reached_target_seconds" in r]
        metrics["reached_target_seconds"] = reached[0] if reached else None
    _write_predictions(out / "predictions.parquet", rows)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    write_recommend_state(out, data, config.data.item_features)
    ranker.save(out)  # model.json last: a run that has one is complete
    return metrics


def _fallbacks(ranker, config: SequentialConfig, split: SequenceSplit, metrics: dict) -> list[dict] | None:
    """For an ID-only SASRec on a split with cold targets: every cold-start fallback
    (``mmrank.sequential.coldstart``) into ``metrics["cold_start_fallbacks"]``; returns the per-user
    rows (None when there is nothing to report)."""
    from mmrank.sequential.coldstart import ID_ONLY_KINDS, content_matrix, fallback_report

    has_cold = any(metrics["warm_cold"][s]["users"]["cold"] for s in ("valid", "test"))
    if config.model.kind not in ID_ONLY_KINDS or not has_cold:
        return None
    content = None
    if config.data.item_features:
        content = content_matrix(*aligned_item_features(config.data.item_features, split, config.data.modalities))
    metrics["cold_start_fallbacks"], rows = fallback_report(ranker, split, config.evaluate.ks, content,
                                                            seed=config.train.seed, chunk_size=config.evaluate.chunk_size)
    return rows


def _write_fallbacks(out: Path, ranker, config: SequentialConfig, data: SequenceData, metrics: dict) -> None:
    """``_fallbacks`` plus ``predictions_fallbacks.parquet`` in the run directory."""
    rows = _fallbacks(ranker, config, data.split, metrics)
    if rows is not None:
        _write_predictions(out / "predictions_fallbacks.parquet", rows)


def _tell(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _write_provenance(out: Path, data: SequenceData) -> None:
    from mmrank.provenance import write_provenance

    write_provenance(out, {name: data.events(name) for name in ("train", "valid", "test")})


def load_run(run_dir: str | Path):
    """The ranker and config of a sequential run directory (``DataError`` for a rerank run)."""
    from mmrank.config import load_config

    run_dir = Path(run_dir)
    kind = model_kind(run_dir)
    if kind not in kinds("sequential"):
        task = task_of(kind) if kind in kinds() else "unknown"
        raise DataError(f"this is a {task} run (model kind {kind!r}), not a sequential recommender",
                        path=run_dir, hint="point at a run trained from a sequential config "
                                           "(e.g. mmrank train configs/ml100k_sasrec.yaml)")
    return load_model(run_dir), load_config(run_dir / "config.yaml")


def evaluate_sequential(run_dir: str | Path, data: str | Path | None = None, allow_trained_on: bool = False) -> dict:
    """Recompute a run's metrics (on ``data``, read with the run's data settings, or on the
    run's own data).

    The split is rebuilt by the run's protocol and must match the run's vocabulary: an id the
    model never saw raises ``UnknownIdError`` naming the id and file. Test events the run trained
    or validated on (its recorded provenance) are refused with a DataError unless
    ``allow_trained_on``; the overlap is recorded as ``trained_on_overlap``."""
    from mmrank.provenance import refuse_if_trained_on

    ranker, config = load_run(run_dir)
    seq = evaluation_split(load_sequence_data(config.data, data), config.data)
    overlap = refuse_if_trained_on(run_dir, seq.events("test"), allow=allow_trained_on, path=str(data or config.data.path))
    split = split_for(ranker, seq)
    metrics, _ = evaluate_all(ranker, split, config, seq.protocol)
    _fallbacks(ranker, config, split, metrics)
    metrics["trained_on_overlap"] = ("unknown: the run recorded no provenance" if overlap is None else overlap.to_dict())
    if hasattr(ranker, "expert_usage"):
        metrics["expert_usage"] = ranker.expert_usage()
    if hasattr(ranker, "modality_share"):
        metrics["modality_share"] = ranker.modality_share()
    return metrics
