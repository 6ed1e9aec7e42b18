"""`mmrank personalize fit|tune|apply`: per-user preference reweighting (docs/personalisation.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from mmrank.cli.app import app, user_errors
from mmrank.errors import ConfigError

personalize_app = typer.Typer(help="Per-user preference weights over a few item attributes, applied to any reranker's scores.",
                              no_args_is_help=True)
app.add_typer(personalize_app, name="personalize")
USER_PATTERN_HELP = "Regular expression whose first group is the user id in a query id (default: the part before '@')."


def _spec(items_info: dict, attributes: str):
    from mmrank.personalize.attributes import PRESETS, attribute_spec

    if attributes in PRESETS:
        modality, groups = PRESETS[attributes]
    else:
        try:
            obj = json.loads(Path(attributes).read_text())
            modality, groups = obj["modality"], obj["attributes"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--attributes {attributes!r}: not a preset ({', '.join(PRESETS)}) nor a JSON file "
                              f'{{"modality": ..., "attributes": {{name: [columns]}}}} ({e})') from None
    names = items_info.get("feature_names", {}).get(modality)
    if names is None:
        raise ConfigError(f"the items do not name the columns of {modality!r} — rebuild them with `mmrank data features`")
    return attribute_spec(modality, groups, names)


@personalize_app.command("fit")
def fit(
    items: Path = typer.Option(..., "--items", help="Item features folder (OUT of `mmrank data features`)."),
    interactions: Path = typer.Option(..., "--interactions", help="Interaction data (RecBole folder or .inter file, MovieLens, MMRec)."),
    out: Path = typer.Option(..., "--out", help="Profiles file to write (JSON)."),
    attributes: str = typer.Option("ml100k-genres", "--attributes", help="Preset (ml100k-genres) or a JSON file {modality, attributes: {name: [column names]}}."),
    before: Optional[float] = typer.Option(None, "--before", help="Learn only from interactions before this timestamp (default: all)."),
    alpha: float = typer.Option(10.0, "--alpha", help="Shrinkage: pseudo-items at the population rate."),
) -> None:
    """Learn each user's preference weights over the attributes from the items they rated.

    Example: mmrank personalize fit --items out/ml100k --interactions ../shared/data/ml-100k --out profiles.json
    """
    import numpy as np

    from mmrank.data.formats import read_interactions
    from mmrank.data.ml100k_items import load_item_features
    from mmrank.personalize.history import profiles_before

    with user_errors():
        features, info = load_item_features(items)
        spec = _spec(info, attributes)
        inter, _, _ = read_interactions(interactions)
        cut = np.inf if before is None else float(before)
        users = sorted(set(inter.user_ids[inter.timestamps < cut].tolist()))
        profiles = profiles_before(inter, features, spec, {u: (u, cut) for u in users}, alpha)
        profiles.save(out)
    Console(soft_wrap=True).print(f"{len(profiles.weights)} user profiles over {', '.join(spec.names)} "
                                  f"(population rate {', '.join(f'{p:.2f}' for p in profiles.population_rate)}) → {out}",
                                  highlight=False)


@personalize_app.command("tune")
def tune(
    profiles_path: Path = typer.Option(..., "--profiles", help="Profiles from `mmrank personalize fit` (fitted before these queries' period)."),
    scored: Path = typer.Option(..., "--in", help="Labelled validation queries scored by the reranker (`mmrank rerank` output)."),
    user_pattern: str = typer.Option(r"^([^@]+)", "--user-pattern", help=USER_PATTERN_HELP),
) -> None:
    """Choose the reweighting strength beta on labelled validation queries (nDCG@10) and store it in the profiles.

    Example: mmrank personalize tune --profiles profiles.json --in valid_reranked.jsonl
    """
    import re

    from mmrank.data.io_jsonl import read_jsonl
    from mmrank.personalize.profiles import PreferenceProfiles
    from mmrank.personalize.reweight import tune_beta
    from mmrank.personalize.scored_file import user_of

    with user_errors():
        profiles = PreferenceProfiles.load(profiles_path)
        rset, scores = _scored_set(scored, read_jsonl)
        pattern = re.compile(user_pattern)
        weights = profiles.weights_for([user_of(str(q), pattern) for q in rset.query_ids])
        beta, table = tune_beta(rset.labels, scores, rset.offsets, profiles.spec.matrix(rset.features[profiles.spec.modality]), weights)
        profiles.beta = beta
        profiles.save(profiles_path)
    console = Console(soft_wrap=True)
    console.print("validation nDCG@10 by beta: " + ", ".join(f"{b:g}: {v:.4f}" for b, v in table.items()), highlight=False)
    console.print(f"beta {beta:g} stored in {profiles_path}" + (" (0: personalisation does not help here, it stays off)" if beta == 0 else ""),
                  highlight=False)


def _scored_set(path: Path, read_jsonl):
    """The labelled queries of a scored JSONL file and the reranker's score of every candidate."""
    import json as _json

    import numpy as np

    from mmrank.errors import DataError

    rset, report = read_jsonl(path, strict=True)
    scores = []
    for line in path.read_text().splitlines():
        if line.strip():
            scores += [c.get("score") for c in _json.loads(line)["candidates"]]
    if any(s is None for s in scores):
        raise DataError("some candidates have no score", path=path, hint="score every candidate (rerank without --top-m)")
    return rset, np.asarray(scores, dtype=np.float64)


@personalize_app.command("apply")
def apply(
    profiles_path: Path = typer.Option(..., "--profiles", help="Profiles from `mmrank personalize fit` (and tune)."),
    scored: Path = typer.Option(..., "--in", help="Queries scored by a reranker (`mmrank rerank` output, JSONL)."),
    out: Path = typer.Option(..., "--out", help="Personalised JSONL to write (atomically)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="Reweighting strength (default: the one `tune` stored)."),
    user_pattern: str = typer.Option(r"^([^@]+)", "--user-pattern", help=USER_PATTERN_HELP),
) -> None:
    """Reorder each query's candidates by z(score) + beta x (the user's mean weight over the candidate's attributes).

    Example: mmrank personalize apply --profiles profiles.json --in reranked.jsonl --out personalised.jsonl
    """
    from mmrank.personalize.profiles import PreferenceProfiles
    from mmrank.personalize.scored_file import personalise_file

    with user_errors():
        profiles = PreferenceProfiles.load(profiles_path)
        counts = personalise_file(profiles, scored, out, beta=beta, user_pattern=user_pattern)
    Console(soft_wrap=True).print(f"{counts['queries']} queries ({counts['with_profile']} users with a profile), "
                                  f"{counts['reordered']} reordered at beta {counts['beta']:g} → {out}", highlight=False)
