"""CLIP image and text embeddings through open_clip, for any architecture and local weights.

``ClipEncoder(model_name, pretrained)``:

* ``model_name``: any open_clip architecture (``open_clip.list_models()``, e.g. ``ViT-B-32``),
  one registered with ``register_model_config`` (a config dict, e.g. a tiny test model), or
  ``local-dir:/path/to/folder`` holding ``open_clip_config.json`` and the weights;
* ``pretrained``: a local checkpoint file (``.safetensors`` / ``.bin`` / ``.pt`` state dict, loaded
  with ``weights_only``), an open_clip tag whose weights are already in the local HF cache, or
  ``None`` for a randomly initialised model (seeded: only for tests and plumbing checks — its
  embeddings carry no meaning).

Nothing is downloaded: ``HF_HUB_OFFLINE=1`` is set before open_clip loads anything. Image
vectors are cached by the image file's bytes, text vectors by the text; the encoder id names the
architecture and the checkpoint's sha256, so vectors of different weights never mix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmrank.errors import ConfigError
from mmrank.features.cache import (
    CachedResult,
    FeatureCache,
    cached_texts,
)
from mmrank.features.visual import encode_image_files_with

# Bump when preprocessing or pooling here changes meaning (invalidates cached vectors).
CLIP_FEATURES_VERSION = "1"


def _open_clip():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import open_clip
    except ImportError:
        raise ConfigError("CLIP features need open_clip — pip install 'mmrank[clip]'") from None
    return open_clip


def register_model_config(name: str, config: dict) -> None:
    """Make ``name`` an open_clip architecture built from ``config`` (``embed_dim``,
    ``vision_cfg``, ``text_cfg`` as in open_clip's ``model_configs/*.json``)."""
    open_clip = _open_clip()
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in config:
            raise ConfigError(f"open_clip config {name!r} lacks {key!r} — see open_clip's model_configs/*.json")
    open_clip.factory._MODEL_CONFIGS[name] = copy.deepcopy(config)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hash a file's full contents with sha256, reading it in chunks.

    Used for checkpoint identity: unlike the text encoder's cheap folder fingerprint, CLIP weights
    are hashed in full, so two checkpoints that differ anywhere get different cache folders.

    Args:
        path: the file.
        chunk: read size in bytes (4 MiB), to bound memory on multi-GB checkpoints.

    Returns:
        The hex digest (64 characters).
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ClipEncoder:
    """open_clip towers: ``encode_image_files`` and ``encode_texts_cached`` give masked, cached vectors."""

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
        normalize: bool = True,
        seed: int = 0,
    ) -> None:
        self.open_clip = _open_clip()
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = device
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.seed = int(seed)
        self._model = self._preprocess = self._tokenizer = None
        self.config = self._config()
        self.dim = int(self.config["embed_dim"])
        self.encoder_id = f"open_clip:{model_name}:{self._weights_id()}:norm={int(self.normalize)}"

    def _config(self) -> dict:
        if self.model_name.startswith("local-dir:"):
            cfg_path = Path(self.model_name[len("local-dir:"):]) / "open_clip_config.json"
            if not cfg_path.is_file():
                raise ConfigError(f"{cfg_path}: not found — a local-dir: model needs open_clip_config.json")
            return json.loads(cfg_path.read_text())["model_cfg"]
        cfg = self.open_clip.get_model_config(self.model_name)
        if cfg is None:
            raise ConfigError(
                f"unknown open_clip model {self.model_name!r} — use one of open_clip.list_models(), "
                "register a config with register_model_config, or pass local-dir:/folder"
            )
        return cfg

    def _weights_id(self) -> str:
        if self.model_name.startswith("local-dir:"):
            folder = Path(self.model_name[len("local-dir:"):])
            files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
            return "sha256=" + hashlib.sha256("".join(file_sha256(p) for p in files).encode()).hexdigest()[:16]
        if self.pretrained is None:
            cfg_hash = hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:12]
            return f"random-init:seed={self.seed}:cfg={cfg_hash}"
        path = Path(self.pretrained)
        if path.is_file():
            return f"sha256={file_sha256(path)[:16]}"
        if os.sep in self.pretrained or self.pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
            raise ConfigError(f"{self.pretrained}: checkpoint file not found — pass an existing local file")
        return f"tag={self.pretrained}"

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch

        # Random init must be reproducible without touching the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            try:
                model, _, preprocess = self.open_clip.create_model_and_transforms(
                    self.model_name, pretrained=self.pretrained, device=self.device
                )
            except (RuntimeError, OSError, ValueError) as e:
                # a state dict of another architecture (RuntimeError), weights not in the local
                # cache while offline (OSError), or an unknown tag (ValueError/RuntimeError)
                raise ConfigError(
                    f"cannot load open_clip {self.model_name!r} with pretrained={self.pretrained!r}: {e} — "
                    "pass a local checkpoint file that matches the architecture"
                ) from None
        model.eval()
        self._model, self._preprocess = model, preprocess
        self._tokenizer = self.open_clip.get_tokenizer(self.model_name)

    def _finish(self, x) -> np.ndarray:
        import torch

        if self.normalize:
            x = torch.nn.functional.normalize(x, dim=-1)
        return x.float().cpu().numpy()

    def encode_images(self, images: Sequence, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """PIL images -> ``(n, dim)`` float32."""
        import torch

        self._load()
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            pixels = torch.stack([self._preprocess(img) for img in batch]).to(self.device)
            with torch.inference_mode():
                out.append(self._finish(self._model.encode_image(pixels)))
            if on_batch is not None:
                on_batch(len(batch))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode_texts(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed texts with the text tower, in batches of ``batch_size``, in input order.

        Texts are tokenised with the architecture's open_clip tokenizer, which cuts them to its context
        length (77 tokens for the standard models). The model is loaded on first use.

        Args:
            texts: the texts.
            on_batch: called with the batch size after each batch (for progress bars).

        Returns:
            (n, dim) float32, L2-normalised when ``normalize`` is set; ``(0, dim)`` for no texts.

        Raises:
            ConfigError: when the model or its weights cannot be loaded.
        """
        import torch

        self._load()
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            tokens = self._tokenizer(batch).to(self.device)
            with torch.inference_mode():
                out.append(self._finish(self._model.encode_text(tokens)))
            if on_batch is not None:
                on_batch(len(batch))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode_image_files(
        self, paths: Sequence[str | Path | None], cache: FeatureCache | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> CachedResult:
        """Image-tower vectors of files; absent files are ``missing``, undecodable ones ``failed``."""
        return encode_image_files_with(lambda images: self.encode_images(images, on_batch), self.dim, paths, cache)

    def encode_texts_cached(
        self, texts: Sequence[str | None], cache: FeatureCache | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> CachedResult:
        """Text-tower vectors of ``texts`` through the cache; ``None`` or blank texts are ``missing``.

        Only the distinct texts not in ``cache`` are encoded.

        Args:
            texts: one text (or None) per row.
            cache: from :meth:`text_cache`, or None to encode everything.
            on_batch: progress callback, see :meth:`encode_texts`.

        Returns:
            A :class:`CachedResult` with ``matrix (n, dim)`` float32 and ``mask (n,)`` bool.

        Example:
            >>> enc = ClipEncoder("ViT-B-32", pretrained="/models/clip_vit_b32.safetensors")  # doctest: +SKIP
            >>> res = enc.encode_texts_cached(["a dog", None], enc.text_cache("/tmp/c"))  # doctest: +SKIP
            >>> res.mask  # doctest: +SKIP
            array([ True, False])
        """
        return cached_texts(texts, lambda todo: self.encode_texts(todo, on_batch), self.dim, cache)

    def image_cache(self, root: str | Path) -> FeatureCache:
        """Open the cache of this encoder's image-tower vectors under ``root``.

        Image and text vectors live in separate folders (``encoder_id`` + ``":image"`` / ``":text"``)
        because both are keyed by content hash and must never be confused.

        Args:
            root: cache root.

        Returns:
            A :class:`FeatureCache` for :meth:`encode_image_files`.
        """
        return FeatureCache(root, self.encoder_id + ":image", CLIP_FEATURES_VERSION)

    def text_cache(self, root: str | Path) -> FeatureCache:
        """Open the cache of this encoder's text-tower vectors under ``root`` (see :meth:`image_cache`).

        Args:
            root: cache root.

        Returns:
            A :class:`FeatureCache` for :meth:`encode_texts_cached`.
        """
        return FeatureCache(root, self.encoder_id + ":text", CLIP_FEATURES_VERSION)
