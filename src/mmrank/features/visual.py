"""Handcrafted visual features of an image, computed with Pillow and scikit-image.

Pixels are RGB floats in [0, 1]. One vector per image, in this order (``visual_feature_names``):

* ``brightness``: mean luma (ITU-R BT.601 weights, what Pillow's "L" mode uses);
* ``contrast``: standard deviation of luma (RMS contrast);
* ``saturation``: mean HSV saturation;
* ``hue_variance``: circular variance of hue, each pixel weighted by its saturation, so grey
  pixels (whose hue is meaningless) do not count; 0 when the image has no colour at all;
* ``edge_density``: fraction of pixels on a Canny edge of the luma (sigma 1);
* ``aspect_ratio``: width / height of the original image;
* ``colourfulness``: Hasler & Süsstrunk (2003), ``sigma_rgyb + 0.3 * mu_rgyb`` with
  ``rg = R - G`` and ``yb = (R + G) / 2 - B`` (on the [0, 1] scale, i.e. the paper's value / 255);
* an HSV histogram: ``bins = (h, s, v)`` bins per channel over [0, 1], each channel's counts
  divided by the pixel count (so each channel's part sums to 1).

Images larger than ``max_side`` pixels are first shrunk (keeping their shape) so that a huge
file costs no more than a poster; the aspect ratio comes from the original size.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmrank.features.cache import CachedResult, FeatureCache, cached_compute

BASE_FEATURES = ("brightness", "contrast", "saturation", "hue_variance", "edge_density",
                 "aspect_ratio", "colourfulness")
DEFAULT_HSV_BINS = (8, 4, 4)
# Bump when a formula above changes (invalidates cached vectors).
VISUAL_FEATURES_VERSION = "1"


class ImageReadError(Exception):
    """The bytes are not a readable image (the message is the reason for the report)."""


def visual_feature_names(hsv_bins: Sequence[int] = DEFAULT_HSV_BINS) -> list[str]:
    """Name each entry of the visual feature vector, in vector order.

    Args:
        hsv_bins: histogram bins for hue, saturation and value.

    Returns:
        The 7 base names (``BASE_FEATURES``), then ``hsv_h0 ..``, ``hsv_s0 ..``, ``hsv_v0 ..``;
        ``7 + sum(hsv_bins)`` names (23 with the default ``(8, 4, 4)``).

    Example:
        >>> visual_feature_names((2, 1, 1))[-4:]
        ['hsv_h0', 'hsv_h1', 'hsv_s0', 'hsv_v0']
    """
    names = list(BASE_FEATURES)
    for channel, n in zip("hsv", hsv_bins):
        names += [f"hsv_{channel}{i}" for i in range(int(n))]
    return names


def load_image(data: bytes) -> Image.Image:
    """Decode fully (so truncation shows now, not later) into RGB, or ``ImageReadError``."""
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except UnidentifiedImageError:
        raise ImageReadError("not an image in a format Pillow knows") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"image too large to decode safely ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        # Pillow reports truncated and corrupt streams as OSError ("image file is truncated").
        raise ImageReadError(f"corrupt or truncated image ({e})") from None
    if img.width == 0 or img.height == 0:
        raise ImageReadError("image has no pixels")
    return img.convert("RGB")


def image_features(img: Image.Image, hsv_bins: Sequence[int] = DEFAULT_HSV_BINS, max_side: int = 256) -> np.ndarray:
    """The feature vector of one RGB image (see the module docstring for each entry)."""
    from skimage.color import rgb2hsv
    from skimage.feature import canny

    aspect = img.width / img.height
    if max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    rgb = np.asarray(img, dtype=np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    hsv = rgb2hsv(rgb)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]

    weight = sat.sum()
    if weight > 1e-12:
        resultant = np.abs((sat * np.exp(2j * np.pi * hue)).sum()) / weight
        hue_variance = float(1.0 - resultant)
    else:
        hue_variance = 0.0
    # Canny needs 3x3 neighbourhoods; a 1- or 2-pixel-wide image has no measurable edges.
    edges = canny(luma, sigma=1.0) if min(luma.shape) >= 3 else np.zeros_like(luma, dtype=bool)
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())

    hist = []
    n_pix = luma.size
    for channel, n in zip((hue, sat, val), hsv_bins):
        counts, _ = np.histogram(channel, bins=int(n), range=(0.0, 1.0))
        hist.append(counts / n_pix)
    base = [luma.mean(), luma.std(), sat.mean(), hue_variance, edges.mean(), aspect, colourfulness]
    return np.concatenate([np.asarray(base, dtype=np.float64), *hist]).astype(np.float32)


class VisualEncoder:
    """Handcrafted visual features of image files, cached by the files' bytes."""

    def __init__(self, hsv_bins: Sequence[int] = DEFAULT_HSV_BINS, max_side: int = 256) -> None:
        self.hsv_bins = tuple(int(b) for b in hsv_bins)
        if len(self.hsv_bins) != 3 or min(self.hsv_bins) < 1:
            from mmrank.errors import ConfigError

            raise ConfigError(f"hsv_bins must be three positive integers (h, s, v), got {hsv_bins!r}")
        self.max_side = int(max_side)
        self.feature_names = visual_feature_names(self.hsv_bins)
        self.dim = len(self.feature_names)
        bins = ",".join(map(str, self.hsv_bins))
        self.encoder_id = f"visual-handcrafted:bins={bins}:max_side={self.max_side}"

    def encode_files(
        self,
        paths: Sequence[str | Path | None],
        cache: FeatureCache | None = None,
        on_item: Callable[[int], None] | None = None,
    ) -> CachedResult:
        """Features of each file; ``None`` or absent paths are ``missing``, unreadable ones ``failed``."""
        contents, reasons = read_image_files(paths)

        def compute(todo: list[bytes]) -> tuple[list, dict]:
            images, failures = decode_images(todo)
            vectors: list[np.ndarray | None] = []
            for img in images:
                vectors.append(None if img is None else image_features(img, self.hsv_bins, self.max_side))
                if on_item is not None:
                    on_item(1)
            return vectors, failures

        result = cached_compute(contents, compute, self.dim, cache, reasons)
        # A file that could not even be read is a failure (the input exists), not a missing one.
        for row, reason in unreadable_rows(paths, reasons).items():
            result.problems[row] = ("failed", reason)
        return result

    def cache_for(self, root: str | Path) -> FeatureCache:
        """Open this encoder's vector cache under ``root``.

        The folder is chosen by ``encoder_id`` (histogram bins, ``max_side``) and
        ``VISUAL_FEATURES_VERSION``, so vectors made with other settings are never reused.

        Args:
            root: cache root, e.g. :func:`mmrank.features.cache.default_cache_dir`.

        Returns:
            A :class:`FeatureCache` to pass to :meth:`encode_files`.

        Example:
            >>> enc = VisualEncoder()  # doctest: +SKIP
            >>> res = enc.encode_files(["posters/1.jpg", None], enc.cache_for("/tmp/c"))  # doctest: +SKIP
            >>> res.matrix.shape, res.mask, res.problems  # doctest: +SKIP
            ((2, 23), array([ True, False]), {1: ('missing', 'no image for this item')})
        """
        return FeatureCache(root, self.encoder_id, VISUAL_FEATURES_VERSION)


