"""Handcrafted visual features: known answers on synthetic images, and bad files in the report."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmrank.features.build_report import FeaturesReport
from mmrank.features.visual import (
    BASE_FEATURES,
    ImageReadError,
    VisualEncoder,
    image_features,
    load_image,
    visual_feature_names,
)

IDX = {name: i for i, name in enumerate(BASE_FEATURES)}


def _jpeg_bytes(img: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _png(tmp_path, name: str, img: Image.Image):
    path = tmp_path / name
    img.save(path, format="PNG")
    return path


def test_pure_grey_has_no_saturation_no_edges_no_colour():
    f = image_features(Image.new("RGB", (40, 60), (128, 128, 128)))
    assert f[IDX["saturation"]] == 0.0
    assert f[IDX["edge_density"]] == 0.0
    assert f[IDX["hue_variance"]] == 0.0
    assert f[IDX["colourfulness"]] == pytest.approx(0.0, abs=1e-7)
    assert f[IDX["contrast"]] == pytest.approx(0.0, abs=1e-7)
    assert f[IDX["brightness"]] == pytest.approx(128 / 255, abs=1e-6)
    assert f[IDX["aspect_ratio"]] == pytest.approx(40 / 60)


def test_half_black_half_white_brightness_contrast_and_edges():
    arr = np.zeros((64, 64, 3), dtype=np.uint8)
    arr[:, 32:] = 255
    f = image_features(Image.fromarray(arr))
    assert f[IDX["brightness"]] == pytest.approx(0.5, abs=1e-6)
    assert f[IDX["contrast"]] == pytest.approx(0.5, abs=1e-6)  # std of a 0/1 half-half image
    assert f[IDX["saturation"]] == 0.0
    # one vertical edge line: Canny marks one or two pixel columns of 64
    assert 1 / 64 - 1e-9 <= f[IDX["edge_density"]] <= 2 / 64 + 1e-9


def test_hue_variance_and_colourfulness_order_by_colour_spread():
    red = image_features(Image.new("RGB", (32, 32), (255, 0, 0)))
    arr = np.zeros((32, 32, 3), dtype=np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 255, 255)  # the opposite hue
    two = image_features(Image.fromarray(arr))
    assert red[IDX["hue_variance"]] == pytest.approx(0.0, abs=1e-6)
    assert two[IDX["hue_variance"]] == pytest.approx(1.0, abs=1e-6)  # opposite hues cancel
    assert red[IDX["saturation"]] == pytest.approx(1.0)
    # Hasler-Suesstrunk for pure red on [0,1]: rg=1, yb=0.5, no spread -> 0.3*sqrt(1.25)
    assert red[IDX["colourfulness"]] == pytest.approx(0.3 * np.sqrt(1.25), abs=1e-6)


def test_hsv_histogram_bins_are_configurable_and_sum_to_one_per_channel():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    f = image_features(img, hsv_bins=(6, 3, 5))
    names = visual_feature_names((6, 3, 5))
    assert len(f) == len(names) == len(BASE_FEATURES) + 14
    hist = f[len(BASE_FEATURES):]
    assert hist[:6].sum() == pytest.approx(1.0, abs=1e-6)
    assert hist[6:9].sum() == pytest.approx(1.0, abs=1e-6)
    assert hist[9:].sum() == pytest.approx(1.0, abs=1e-6)


def test_large_images_are_shrunk_but_keep_their_aspect_ratio():
    big = image_features(Image.new("RGB", (1200, 300), (10, 200, 30)), max_side=128)
    assert big[IDX["aspect_ratio"]] == pytest.approx(4.0)


def test_truncated_jpeg_and_garbage_raise_a_reason():
    data = _jpeg_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 60, 3), dtype=np.uint8)))
    with pytest.raises(ImageReadError, match="truncated"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="not an image"):
        load_image(b"definitely not an image")
    with pytest.raises(ImageReadError, match="empty"):
        load_image(b"")


def test_encode_files_masks_missing_and_failed_files_and_counts_add_up(tmp_path):
    good = _png(tmp_path, "good.png", Image.new("RGB", (10, 20), (200, 10, 10)))
    grey = _png(tmp_path, "grey.png", Image.new("RGB", (10, 10), (90, 90, 90)))
    data = _jpeg_bytes(Image.fromarray(np.random.default_rng(2).integers(0, 256, (50, 50, 3), dtype=np.uint8)))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 3])
    paths = [good, None, tmp_path / "absent.jpg", truncated, grey]
    enc = VisualEncoder()
    result = enc.encode_files(paths)
    assert result.matrix.shape == (5, enc.dim)
    assert result.mask.tolist() == [True, False, False, False, True]
    assert np.all(result.matrix[~result.mask] == 0)
    assert result.problems[1][0] == "missing"
    assert result.problems[2] == ("missing", "image file not found")
    assert result.problems[3][0] == "failed" and "truncated" in result.problems[3][1]

    report = FeaturesReport()
    report.record_mask("image", ["a", "b", "c", "d", "e"], result.mask, result.problems, paths=paths)
    c = report.counts["image"]
    assert (c.items, c.ok, c.missing, c.failed) == (5, 2, 2, 1)
    failed = report.issues_of("image", "failed")
    assert [(i.item_id, i.path) for i in failed] == [("d", str(truncated))]
    assert report.to_dict()["counts"]["image"]["items"] == 5
