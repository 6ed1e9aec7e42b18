"""open_clip end to end with a tiny randomly initialised architecture (no CLIP weights exist here):
real poster files -> image tower -> embeddings -> cache, and a local checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from mmrank.errors import ConfigError  # noqa: E402
from mmrank.features.clip import ClipEncoder, register_model_config  # noqa: E402

TINY = "mmrank-tiny-clip-test"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module", autouse=True)
def tiny_architecture():
    register_model_config(TINY, TINY_CONFIG)


@pytest.fixture(scope="module")
def ten_posters(data_dir: Path) -> list[Path]:
    posters = sorted((data_dir / "ml-100k-mm" / "posters").glob("*.jpg"))[:10]
    if len(posters) < 10:
        pytest.skip("fewer than 10 ML-100K posters in the shared data")
    return posters


def test_random_init_clip_embeds_ten_real_posters_through_the_cache(ten_posters, tmp_path):
    enc = ClipEncoder(TINY, pretrained=None, seed=0)
    cache = enc.image_cache(tmp_path)
    first = enc.encode_image_files(ten_posters, cache)
    assert first.matrix.shape == (10, 32)
    assert first.mask.all() and np.all(np.isfinite(first.matrix))
    assert np.allclose(np.linalg.norm(first.matrix, axis=1), 1.0, atol=1e-5)
    assert (first.cache_hits, first.computed) == (0, 10)
    # distinct posters give distinct vectors (the tower really looked at the pixels)
    assert np.unique(first.matrix.round(5), axis=0).shape[0] == 10

    # a fresh encoder with the same seed: same weights, every vector from the cache, same values
    again = ClipEncoder(TINY, pretrained=None, seed=0)
    second = again.encode_image_files(ten_posters, again.image_cache(tmp_path))
    assert (second.cache_hits, second.computed) == (10, 0)
    assert again._model is None  # the cache answered: the model was never built
    assert np.array_equal(first.matrix, second.matrix)
    # and recomputing without the cache is deterministic too
    assert np.allclose(ClipEncoder(TINY, None, seed=0).encode_image_files(ten_posters).matrix, first.matrix, atol=1e-6)


def test_other_seed_is_another_encoder_and_text_tower_works(tmp_path):
    a, b = ClipEncoder(TINY, None, seed=0), ClipEncoder(TINY, None, seed=1)
    assert a.encoder_id != b.encoder_id
    r = a.encode_texts_cached(["a poster of a dog", "", "a space movie"], a.text_cache(tmp_path))
    assert r.mask.tolist() == [True, False, True]
    assert r.matrix.shape == (3, 32) and np.all(np.isfinite(r.matrix))
    assert not np.allclose(a.encode_texts(["x"]), b.encode_texts(["x"]))


def test_local_checkpoint_file_loads_the_saved_weights(ten_posters, tmp_path):
    from safetensors.torch import save_file

    source = ClipEncoder(TINY, None, seed=7)
    source._load()
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source._model.state_dict().items()}, str(ckpt))
    loaded = ClipEncoder(TINY, pretrained=str(ckpt), seed=0)  # the seed must not matter now
    assert "sha256=" in loaded.encoder_id
    expected = source.encode_image_files(ten_posters[:3]).matrix
    assert np.allclose(loaded.encode_image_files(ten_posters[:3]).matrix, expected, atol=1e-5)


def test_unknown_model_and_missing_checkpoint_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        ClipEncoder("no-such-architecture")
    with pytest.raises(ConfigError, match="not found"):
        ClipEncoder(TINY, pretrained=str(tmp_path / "missing.safetensors"))


def test_unreadable_poster_is_failed_not_fatal(ten_posters, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(ten_posters[0].read_bytes()[:300])
    r = ClipEncoder(TINY, None).encode_image_files([ten_posters[0], bad, None])
    assert r.mask.tolist() == [True, False, False]
    assert r.problems[1][0] == "failed" and r.problems[2][0] == "missing"


def test_checkpoint_of_another_architecture_is_a_config_error(tmp_path):
    from safetensors.torch import save_file

    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3)}, str(wrong))
    enc = ClipEncoder(TINY, pretrained=str(wrong))
    with pytest.raises(ConfigError, match="cannot load open_clip"):
        enc.encode_texts(["x"])
