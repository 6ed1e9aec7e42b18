"""`mmrank data validate|convert|inspect`: thin commands over ``mmrank.data.formats``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import data_app, user_errors
from mmrank.data.formats import (
    format_label,
    interaction_output_format,
    is_interaction_format,
    load_interaction_data,
    output_format,
    parse_label_range,
    read_ranking,
    resolve_format,
    write_interactions,
    write_ranking,
)
from mmrank.data.interaction_data import PART_NAMES
from mmrank.data.validate import ReadReport
from mmrank.errors import DataError

FORMAT_HELP = ("jsonl, parquet, libsvm (ranking) or recbole, movielens, mmrec, sasrec, table (csv/tsv/parquet of "
               "user,item[,rating][,timestamp]) (interactions); default: detected")
OPTION_HELP = "a reader option KEY=VALUE, e.g. user_ids=line for SASRec text without user ids (repeatable)"


def _options(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise DataError(f"--option {item!r} is not KEY=VALUE", hint="e.g. --option user_ids=line")
        out[key.strip()] = value.strip()
    return out


def _read_any(path: Path, fmt: str, strict: bool, label_range, options: dict | None = None) -> tuple[object, ReadReport]:
    """(RankingSet or InteractionData, report) for any known format."""
    with Console(stderr=True).status(f"reading {path} ({fmt})"):  # a spinner: big files take a while
        if is_interaction_format(fmt):
            data = load_interaction_data(path, fmt, strict=strict, **(options or {}))
            return data, data.report
        if options:
            raise DataError("--option applies to interaction formats", hint="drop --option")
        return read_ranking(path, fmt, strict=strict, label_range=label_range)


def _counts_line(report: ReadReport, quarantine: Path | None) -> str:
    line = (f"{report.records_in} records in: {report.records_read} read, "
            f"{report.records_quarantined} quarantined")
    return line + (f" (quarantine: {quarantine})" if quarantine is not None else "")


def _write_quarantine(report: ReadReport, target: Path) -> Path:
    try:
        return report.write_quarantine(target)
    except OSError as e:
        raise DataError(f"cannot write the quarantine file: {e.strerror or e}", path=target,
                        hint="pass --quarantine FILE in a writable folder") from None


@data_app.command("validate")
def validate(
    path: Path = typer.Argument(..., help="data file (or folder for RecBole/MMRec/MovieLens)"),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    strict: bool = typer.Option(False, "--strict", help="stop at the first bad record"),
    label_range: Optional[str] = typer.Option(None, "--label-range", help="allowed labels LO,HI, e.g. 0,4"),
    quarantine: Optional[Path] = typer.Option(None, "--quarantine", help="where bad records go (default PATH.quarantine.jsonl)"),
    option: Optional[List[str]] = typer.Option(None, "--option", help=OPTION_HELP),
) -> None:
    """Check every record; print each bad one as FILE:LINE: what — what to do; keep them in a quarantine file.

    Exits 2 when any record is bad, 0 when all are good.

    Example: mmrank data validate MQ2008/S1.txt --format libsvm --label-range 0,2
    """
    with user_errors():
        fmt = resolve_format(path, format)
        lr = parse_label_range(label_range)
        if lr is not None and is_interaction_format(fmt):
            raise DataError("--label-range applies to ranking data only", hint="drop --label-range")
        try:
            _, report = _read_any(path, fmt, strict, lr, _options(option))
        except DataError as e:
            if not strict:
                raise
            typer.echo(e.format())
            typer.echo("stopped at the first bad record (--strict)")
            raise typer.Exit(2) from None
        for problem in report.problems:
            typer.echo(problem.format())
        target = None
        if report.problems:
            target = _write_quarantine(report, quarantine or Path(str(path) + ".quarantine.jsonl"))
        typer.echo(_counts_line(report, target))
        if report.records_in == 0:
            typer.echo(f"{path}: no records — check that this is the right file and format")
            raise typer.Exit(2)
        if report.problems:
            raise typer.Exit(2)


@data_app.command("convert")
def convert(
    src: Path = typer.Argument(..., metavar="IN", help="data file or folder to read"),
    dst: Path = typer.Argument(..., metavar="OUT", help="file or folder to write (format from --to or its name)"),
    from_format: Optional[str] = typer.Option(None, "--from", help=FORMAT_HELP),
    to_format: Optional[str] = typer.Option(None, "--to", help="ranking: jsonl, parquet, libsvm; interactions: recbole, "
                                            "movielens, mmrec, sasrec, table (csv/tsv/parquet by OUT's extension); "
                                            "default: from OUT's name"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="convert the good records, quarantine the bad ones (default: stop at the first)"),
    lightgbm_groups: bool = typer.Option(False, "--lightgbm-groups", help="libsvm output without qid, plus OUT.query group sizes"),
    option: Optional[List[str]] = typer.Option(None, "--option", help=OPTION_HELP),
) -> None:
    """Convert ranking data (JSONL, Parquet, LibSVM/LETOR) or interaction data (RecBole, MovieLens,
    MMRec, SASRec text, CSV/Parquet tables) between formats of the same kind.

    Prints what the output format cannot hold (e.g. ratings in SASRec text, item features in a
    table), so nothing is lost without a word.

    Example: mmrank data convert MQ2008/S1.txt s1.parquet

    More: mmrank data convert Beauty.txt beauty/ --from sasrec --to recbole ·
    mmrank data convert baby/ baby.csv (an MMRec folder; x_label kept as a column)
    """
    with user_errors():
        fmt_in = resolve_format(src, from_format)
        if is_interaction_format(fmt_in):
            _convert_interactions(src, dst, fmt_in, to_format, skip_bad, _options(option))
            return
        if option:
            raise DataError("--option applies to interaction formats", hint="drop --option")
        fmt_out = output_format(dst, to_format)
        if lightgbm_groups and fmt_out != "libsvm":
            raise DataError("--lightgbm-groups needs libsvm output", hint="add --to libsvm")
        rset, report = _read_any(src, fmt_in, not skip_bad, None)
        out = write_ranking(rset, dst, fmt_out, **({"group_file": True} if lightgbm_groups else {}))
        _report_problems(report, dst)
        typer.echo(f"wrote {rset.n_queries} queries, {rset.n_candidates} candidates to {out}")


def _report_problems(report: ReadReport, dst: Path) -> None:
    for problem in report.problems:
        typer.echo(problem.format())
    target = _write_quarantine(report, Path(str(dst) + ".quarantine.jsonl")) if report.problems else None
    typer.echo(_counts_line(report, target))


def _convert_interactions(src: Path, dst: Path, fmt_in: str, to_format: str | None, skip_bad: bool, options: dict) -> None:
    fmt_out = interaction_output_format(dst, to_format)
    data, report = _read_any(src, fmt_in, not skip_bad, None, options)
    with Console(stderr=True).status(f"writing {dst} ({fmt_out})"):
        result = write_interactions(data, dst, fmt_out)
    _report_problems(report, dst)
    for name, why in data.files_not_read.items():
        typer.echo(f"not read: {name} — {why}")
    for what in result.dropped:
        typer.echo(f"not kept: {what}")
    inter = data.interactions
    typer.echo(f"wrote {len(inter)} interactions ({inter.n_users} users, {inter.n_items} items) as {fmt_out}: "
               + ", ".join(str(f) for f in result.files))


# -- inspect -------------------------------------------------------------------------------------
def _histogram(values: np.ndarray) -> dict[str, int]:
    """Exact counts for few distinct values (graded labels), ten bins otherwise."""
    values = values[np.isfinite(values)]
    uniq, counts = np.unique(values, return_counts=True)
    if len(uniq) <= 20:
        return {format_label(u): int(c) for u, c in zip(uniq, counts)}
    counts, edges = np.histogram(values, bins=10)
    return {f"[{a:.4g}, {b:.4g})": int(c) for a, b, c in zip(edges[:-1], edges[1:], counts)}


def _duplicates(keys: np.ndarray) -> int:
    """How many rows repeat an earlier row's key (sorted, then neighbours compared: on a million
    integer keys this is ~10x faster than ``np.unique``'s hash table)."""
    if not len(keys):
        return 0
    ordered = np.sort(keys)
    return int((ordered[1:] == ordered[:-1]).sum())


