"""Building a data set's features end to end, as a library call (the CLI only parses and prints).

``build_ml100k(data_dir, out, options)``: item modalities (text, image, image_effnet, meta,
optionally CLIP) with the cache, then the ML-100K reranking task under each protocol asked for
(per-user cuts into ``OUT/rerank``, global cuts into ``OUT/rerank_global``; each cached as a
whole), then ``features_report.json``. Protocols: docs/ml100k_tasks.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmrank.errors import ConfigError

DATASETS = ("ml100k",)
TASK_FORMATS = ("parquet", "jsonl")
# Reranking-task protocol -> its folder under OUT (the per-user task is the default benchmark task).
TASK_FOLDERS = {"per_user": "rerank", "global": "rerank_global"}


@dataclass
class FeatureOptions:
    """How to build the features. ``cache_dir`` None computes everything and caches nothing."""

    cache_dir: Path | None = None
    text_model: str | None = None
    batch_size: int = 64
    hsv_bins: tuple[int, int, int] = (8, 4, 4)
    image_encoder: str | None = "efficientnet-lite0"  # pretrained poster encoder (None: off)
    image_backend: str = "auto"  # its forward: auto (ONNX Runtime when it matches torch) | onnxruntime | torch
    clip_model: str | None = None
    clip_pretrained: str | None = None
    threads: int | None = None
    negatives: int = 20
    negative_sampling: str = "popularity"
    context_k: int = 10
    seed: int = 0
    task_format: str = "parquet"
    task_protocols: tuple[str, ...] = ("per_user", "global")

    def check(self) -> None:
        """ConfigError for a value that cannot work, before any input is read."""
        unknown = [p for p in self.task_protocols if p not in TASK_FOLDERS]
        if unknown or not self.task_protocols:
            raise ConfigError(f"--task-protocol {','.join(self.task_protocols)!r} — use per_user, global or both")
        if self.image_encoder is not None:
            from mmrank.features.efficientnet import BACKENDS, MODELS

            if self.image_encoder not in MODELS:
                raise ConfigError(f"--image-encoder {self.image_encoder!r} — use one of {', '.join(MODELS)} or none")
            if self.image_backend not in BACKENDS:
                raise ConfigError(f"--image-backend {self.image_backend!r} — use one of {', '.join(BACKENDS)}")
        if self.task_format not in TASK_FORMATS:
            raise ConfigError(f"--task-format {self.task_format!r} — use parquet or jsonl")
        if len(self.hsv_bins) != 3 or min(self.hsv_bins) < 1:
            raise ConfigError(f"--hsv-bins {self.hsv_bins!r}: expected three positive integers H,S,V — e.g. 8,4,4")
        if self.clip_model and self.clip_pretrained is None and not self.clip_model.startswith("local-dir:"):
            raise ConfigError("--clip-model needs --clip-pretrained PATH (or a local-dir: model) — "
                              "randomly initialised CLIP vectors carry no meaning")


@dataclass
class FeatureBuild:
    """What a build produced: the per-item report, the task's counts, whether the task was cached."""

    report: object
    task_info: dict        # protocol -> that task's info (task.json)
    task_cache_hit: dict   # protocol -> whether the task came from the cache
    out: Path
    cache_dir: Path | None = None
    files: list[str] = field(default_factory=list)


def build_ml100k(data_dir: str | Path, out: str | Path, options: FeatureOptions | None = None,
                 progress: Callable | None = None) -> FeatureBuild:
    """Item features and the ML-100K reranking task into ``out``.

    Args:
        data_dir: the folder holding ``ml-100k/`` and ``ml-100k-mm/``.
            Modalities: ``text`` (MiniLM), ``image`` (handcrafted poster statistics), ``image_effnet``
            (pretrained EfficientNet-Lite0, unless ``options.image_encoder`` is None), ``meta``, and
            ``clip_image`` / ``clip_text`` with a CLIP checkpoint.
        out: writes ``items.safetensors`` + ``items.json``, per protocol a task folder
            (``rerank/`` per-user cuts, ``rerank_global/`` global cuts) with ``{train,valid,test}.*``,
            ``task.json``, ``seen.inter``, ``held_out.inter``, and ``features_report.json``.
        options: encoders, cache and task settings.
        progress: ``progress(label, total) -> advance(n)`` for progress bars (None: silent).

    Returns:
        ``FeatureBuild`` (the report's counts add up: items = ok + missing + failed per modality).

    Raises:
        ConfigError: for options that cannot work (checked before any input is read).
        DataError: when the input data is missing or malformed.

    Example:
        >>> build = build_ml100k("../shared/data", "out/ml100k",
        ...                      FeatureOptions(cache_dir=Path("~/.cache/mmrank").expanduser()))  # doctest: +SKIP
        >>> build.report.counts["image"].missing, build.task_info["per_user"]["counts"]["test"]  # doctest: +SKIP
    """
    from mmrank.data.ml100k_items import build_item_features, save_item_features
    from mmrank.data.ml100k_rerank_task import (
        RerankTaskConfig,
        rerank_task_files,
        rerank_task_key,
        write_rerank_task,
    )
    from mmrank.features.build_report import FeaturesReport
    from mmrank.features.cache import cached_outputs
    from mmrank.features.text import TextEncoder
    from mmrank.features.visual import VisualEncoder

    options = options or FeatureOptions()
    options.check()
    data_dir, out = Path(data_dir), Path(out)
    task_configs = {protocol: RerankTaskConfig(protocol=protocol, context_k=options.context_k, n_negatives=options.negatives,
                                               negatives=options.negative_sampling, seed=options.seed)
                    for protocol in options.task_protocols}
    for task_config in task_configs.values():
        task_config.check()
    report = FeaturesReport()
    started = time.perf_counter()
    text_encoder = TextEncoder(options.text_model, batch_size=options.batch_size, num_threads=options.threads)
    visual_encoder = VisualEncoder(tuple(options.hsv_bins))
    image_encoder = None
    if options.image_encoder:
        from mmrank.features.efficientnet import EfficientNetEncoder

        image_encoder = EfficientNetEncoder(options.image_encoder, backend=options.image_backend)
    clip_encoder = None
    if options.clip_model:
        from mmrank.features.clip import ClipEncoder

        clip_encoder = ClipEncoder(options.clip_model, options.clip_pretrained)
    items, info = build_item_features(data_dir, text_encoder, visual_encoder, report, options.cache_dir,
                                      progress or _silent, clip_encoder=clip_encoder, image_encoder=image_encoder)
    save_item_features(items, out, info)
    t0 = time.perf_counter()
    names = rerank_task_files(options.task_format)
    task_info, task_hit = {}, {}
    for protocol, task_config in task_configs.items():
        folder = out / TASK_FOLDERS[protocol]
        key = rerank_task_key(data_dir, out / "items.safetensors", task_config, options.task_format)
        task_hit[protocol] = cached_outputs(
            options.cache_dir, key, folder, names,
            lambda target, cfg=task_config: write_rerank_task(data_dir, items, target, cfg, options.task_format))
        task_info[protocol] = json.loads((folder / "task.json").read_text())
    report.timings_s["task"] = time.perf_counter() - t0
    report.timings_s["total"] = time.perf_counter() - started
    report.write(out / "features_report.json")
    return FeatureBuild(report, task_info, task_hit, out, options.cache_dir, list(names))


def _silent(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None
