"""Dedup: a planted exact copy and a resized near-copy are found; distinct images are not."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mmrank.features.dedup import (
    clusters_from_pairs,
    find_duplicates,
    find_image_files,
    near_duplicate_pairs,
)


def _scene(seed: int, size=(96, 128)) -> Image.Image:
    """A structured picture (shapes on a gradient): pHash needs low-frequency content."""
    rng = np.random.default_rng(seed)
    w, h = size
    grad = np.linspace(0, 255, w, dtype=np.float64)[None, :, None] * rng.random(3)[None, None, :]
    img = Image.fromarray(np.repeat(grad, h, axis=0).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        draw.rectangle([x0, y0, x0 + int(rng.integers(10, 40)), y0 + int(rng.integers(10, 50))],
                       fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


@pytest.fixture
def image_folder(tmp_path):
    for i in range(5):
        _scene(i).save(tmp_path / f"img{i}.png")
    (tmp_path / "copy_of_img1.png").write_bytes((tmp_path / "img1.png").read_bytes())  # exact
    _scene(3).resize((48, 64), Image.Resampling.BILINEAR).save(tmp_path / "small_img3.jpg", quality=90)  # near
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return tmp_path


def test_exact_and_perceptual_duplicates_are_found(image_folder):
    files = find_image_files(image_folder)
    names = [p.name for p in files]
    found = find_duplicates(files)
    exact = [[names[i] for i in c] for c in found.clusters["exact"]]
    assert exact == [["copy_of_img1.png", "img1.png"]]
    perceptual = [sorted(names[i] for i in c) for c in found.clusters["perceptual"]]
    assert ["img3.png", "small_img3.jpg"] in perceptual
    assert ["copy_of_img1.png", "img1.png"] in perceptual
    assert len(perceptual) == 2  # the other scenes are distinct
    assert [names[i] for i in found.unreadable] == ["broken.jpg"]
    summary = found.to_dict()
    assert summary["duplicates"] == {"exact": 1, "perceptual": 2}


def test_embedding_duplicates_use_cosine_threshold(image_folder):
    files = find_image_files(image_folder)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(files), 16))
    emb[3] = emb[1] * 2.0 + 0.01 * rng.normal(size=16)  # same direction: cosine ~ 1
    found = find_duplicates(files, emb, cosine=0.95)
    assert found.clusters["embedding"] == [[1, 3]]


def test_near_duplicate_pairs_between_two_sets_and_within_one():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.1], [-1.0, 0.0], [0.0, 0.0]])
    pairs = near_duplicate_pairs(a, b, threshold=0.95)
    assert pairs.tolist() == [[0, 0]]  # the zero row never matches anything
    within = near_duplicate_pairs(np.vstack([a, [[0.99, 0.01]]]), None, threshold=0.95)
    assert within.tolist() == [[0, 3]]
    # blocked computation gives the same answer as one block
    big = np.random.default_rng(1).normal(size=(50, 3))
    assert np.array_equal(near_duplicate_pairs(big, None, 0.9, block=7), near_duplicate_pairs(big, None, 0.9))


def test_clusters_are_connected_components():
    pairs = np.array([[0, 1], [1, 2], [4, 5]])
    assert clusters_from_pairs(7, pairs) == [[0, 1, 2], [4, 5]]
    assert clusters_from_pairs(3, np.zeros((0, 2), dtype=np.int64)) == []