def ranking_summary(rset) -> dict:
    """Counts `mmrank data inspect` prints for ranking data: queries, candidates, label
    histogram, group sizes, modalities, duplicate (query, candidate) pairs, domains.
    """
    sizes = rset.group_sizes
    pair_keys = np.char.add(np.char.add(rset.query_index.astype(str), "\x1f"), rset.candidate_ids.astype(str))
    per_domain = Counter(str(d) for d in rset.domains)
    _, id_counts = np.unique(rset.candidate_ids.astype(str), return_counts=True) if rset.n_candidates else (None, np.zeros(0))
    return {
        "kind": "ranking",
        "queries": rset.n_queries,
        "candidates": rset.n_candidates,
        "candidates_per_query": {
            "min": int(sizes.min()) if len(sizes) else 0,
            "median": float(np.median(sizes)) if len(sizes) else 0.0,
            "max": int(sizes.max()) if len(sizes) else 0,
        },
        "labels": _histogram(rset.labels),
        "modalities": rset.modality_dims,
        "query_features": rset.query_feature_dims,
        "has_baseline_scores": rset.baseline_scores is not None,
        "domains": dict(sorted(per_domain.items())),
        "duplicate_candidate_ids_within_queries": _duplicates(pair_keys),
        "candidate_ids_in_several_queries": int(np.sum(id_counts > 1)),
    }


