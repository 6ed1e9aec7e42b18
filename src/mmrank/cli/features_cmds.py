"""`mmrank data features` (item modalities + the ML-100K reranking task) and `mmrank data dedup`."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from mmrank.cli.app import data_app
from mmrank.errors import ConfigError
from mmrank.features.pipeline import DATASETS, TASK_FOLDERS


@contextmanager
def _progress_bars(console: Console) -> Iterator:
    """A ``progress(label, total) -> advance(n)`` factory drawing rich bars; bars of steps the
    cache answered are filled at the end (cached rows never call ``advance``)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bars:
        def factory(label: str, total: int):
            task = bars.add_task(label, total=total)
            return lambda n: bars.advance(task, n)

        yield factory
        for task in bars.tasks:
            bars.update(task.id, completed=task.total)


def _parse_bins(text: str) -> tuple[int, int, int]:
    try:
        bins = tuple(int(x) for x in text.split(","))
    except ValueError:
        bins = ()
    if len(bins) != 3 or min(bins) < 1:
        raise ConfigError(f"--hsv-bins {text!r}: expected three positive integers H,S,V — e.g. 8,4,4")
    return bins  # type: ignore[return-value]


@data_app.command("features")
def features(
    dataset: str = typer.Option("ml100k", "--dataset", help=f"which data set to featurise: {', '.join(DATASETS)}"),
    data_dir: Path = typer.Option(..., "--data-dir", help="folder holding ml-100k/ and ml-100k-mm/"),
    out: Path = typer.Option(..., "--out", help="output folder (items.*, rerank/*.parquet, features_report.json)"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="feature cache folder (default $MMRANK_CACHE_DIR or ~/.cache/mmrank/features)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="compute everything, read and write no cache"),
    text_model: Optional[str] = typer.Option(None, "--text-model", help="local sentence-transformers folder (default: bundled all-MiniLM-L6-v2)"),
    batch_size: int = typer.Option(64, "--batch-size", help="texts per encoder batch"),
    hsv_bins: str = typer.Option("8,4,4", "--hsv-bins", help="HSV histogram bins H,S,V of the poster features"),
    image_encoder: str = typer.Option("efficientnet-lite0", "--image-encoder",
                                      help="pretrained poster encoder for the image_effnet modality: efficientnet-lite0 "
                                           "(lite1/lite2 when their weight wheels are installed) or none"),
    image_backend: str = typer.Option("auto", "--image-backend",
                                      help="forward of the poster encoder: auto (ONNX Runtime when it reproduces "
                                           "torch to 1e-4, else torch), onnxruntime or torch"),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="also add clip_image/clip_text with this open_clip model (e.g. ViT-B-32, local-dir:/folder)"),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", help="local checkpoint file for --clip-model"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice)"),
    negatives: int = typer.Option(20, "--negatives", help="sampled never-rated movies per query"),
    negative_sampling: str = typer.Option("popularity", "--negative-sampling", help="popularity | uniform"),
    context_k: int = typer.Option(10, "--context-k", help="last rated movies forming the query context"),
    seed: int = typer.Option(0, "--seed", help="seed of the negative sampling"),
    task_format: str = typer.Option("parquet", "--task-format", help="parquet | jsonl"),
    task_protocol: str = typer.Option("both", "--task-protocol",
                                      help="reranking task cuts: per_user (OUT/rerank: each user's own time "
                                           "quantiles, 943 test queries), global (OUT/rerank_global: one time cut "
                                           "for all, 89 test queries) or both"),
) -> None:
    """Build item features (text, image, image_effnet, meta) and the ML-100K multimodal reranking task.

    Writes OUT/items.safetensors + OUT/items.json, the reranking task per protocol
    (OUT/rerank: per-user time cuts, the benchmark task; OUT/rerank_global: one global time cut),
    each with {train,valid,test}.parquet, task.json (protocol, cuts, counts, measured leakage) and
    seen.inter / held_out.inter (the events training sees and the test windows, for the audit's
    temporal check), and OUT/features_report.json (every missing or unreadable input with its
    reason). A second run reads the vectors from the cache. With --clip-model and
    --clip-pretrained (your own weights) the items and the task also get clip_image/clip_text.
    Protocols: docs/ml100k_tasks.md.

    Example: mmrank data features --dataset ml100k --data-dir ../shared/data --out out/ml100k

    Example: mmrank data features --dataset ml100k --data-dir ../shared/data --out out/ml100k --task-protocol global
    """
    from mmrank.features.cache import default_cache_dir
    from mmrank.features.pipeline import FeatureOptions, build_ml100k

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset {dataset!r} is not known — use one of {', '.join(DATASETS)}")
    protocols = tuple(TASK_FOLDERS) if task_protocol == "both" else (task_protocol,)
    options = FeatureOptions(cache_dir=None if no_cache else (cache or default_cache_dir()), text_model=text_model,
                             batch_size=batch_size, hsv_bins=_parse_bins(hsv_bins),
                             image_encoder=None if image_encoder == "none" else image_encoder, image_backend=image_backend,
                             clip_model=clip_model,
                             clip_pretrained=clip_pretrained, threads=threads, negatives=negatives,
                             negative_sampling=negative_sampling, context_k=context_k, seed=seed, task_format=task_format,
                             task_protocols=protocols)
    options.check()
    with _progress_bars(Console(stderr=True)) as progress:
        built = build_ml100k(data_dir, out, options, progress)
    _print_summary(built.report, built.task_info, out, built.cache_dir, built.task_cache_hit)


