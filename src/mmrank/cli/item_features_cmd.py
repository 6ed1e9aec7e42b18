"""`mmrank data item-features`: build the item-feature folder the multimodal recommender reads,
from any data: per-modality matrices (.npy / Parquet / CSV with an id mapping, MMRec's
``*_feat.npy``) and raw text or images through the encoders."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from mmrank.cli.app import data_app, user_errors
from mmrank.errors import ConfigError


def _named(spec: str, flag: str) -> tuple[str, Path]:
    name, eq, path = spec.partition("=")
    if not eq or not name.strip() or not path.strip():
        raise ConfigError(f"{flag} {spec!r}: expected NAME=FILE, e.g. {flag} text=text_feat.npy")
    return name.strip(), Path(path.strip())


def _matrix_modalities(specs: list[str], ids_file: Path | None):
    from mmrank.data.item_feature_folder import npy_modality, read_row_ids, table_modality

    ids = None if ids_file is None else read_row_ids(ids_file)
    out = []
    for spec in specs:
        name, path = _named(spec, "--modality")
        out.append(npy_modality(name, path, ids) if path.suffix.lower() == ".npy" else table_modality(name, path))
    return out


def _content_modalities(items: Path, id_column: str | None, text_columns: list[str], image_column: str | None,
                        images: Path | None, options: dict, progress) -> tuple[list, dict | None]:
    """Modalities encoded from the item table's text / images, and its titles (when asked)."""
    from mmrank.data.interaction_table import ITEM_NAMES
    from mmrank.data.item_feature_folder import read_item_table, table_column
    from mmrank.features.item_encoding import image_modality, image_paths_from_folder, joined_texts, text_modality

    df = read_item_table(items)
    ids = np.array([str(i) for i in table_column(df, id_column, ITEM_NAMES + ("id",), items, "id")], dtype=object)
    out = []
    if text_columns:
        texts = joined_texts([table_column(df, c, (c.lower(),), items, "text") for c in text_columns])
        out.append(text_modality(options["text_name"], ids, texts, model=options["text_model"],
                                 batch_size=options["batch_size"], cache_dir=options["cache"], progress=progress))
    if image_column or images:
        if image_column:
            raw = table_column(df, image_column, (image_column.lower(),), items, "image")
            paths = [None if not str(p).strip() or p != p else (items.parent / str(p)) for p in raw]
        else:
            paths = image_paths_from_folder(ids, images)
        out.append(image_modality(options["image_name"], ids, paths, encoder=options["image_encoder"],
                                  cache_dir=options["cache"], progress=progress))
    return out, ids


