"""Item modalities from raw content, for ``mmrank data item-features``: texts through the
sentence-transformers encoder (``features/text.py``), images through EfficientNet
(``features/efficientnet.py``) or the handcrafted colour/texture features (``features/visual.py``).

The item table (CSV / Parquet / JSON lines) names the items (an id column) and holds the text
columns (joined as ``"<col1>. <col2>"``, blanks skipped) and optionally an image-path column
(relative paths are taken from the table's folder); an image folder holding ``<item id>.<ext>``
files is the other way to give images. Items without text or image are masked (zero row, mask
False), never silently given a made-up vector; the returned counts say how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from mmrank.data.item_feature_folder import Modality
from mmrank.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
IMAGE_ENCODERS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "handcrafted")
Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def joined_texts(columns: list[np.ndarray]) -> list[str | None]:
    """One text per row: the non-blank values of ``columns`` joined by ``". "``; None when all are blank."""
    out: list[str | None] = []
    for values in zip(*columns):
        parts = [str(v).strip() for v in values if v is not None and v == v and str(v).strip()]
        out.append(". ".join(parts) if parts else None)
    return out


def text_modality(name: str, item_ids: np.ndarray, texts: list[str | None], *, model: str | None = None,
                  batch_size: int = 64, cache_dir: Path | None = None, progress: Progress = _no_progress) -> Modality:
    """Sentence embeddings of ``texts`` (None: the item has no text → masked row)."""
    from mmrank.features.text import TextEncoder

    encoder = TextEncoder(model, batch_size=batch_size)
    cache = encoder.cache_for(cache_dir) if cache_dir else None
    result = encoder.encode_cached(texts, cache, on_batch=progress(f"{name} ({encoder.model_name})", len(texts)))
    return Modality(name, item_ids, result.matrix, f"text columns via {encoder.encoder_id}", result.mask,
                    encoder.encoder_id)


def image_paths_from_folder(item_ids: np.ndarray, folder: str | Path) -> list[Path | None]:
    """``<folder>/<item id>.<ext>`` for each item (the first extension of ``IMAGE_EXTENSIONS`` found), None when absent."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a folder — pass the folder holding <item id>.jpg files")
    by_stem: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(p.stem, p)
    return [by_stem.get(str(i)) for i in item_ids]


def image_modality(name: str, item_ids: np.ndarray, paths: list[Path | None], *, encoder: str = "efficientnet-lite0",
                   cache_dir: Path | None = None, progress: Progress = _no_progress) -> Modality:
    """Image features of ``paths`` (None or unreadable: masked row) with ``encoder``."""
    if encoder not in IMAGE_ENCODERS:
        raise ConfigError(f"--image-encoder {encoder!r} — use one of {', '.join(IMAGE_ENCODERS)}")
    tick = progress(f"{name} ({encoder})", len(paths))
    if encoder == "handcrafted":
        from mmrank.features.visual import VisualEncoder

        enc = VisualEncoder()
        result = enc.encode_files(paths, enc.cache_for(cache_dir) if cache_dir else None, on_item=tick)
    else:
        from mmrank.features.efficientnet import EfficientNetEncoder

        enc = EfficientNetEncoder(encoder)
        result = enc.encode_image_files(paths, enc.image_cache(cache_dir) if cache_dir else None, on_batch=tick)
    return Modality(name, item_ids, result.matrix, f"images via {enc.encoder_id}", result.mask, enc.encoder_id)