def _print_summary(report, task_info: dict, out: Path, cache_dir: Path | None, task_hit: dict) -> None:
    console = Console()
    table = Table(title="item features")
    for col in ("modality", "items", "ok", "missing", "failed", "cache hits", "computed", "seconds"):
        table.add_column(col, justify="left" if col == "modality" else "right")
    for name, c in report.counts.items():
        seconds = report.timings_s.get(name)
        table.add_row(name, str(c.items), str(c.ok), str(c.missing), str(c.failed), str(c.cache_hits),
                      str(c.computed), "" if seconds is None else f"{seconds:.2f}")
    console.print(table)
    backend = json.loads((out / "items.json").read_text()).get("encoders", {}).get("image_effnet_backend")
    if backend:
        console.print(f"image_effnet forward: {backend}", highlight=False)
    for protocol, info in task_info.items():
        tasks = Table(title=f"ML-100K reranking task, {protocol} time cuts → {out / TASK_FOLDERS[protocol]}")
        for col in ("split", "queries", "candidates", "positives", "negatives"):
            tasks.add_column(col, justify="left" if col == "split" else "right")
        for split, c in info["counts"].items():
            tasks.add_row(split, str(c["queries"]), str(c["candidates"]), str(c["positives"]), str(c["negatives"]))
        console.print(tasks)
        leak = info["leakage"]
        console.print(f"{protocol}: same-user future events seen in training {leak['same_user_future_events']}; "
                      f"test queries with later events of other users seen in training "
                      f"{leak['test_queries_with_later_seen_events']:.1%}"
                      + (" (time-consistent)" if leak["time_consistent"] else " (see docs/ml100k_tasks.md)"), highlight=False)
    hits = {k: f"{c.cache_hits}/{c.ok}" for k, c in report.counts.items() if k != "meta"}
    console.print(f"cache hits: {', '.join(f'{k} {v}' for k, v in hits.items())}, "
                  f"reranking task {sum(task_hit.values())}/{len(task_hit)}"
                  + (f" (cache: {cache_dir})" if cache_dir else " (no cache)"), highlight=False)
    bad = len([i for i in report.issues if i.state != "warning"])
    console.print(f"{bad} missing/unreadable inputs, {len(report.issues) - bad} warnings: "
                  f"{out / 'features_report.json'}", highlight=False)
    console.print(f"wrote {out} in {report.timings_s['total']:.1f} s", highlight=False)


@data_app.command("dedup")
def dedup(
    path: Path = typer.Argument(..., help="an image folder (searched recursively) or one image file"),
    phash_distance: int = typer.Option(5, "--phash-distance", help="max Hamming distance of 64-bit pHashes"),
    cosine: float = typer.Option(0.95, "--cosine", help="min cosine of embeddings for the embedding method"),
    image_backend: str = typer.Option("auto", "--image-backend",
                                      help="forward of the poster encoder: auto (ONNX Runtime when it reproduces "
                                           "torch to 1e-4, else torch), onnxruntime or torch"),
    clip_model: Optional[str] = typer.Option(None, "--clip-model", help="open_clip model name for embedding dedup (off when absent)"),
    clip_pretrained: Optional[str] = typer.Option(None, "--clip-pretrained", help="local checkpoint file of --clip-model"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="feature cache folder for the CLIP embeddings"),
    out: Optional[Path] = typer.Option(None, "--out", help="write the clusters as JSON here"),
) -> None:
    """Find duplicate images: exact (sha256), perceptual (pHash) and, with --clip-model, embedding.

    Example: mmrank data dedup ../shared/data/ml-100k-mm/posters --phash-distance 5 --out dups.json
    """
    from mmrank.atomic_io import atomic_write_text
    from mmrank.errors import DataError
    from mmrank.features.cache import default_cache_dir
    from mmrank.features.dedup import find_duplicates, find_image_files

    if not path.exists():
        raise DataError("not found", path=path, hint="pass an image folder or file")
    files = find_image_files(path)
    if not files:
        raise DataError("no image files found", path=path, hint="pass a folder with .jpg/.png/... files")
    console = Console(stderr=True)
    embeddings = None
    if clip_model:
        from mmrank.features.clip import ClipEncoder

        encoder = ClipEncoder(clip_model, clip_pretrained)
        with _progress_bars(console) as progress:
            result = encoder.encode_image_files(files, encoder.image_cache(cache or default_cache_dir()),
                                                on_batch=progress("CLIP embeddings", len(files)))
        embeddings = result.matrix  # unreadable images are zero rows, which never match
    with console.status(f"hashing {len(files)} images"):
        found = find_duplicates(files, embeddings, phash_distance, cosine)
    summary = found.to_dict()
    table = Table(title=f"duplicates among {len(files)} images")
    for col in ("method", "clusters", "duplicate files", "example cluster"):
        table.add_column(col)
    for method, clusters in summary["clusters"].items():
        example = ", ".join(Path(p).name for p in clusters[0][:4]) if clusters else ""
        table.add_row(method, str(len(clusters)), str(summary["duplicates"][method]), example)
    Console().print(table)
    if summary["unreadable"]:
        Console().print(f"{len(summary['unreadable'])} unreadable image(s), e.g. "
                        f"{summary['unreadable'][0]['path']}: {summary['unreadable'][0]['reason']}", highlight=False)
    if out is not None:
        atomic_write_text(out, json.dumps(summary, indent=1) + "\n")
        Console().print(f"wrote {out}", highlight=False)
