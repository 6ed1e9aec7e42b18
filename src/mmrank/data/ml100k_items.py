"""ML-100K item modalities: ``text`` (MiniLM), ``image`` (poster visual features), ``meta``.

Inputs (read-only): ``DIR/ml-100k-mm/items_tmdb.csv`` (one row per movie; the file repeats some
ids — the first row of an id wins) and ``DIR/ml-100k-mm/posters/<movie_id>.jpg``.

* ``text``: the sentence embedding of ``"<title>. Genres: <g1>, <g2>. <overview>"`` (title as
  in the file, with its year in brackets; genres are the flag columns set to 1, in file column
  order; the overview and its leading space are left out when the overview is empty). This
  rebuilds the reference texts of ``text_feat_minilm_l6.index.tsv`` exactly.
* ``image``: ``mmrank.features.visual`` features of the poster; items without a poster (19) or
  with an unreadable one have mask False and a zero row, and are listed in the features report.
* ``meta``: 19 genre flags (0/1); ``year`` standardised (z-score over items with a year);
  ``runtime`` as log(minutes) standardised; ``vote_average`` standardised; a 0/1 ``*_missing``
  flag for each of those three (the value itself is then 0, the mean); ``overview_missing`` and
  ``poster_missing`` flags. The statistics are over item metadata only (no interactions), so
  they cannot leak anything from a test period; they are stored in the JSON metadata.

Written as an item-feature folder (``mmrank.data.item_feature_folder``: ``items.safetensors`` with
one float32 matrix per modality and ``mask.<modality>`` uint8, plus ``items.json`` with item ids,
titles, feature names, encoder ids, missing ids, meta scaling).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mmrank.data.item_feature_folder import load_item_features, save_item_features  # noqa: F401  (the folder's writer/reader)
from mmrank.data.model import ItemFeatures
from mmrank.errors import DataError

GENRES = ("genre_unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "FilmNoir", "Horror", "Musical", "Mystery", "Romance",
          "SciFi", "Thriller", "War", "Western")
META_NUMERIC = ("year", "runtime", "vote_average")
META_NAMES = (list(GENRES) + [f"{c}{s}" for c in META_NUMERIC for s in ("", "_missing")]
              + ["overview_missing", "poster_missing"])
ITEMS_FILE = "items_tmdb.csv"

# progress(label, total) -> advance(n): how long-running steps report progress (CLI: rich bars).
Progress = Callable[[str, int], Callable[[int], None]]


def no_progress(label: str, total: int) -> Callable[[int], None]:
    """The silent ``Progress``: ignore the step's label and size, return an advance that does nothing.

    The default for library and test callers; the CLI passes a rich progress bar instead.

    Args:
        label: what the step is doing (unused).
        total: how many units the step has (unused).

    Returns:
        ``advance(n)``, a no-op.
    """
    return lambda n: None


def read_items_table(mm_dir: str | Path) -> tuple[pd.DataFrame, int]:
    """The item table indexed by ``movie_id`` (first row per id) and how many repeats were dropped."""
    path = Path(mm_dir) / ITEMS_FILE
    if not path.is_file():
        raise DataError("item table not found", path=path,
                        hint="pass --data-dir pointing at the folder that holds ml-100k-mm/")
    try:
        table = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"cannot parse the item table ({e})", path=path, hint="restore the original file") from None
    needed = {"movie_id", "title", "overview", *GENRES, *META_NUMERIC}
    if missing := sorted(needed - set(table.columns)):
        raise DataError(f"item table lacks columns {missing}", path=path, hint="restore the original file")
    repeats = int(table["movie_id"].duplicated().sum())
    table = table.drop_duplicates("movie_id", keep="first").sort_values("movie_id").set_index("movie_id")
    return table, repeats


def overview_of(value) -> str:
    """Return an item's overview text, or ``""`` when it is missing or blank.

    pandas reads an empty CSV cell as ``NaN`` (a float), so a plain truthiness test is not enough.

    Args:
        value: the ``overview`` cell.

    Returns:
        The overview unchanged (not stripped), or ``""``.
    """
    return value if isinstance(value, str) and value.strip() else ""


def item_text(title: str, genre_flags, overview: str) -> str:
    """``"<title>. Genres: a, b. <overview>"`` (see the module docstring)."""
    genres = ", ".join(g for g, flag in zip(GENRES, genre_flags) if flag == 1)
    text = f"{title}. Genres: {genres}."
    return f"{text} {overview}" if overview else text


def item_texts(table: pd.DataFrame) -> list[str]:
    """Build the text each item is embedded from, in table order (see :func:`item_text`).

    Args:
        table: the item table from :func:`read_items_table`.

    Returns:
        One ``"<title>. Genres: a, b. <overview>"`` string per row.
    """
    flags = table[list(GENRES)].to_numpy()
    return [item_text(str(t), f, overview_of(o)) for t, f, o in zip(table["title"], flags, table["overview"])]


def meta_features(table: pd.DataFrame, poster_missing: np.ndarray) -> tuple[np.ndarray, dict]:
    """``(n_items, len(META_NAMES))`` float32 and the scaling used (mean/std per numeric column)."""
    cols = [table[list(GENRES)].to_numpy(dtype=np.float64)]
    scaling = {}
    for name in META_NUMERIC:
        raw = table[name].to_numpy(dtype=np.float64)
        known = np.isfinite(raw) & (raw > 0)  # runtime 0 / vote 0 in TMDB mean "not known"
        if name == "vote_average" and "vote_count" in table:
            known &= table["vote_count"].fillna(0).to_numpy() > 0
        values = np.log(np.where(known, raw, 1.0)) if name == "runtime" else raw
        mean, std = float(values[known].mean()), float(values[known].std()) or 1.0
        cols += [np.where(known, (values - mean) / std, 0.0)[:, None], (~known).astype(np.float64)[:, None]]
        scaling[name] = {"transform": "log" if name == "runtime" else "identity", "mean": mean, "std": std,
                         "missing": int((~known).sum())}
    overview_missing = np.array([not overview_of(o) for o in table["overview"]], dtype=np.float64)
    cols += [overview_missing[:, None], poster_missing.astype(np.float64)[:, None]]
    return np.concatenate(cols, axis=1).astype(np.float32), scaling


def build_item_features(
    data_dir: str | Path,
    text_encoder,
    visual_encoder,
    report,
    cache_dir: str | Path | None = None,
    progress: Progress = no_progress,
    clip_encoder=None,
    image_encoder=None,
) -> tuple[ItemFeatures, dict]:
    """ItemFeatures (``text``, ``image``, ``meta``; plus ``image_effnet`` when a pretrained
    ``image_encoder`` is given, and ``clip_image`` and ``clip_text`` when a ``clip_encoder`` is
    given) of all ML-100K movies and their JSON metadata. ``image`` stays the handcrafted poster
    statistics; ``image_effnet`` is the pooled 1280-d ImageNet EfficientNet representation.

    The encoders (``mmrank.features.text.TextEncoder``, ``mmrank.features.visual.VisualEncoder``,
    ``mmrank.features.efficientnet.EfficientNetEncoder``, ``mmrank.features.clip.ClipEncoder``) and the ``FeaturesReport`` are passed in, so that this
    data module does not import the features layer above it. ``report`` receives every item's
    outcome per modality."""
    mm_dir = Path(data_dir) / "ml-100k-mm"
    table, repeats = read_items_table(mm_dir)
    item_ids = [str(i) for i in table.index]
    texts = item_texts(table)
    for iid, o in zip(item_ids, table["overview"]):
        if not overview_of(o):
            report.warn("text", iid, "empty overview: text built from title and genres only",
                        path=str(mm_dir / ITEMS_FILE))
    posters = [mm_dir / "posters" / f"{iid}.jpg" for iid in item_ids]

    def cache(make):
        return make(cache_dir) if cache_dir else None

    def encode(name: str, label: str, run, paths=None):
        t0 = time.perf_counter()
        result = run(progress(label, len(item_ids)))
        report.timings_s[name] = time.perf_counter() - t0
        report.record_mask(name, item_ids, result.mask, result.problems, paths=paths)
        counts = report.modality(name)
        counts.cache_hits += result.cache_hits
        counts.computed += result.computed
        return result

    text = encode("text", "text (MiniLM)",
                  lambda tick: text_encoder.encode_cached(texts, cache(text_encoder.cache_for), on_batch=tick))
    image = encode("image", "posters (visual)",
                   lambda tick: visual_encoder.encode_files(posters, cache(visual_encoder.cache_for), on_item=tick),
                   paths=posters)
    results = {"text": text, "image": image}
    encoders = {"text": text_encoder.encoder_id, "image": visual_encoder.encoder_id, "meta": "ml100k-meta-v1"}
    if image_encoder is not None:
        results["image_effnet"] = encode(
            "image_effnet", f"posters ({image_encoder.model_name})",
            lambda tick: image_encoder.encode_image_files(posters, cache(image_encoder.image_cache), on_batch=tick),
            paths=posters)
        encoders["image_effnet"] = image_encoder.encoder_id
        # which forward computed the new vectors (None: every vector came from the cache)
        encoders["image_effnet_backend"] = getattr(image_encoder, "backend_used", None)
    if clip_encoder is not None:
        results["clip_image"] = encode(
            "clip_image", "posters (CLIP)",
            lambda tick: clip_encoder.encode_image_files(posters, cache(clip_encoder.image_cache), on_batch=tick),
            paths=posters)
        results["clip_text"] = encode(
            "clip_text", "text (CLIP)",
            lambda tick: clip_encoder.encode_texts_cached(texts, cache(clip_encoder.text_cache), on_batch=tick))
        encoders["clip_image"] = encoders["clip_text"] = clip_encoder.encoder_id

    meta, scaling = meta_features(table, ~image.mask)
    report.record_mask("meta", item_ids, np.ones(len(item_ids), dtype=bool), {})
    features = {name: r.matrix for name, r in results.items()}
    features["meta"] = meta
    items = ItemFeatures(
        item_ids=item_ids,
        features=features,
        masks={name: r.mask for name, r in results.items()},
        titles=[str(t) for t in table["title"]],
    )
    info = {
        "dataset": "ml100k",
        "source": str(mm_dir / ITEMS_FILE),
        "repeated_ids_dropped": repeats,
        "feature_names": {"image": visual_encoder.feature_names, "meta": list(META_NAMES)},
        "encoders": encoders,
        "meta_scaling": scaling,
        "text_template": "<title>. Genres: <g1>, <g2>. <overview>",
    }
    return items, info