def read_image_files(paths: Sequence[str | Path | None]) -> tuple[list[bytes | None], dict[int, str]]:
    """Bytes of each file, or None plus the reason (no path, file not found, unreadable)."""
    contents: list[bytes | None] = []
    reasons: dict[int, str] = {}
    for row, p in enumerate(paths):
        if p is None:
            contents.append(None)
            reasons[row] = "no image for this item"
            continue
        try:
            contents.append(Path(p).read_bytes())
        except FileNotFoundError:
            contents.append(None)
            reasons[row] = "image file not found"
        except OSError as e:
            contents.append(None)
            reasons[row] = f"cannot read file: {e.strerror or e}"
    return contents, reasons


def decode_images(datas: Sequence[bytes]) -> tuple[list[Image.Image | None], dict[int, str]]:
    """Decoded RGB images (None where decoding failed) and ``{position: reason}`` failures."""
    images: list[Image.Image | None] = []
    failures: dict[int, str] = {}
    for pos, data in enumerate(datas):
        try:
            images.append(load_image(data))
        except ImageReadError as e:
            images.append(None)
            failures[pos] = str(e)
    return images, failures


def unreadable_rows(paths: Sequence, reasons: dict[int, str]) -> dict[int, str]:
    """Pick the rows whose file exists but could not be read (permissions, I/O error).

    :func:`read_image_files` gives those rows no content, so :func:`cached_compute` would call them
    ``missing``; :meth:`VisualEncoder.encode_files` uses this to relabel them ``failed``, since the
    input is there and someone should look at it.

    Args:
        paths: the image paths (unused; kept for symmetry with :func:`read_image_files`).
        reasons: ``{row: reason}`` from :func:`read_image_files`.

    Returns:
        ``{row: reason}`` for reasons starting with ``"cannot read file"``.
    """
    return {row: r for row, r in reasons.items() if r.startswith("cannot read file")}


def encode_image_files_with(
    encode_images: Callable[[list], np.ndarray],
    dim: int,
    paths: Sequence[str | Path | None],
    cache: FeatureCache | None = None,
    chunk: int = 64,
) -> CachedResult:
    """Vectors of image files through ``cache``, decoding and encoding ``chunk`` images at a time.

    Shared by any image encoder: ``encode_images(list of RGB PIL images) -> (n, dim)``. Decoding in
    chunks bounds memory to ``chunk`` decoded images, whatever the number of files.

    Args:
        encode_images: the encoder's batch function.
        dim: its vector size.
        paths: one path (or None) per row.
        cache: the encoder's cache, or None.
        chunk: images decoded at once.

    Returns:
        A :class:`CachedResult`: ``None`` paths and absent files are ``missing``; files that cannot be
        read or decoded (e.g. a truncated JPEG) are ``failed`` with the reason; both are zero rows.
    """
    contents, reasons = read_image_files(paths)

    def compute(todo: list[bytes]) -> tuple[list, dict]:
        vectors: list[np.ndarray | None] = [None] * len(todo)
        failures: dict[int, str] = {}
        for start in range(0, len(todo), chunk):
            images, bad = decode_images(todo[start:start + chunk])
            failures.update({start + pos: reason for pos, reason in bad.items()})
            good = [i for i, img in enumerate(images) if img is not None]
            if good:
                for i, vec in zip(good, encode_images([images[i] for i in good])):
                    vectors[start + i] = vec
        return vectors, failures

    result = cached_compute(contents, compute, dim, cache, reasons)
    # A file that exists but could not be read is a failure to look at, not a missing input.
    for row, reason in unreadable_rows(paths, reasons).items():
        result.problems[row] = ("failed", reason)
    return result