ORDER_TEXT = {
    "sequence": "none: each user's events are in the file's order (positions, no times)",
    "row": "none: no timestamp column (row order carries no time)",
}


def interactions_summary(data) -> dict:
    """Counts `mmrank data inspect` prints for interaction data: users, items, events,
    duplicates, time range (only real times: an order without times is said to be one), the
    data's own split, item modalities, and the files of a folder that were not read.

    Args:
        data: ``InteractionData`` from ``load_interaction_data``.
    """
    import pandas as pd

    inter, items = data.interactions, data.items
    users, user_index = pd.factorize(inter.user_ids)
    item_codes, item_index = pd.factorize(inter.item_ids)
    pairs = users.astype(np.int64) * max(len(item_index), 1) + item_codes
    out = {
        "kind": "interactions",
        "users": int(len(user_index)),
        "items": int(len(item_index)),
        "interactions": len(inter),
        "ratings": {} if inter.ratings is None else _histogram(inter.ratings),
        "timestamps": (
            ({"min": float(inter.timestamps.min()), "max": float(inter.timestamps.max())} if len(inter) else {})
            if inter.timed else ORDER_TEXT[inter.order]
        ),
        "duplicate_user_item_pairs": _duplicates(pairs),
    }
    if data.split_labels is not None:
        counts = np.bincount(data.split_labels, minlength=len(PART_NAMES))
        out["own_split"] = {name: int(c) for name, c in zip(PART_NAMES, counts)}
    if items is not None:
        out["item_features"] = {
            k: {"dim": d, "items_with_value": int(items.masks[k].sum()), "items": len(items)}
            for k, d in items.modality_dims.items()
        }
        out["item_titles"] = items.titles is not None
    if data.files_not_read:
        out["files_not_read"] = dict(data.files_not_read)
    return out


def _print_tables(summary: dict) -> None:
    console = Console()
    overview = Table(title=f"{summary['path']} ({summary['format']})", show_header=False)
    nested = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            nested[key] = value
        elif key not in ("path", "format"):
            overview.add_row(key.replace("_", " "), str(value))
    console.print(overview)
    for key, value in nested.items():
        if not value:
            continue
        table = Table(title=key.replace("_", " "))
        table.add_column("name")
        table.add_column("value", justify="right")
        for k, v in value.items():
            table.add_row(str(k), json.dumps(v) if isinstance(v, dict) else str(v))
        console.print(table)


@data_app.command("inspect")
def inspect(
    path: Path = typer.Argument(..., help="data file (or folder for RecBole/MMRec/MovieLens)"),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of tables"),
    option: Optional[List[str]] = typer.Option(None, "--option", help=OPTION_HELP),
) -> None:
    """Counts, label histogram, modality dims, per-domain counts and duplicates of a data set
    (or of an item-feature folder written by `mmrank data item-features` / `data features`).

    Bad records are skipped (and counted); run `mmrank data validate` to see them. Files of a
    folder that no reader takes are listed under "files not read", with the reason.

    Example: mmrank data inspect MQ2008/S1.txt --json
    """
    with user_errors():
        if format is None and _is_item_feature_folder(path):
            _print_summary(item_folder_summary(path), as_json)
            return
        fmt = resolve_format(path, format)
        data, report = _read_any(path, fmt, False, None, _options(option))
        summary = ranking_summary(data) if not is_interaction_format(fmt) else interactions_summary(data)
        summary = {"path": str(path), "format": fmt, **summary, "records": {
            "in": report.records_in, "read": report.records_read, "quarantined": report.records_quarantined}}
        _print_summary(summary, as_json)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, sort_keys=False))
    else:
        _print_tables(summary)


def _is_item_feature_folder(path: Path) -> bool:
    from mmrank.data.item_feature_folder import is_item_feature_folder

    return is_item_feature_folder(path)


def item_folder_summary(path: Path) -> dict:
    """What `mmrank data inspect` prints for an item-feature folder: items, titles, per-modality
    dims and coverage, the encoders, and the folder's files that are not part of it."""
    from mmrank.data.item_feature_folder import describe_item_feature_folder

    return {"path": str(path), "format": "item-feature folder", **describe_item_feature_folder(path)}