@data_app.command("item-features")
def item_features(
    out: Path = typer.Argument(..., help="folder to write (items.safetensors + items.json)"),
    modality: Optional[List[str]] = typer.Option(None, "--modality", "-m", help="NAME=FILE: a .npy matrix (row r = item of "
                                                 "--ids row r, default item r) or a Parquet/CSV table (item-id column + a "
                                                 "list column or numeric columns); repeatable"),
    ids: Optional[Path] = typer.Option(None, "--ids", help="item ids of the .npy rows: one per line, or a mapping such as "
                                       "MMRec's i_id_mapping.csv (raw id + itemID row)"),
    mmrec: Optional[Path] = typer.Option(None, "--mmrec", help="an MMRec folder: every <modality>_feat.npy (with its "
                                         "i_id_mapping.csv when present)"),
    items: Optional[Path] = typer.Option(None, "--items", help="item table (CSV/Parquet/JSONL) for --text-column, "
                                         "--image-column, --images, --title-column"),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="item-id column of --items (default: item_id, itemID, asin, id)"),
    text_column: Optional[List[str]] = typer.Option(None, "--text-column", help="text column(s) of --items to embed, joined "
                                                    "with '. ' (repeatable)"),
    text_name: str = typer.Option("text", "--text-name", help="modality name of the embedded text"),
    text_model: Optional[str] = typer.Option(None, "--text-model", help="local sentence-transformers folder (default: bundled all-MiniLM-L6-v2)"),
    image_column: Optional[str] = typer.Option(None, "--image-column", help="image-path column of --items (relative to its folder)"),
    images: Optional[Path] = typer.Option(None, "--images", help="folder of <item id>.jpg/.png images"),
    image_name: str = typer.Option("image", "--image-name", help="modality name of the encoded images"),
    image_encoder: str = typer.Option("efficientnet-lite0", "--image-encoder", help="efficientnet-lite0 (1280-d, pretrained) "
                                      "or handcrafted (colour/texture statistics)"),
    title_column: Optional[str] = typer.Option(None, "--title-column", help="title column of --items (shown by mmrank recommend)"),
    data: Optional[Path] = typer.Option(None, "--data", help="interaction data whose items the folder should cover: "
                                        "prints the coverage, and fails when no item matches (ids differ)"),
    data_format: Optional[str] = typer.Option(None, "--data-format", help="format of --data (default: detected)"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="encoder cache folder (default $MMRANK_CACHE_DIR or ~/.cache/mmrank/features)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="encode everything, read and write no cache"),
    batch_size: int = typer.Option(64, "--batch-size", help="texts per encoder batch"),
) -> None:
    """Build an item-feature folder (data.item_features of a sasrec_moe config) from any data.

    Sources (any mix; modalities are merged over their item ids, an item a modality lacks gets
    a masked zero row): .npy matrices with an id mapping (--modality, --ids), an MMRec folder
    (--mmrec: text_feat.npy, image_feat.npy, audio_feat.npy, ...), Parquet/CSV matrices, and raw
    text (--text-column) or images (--image-column / --images) of an item table, encoded with
    MiniLM / EfficientNet. docs/data_formats.md#item-feature-folders.

    Examples:
      mmrank data item-features feats/ --mmrec data/tiktok --data data/tiktok
      mmrank data item-features feats/ -m text=text.npy -m image=img.npy --ids item_ids.txt
      mmrank data item-features feats/ --items items.csv --text-column title --text-column description --images posters/ --title-column title
    """
    from mmrank.data.item_feature_folder import ItemFolderSpec, build_item_feature_folder, mmrec_modalities, read_titles
    from mmrank.features.cache import default_cache_dir

    from mmrank.cli.features_cmds import _progress_bars

    with user_errors():
        if (text_column or image_column or images or title_column) and items is None:
            raise ConfigError("--text-column / --image-column / --images / --title-column need --items TABLE "
                              "(its id column names the items): pass it")
        mods = _matrix_modalities(list(modality or []), ids)
        if mmrec is not None:
            mods += mmrec_modalities(mmrec)
        options = {"text_name": text_name, "text_model": text_model, "batch_size": batch_size,
                   "image_name": image_name, "image_encoder": image_encoder,
                   "cache": None if no_cache else (cache or default_cache_dir())}
        if items is not None and (text_column or image_column or images):
            with _progress_bars(Console(stderr=True)) as progress:
                encoded, _ = _content_modalities(items, id_column, list(text_column or []), image_column, images,
                                                 options, progress)
            mods += encoded
        titles = read_titles(items, id_column, title_column) if title_column else None
        spec = ItemFolderSpec(mods, titles, {"built_by": "mmrank data item-features"})
        built, _ = build_item_feature_folder(spec, out)
        _print_folder(built, mods, out, data, data_format)


def _print_folder(built, mods, out: Path, data: Path | None, data_format: str | None) -> None:
    console = Console()
    table = Table(title=f"item features → {out}")
    for col in ("modality", "dim", "items with a value", "of items", "source"):
        table.add_column(col, justify="left" if col in ("modality", "source") else "right")
    for m in mods:
        table.add_row(m.name, str(m.matrix.shape[1]), str(int(built.masks[m.name].sum())), str(len(built)), m.source)
    console.print(table)
    if data is not None:
        from mmrank.data.formats import load_interaction_data
        from mmrank.errors import DataError

        inter = load_interaction_data(data, data_format).interactions
        wanted = np.unique(inter.item_ids)
        have = np.isin(wanted, built.item_ids)
        console.print(f"{int(have.sum())} of the {len(wanted)} items of {data} have a row here", highlight=False)
        if not have.any():
            raise DataError(f"no item of {data} has a row in the folder (data ids look like {list(wanted[:3])}, "
                            f"the folder's like {list(built.item_ids[:3])})", path=out,
                            hint="give the rows' item ids with --ids (e.g. MMRec's i_id_mapping.csv)")
    console.print(f"wrote {out}/items.safetensors and items.json ({len(built)} items, titles: "
                  f"{'yes' if built.titles is not None else 'no'})", highlight=False)
