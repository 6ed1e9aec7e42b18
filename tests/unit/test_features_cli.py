"""`mmrank data features` and `mmrank data dedup` on a tiny ML-100K-shaped folder with planted
problems: a truncated JPEG, a missing poster, an empty overview, a repeated item row."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import mmrank.cli.features_cmds  # noqa: F401  (registers the commands on data_app)
from mmrank.cli.app import app
from mmrank.data.formats import read_ranking
from mmrank.data.ml100k_items import GENRES, load_item_features
from mmrank.errors import ConfigError

N_ITEMS = 12


def _poster(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_ml100k")
    mm = root / "ml-100k-mm"
    (mm / "posters").mkdir(parents=True)
    header = ["movie_id", "title", *GENRES, "year", "overview", "runtime", "vote_average", "vote_count"]
    rows = []
    for i in range(1, N_ITEMS + 1):
        flags = ["1" if g == ("Drama" if i % 2 else "Comedy") else "0" for g in GENRES]
        overview = "" if i == 3 else f'"A story about thing {i}, told ""well""."'
        rows.append([str(i), f'"Movie {i} (199{i % 10})"', *flags, f"199{i % 10}.0", overview, "95.0", "6.5", "100.0"])
    rows.append(["1", '"Movie 1 again (1991)"', *["0"] * len(GENRES), "1991.0", "dup", "1.0", "1.0", "1.0"])
    (mm / "items_tmdb.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    for i in range(1, N_ITEMS + 1):
        if i == 7:
            continue  # no poster
        data = _poster(i)
        (mm / "posters" / f"{i}.jpg").write_bytes(data[: len(data) // 2] if i == 5 else data)
    (mm / "posters" / "9.jpg").write_bytes((mm / "posters" / "2.jpg").read_bytes())  # exact duplicate
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, 16):
        for k, item in enumerate(rng.choice(N_ITEMS, size=9, replace=False)):
            lines.append(f"{u}\t{item + 1}\t{rng.integers(1, 6)}\t{880000000 + u * 1000 + k * 20000}")
    (root / "ml-100k").mkdir()
    (root / "ml-100k" / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    return root


def _run(*args):
    return CliRunner().invoke(app, ["data", *map(str, args)])


def test_features_report_lists_truncated_jpeg_and_empty_overview_and_rerun_hits_cache(tiny_data, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", out, "--cache", cache)
    assert first.exit_code == 0, first.output
    report = json.loads((out / "features_report.json").read_text())
    image = report["counts"]["image"]
    assert (image["items"], image["ok"], image["missing"], image["failed"]) == (N_ITEMS, 10, 1, 1)
    assert report["counts"]["text"]["ok"] == N_ITEMS
    by_item = {(i["modality"], i["item_id"]): i for i in report["issues"]}
    truncated = by_item[("image", "5")]
    assert truncated["state"] == "failed" and truncated["path"].endswith("posters/5.jpg")
    assert "truncated" in truncated["reason"]
    assert by_item[("image", "7")]["state"] == "missing" and "not found" in by_item[("image", "7")]["reason"]
    empty = by_item[("text", "3")]
    assert empty["state"] == "warning" and "empty overview" in empty["reason"]
    assert empty["path"].endswith("items_tmdb.csv")

    items, info = load_item_features(out)
    assert len(items) == N_ITEMS and info["repeated_ids_dropped"] == 1
    assert items.titles[0] == "Movie 1 (1991)"  # the first row of a repeated id wins
    assert items.masks["image"].tolist() == [i not in (5, 7) for i in range(1, N_ITEMS + 1)]
    assert np.all(items.features["image"][~items.masks["image"]] == 0)
    meta_names = info["feature_names"]["meta"]
    assert items.features["meta"][2, meta_names.index("overview_missing")] == 1.0
    assert items.features["meta"][6, meta_names.index("poster_missing")] == 1.0
    assert np.allclose(np.linalg.norm(items.features["text"], axis=1), 1.0, atol=1e-5)

    test, read_report = read_ranking(out / "rerank" / "test.parquet")
    assert read_report.records_quarantined == 0 and test.n_queries > 0
    assert set(test.features) == {"text", "image", "image_effnet", "meta", "pop"}
    # the pretrained poster modality (default --image-encoder): 1280-d, the same missing/failed posters
    assert items.features["image_effnet"].shape == (N_ITEMS, 1280)
    assert items.masks["image_effnet"].tolist() == items.masks["image"].tolist()
    assert by_item[("image_effnet", "5")]["state"] == "failed" and "truncated" in by_item[("image_effnet", "5")]["reason"]
    assert "cache hits: text 0/12, image 0/10, image_effnet 0/10, reranking task 0/2" in first.output
    backend = info["encoders"]["image_effnet_backend"]
    assert backend in ("onnxruntime", "torch") and f"image_effnet forward: {backend}" in first.output
    # both protocols are written: per-user cuts (every user has a test query) and one global cut
    per_user, glob = (json.loads((out / d / "task.json").read_text()) for d in ("rerank", "rerank_global"))
    assert (per_user["protocol"], glob["protocol"]) == ("per_user", "global")
    assert per_user["counts"]["test"]["queries"] == 15 and glob["counts"]["test"]["queries"] > 0
    assert per_user["leakage"]["same_user_future_events"] == 0 and glob["leakage"]["time_consistent"]
    assert (out / "rerank" / "seen.inter").is_file() and (out / "rerank_global" / "held_out.inter").is_file()

    second = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", tmp_path / "out2",
                  "--cache", cache)
    assert second.exit_code == 0, second.output
    assert "cache hits: text 12/12, image 10/10, image_effnet 10/10, reranking task 2/2" in second.output
    again, _ = load_item_features(tmp_path / "out2")
    for name in ("text", "image", "meta"):
        assert np.array_equal(again.features[name], items.features[name])
    assert (tmp_path / "out2" / "rerank" / "test.parquet").read_bytes() == (out / "rerank" / "test.parquet").read_bytes()


def test_unknown_dataset_is_a_config_error(tiny_data, tmp_path):
    result = _run("features", "--dataset", "ml1m", "--data-dir", tiny_data, "--out", tmp_path)
    assert isinstance(result.exception, ConfigError)


def test_one_protocol_only_and_an_unknown_protocol(tiny_data, tmp_path):
    result = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", tmp_path / "g",
                  "--no-cache", "--image-encoder", "none", "--task-protocol", "global")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g" / "rerank_global" / "task.json").is_file() and not (tmp_path / "g" / "rerank").exists()
    bad = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", tmp_path / "b",
               "--task-protocol", "random")
    assert isinstance(bad.exception, ConfigError) and "per_user, global or both" in str(bad.exception)
    assert not (tmp_path / "b").exists()  # refused before any input was read


def test_dedup_command_reports_the_planted_copy(tiny_data, tmp_path):
    target = tmp_path / "dups.json"
    result = _run("dedup", tiny_data / "ml-100k-mm" / "posters", "--out", target)
    assert result.exit_code == 0, result.output
    found = json.loads(target.read_text())
    exact = [sorted(p.rsplit("/", 1)[-1] for p in c) for c in found["clusters"]["exact"]]
    assert exact == [["2.jpg", "9.jpg"]]
    assert [u["path"].rsplit("/", 1)[-1] for u in found["unreadable"]] == ["5.jpg"]
    assert "exact" in result.output


def test_clip_modalities_from_a_local_checkpoint_reach_items_and_task(tiny_data, tmp_path):
    pytest.importorskip("open_clip")
    from safetensors.torch import save_file
    from test_features_clip import TINY, TINY_CONFIG

    from mmrank.features.clip import ClipEncoder, register_model_config

    register_model_config(TINY, TINY_CONFIG)
    source = ClipEncoder(TINY, None, seed=3)
    source._load()
    ckpt = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in source._model.state_dict().items()}, str(ckpt))
    out = tmp_path / "out"
    result = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", out, "--cache",
                  tmp_path / "cache", "--clip-model", TINY, "--clip-pretrained", ckpt)
    assert result.exit_code == 0, result.output
    items, info = load_item_features(out)
    assert items.modality_dims["clip_image"] == items.modality_dims["clip_text"] == 32
    assert items.masks["clip_image"].tolist() == items.masks["image"].tolist()  # same bad posters
    assert items.masks["clip_text"].all()
    assert "sha256=" in info["encoders"]["clip_image"]
    posters = tiny_data / "ml-100k-mm" / "posters"
    expected = source.encode_image_files([posters / "1.jpg"]).matrix[0]
    assert np.allclose(items.features["clip_image"][0], expected, atol=1e-5)
    report = json.loads((out / "features_report.json").read_text())
    assert report["counts"]["clip_image"]["failed"] == 1 and report["counts"]["clip_image"]["missing"] == 1
    test, _ = read_ranking(out / "rerank" / "test.parquet")
    assert {"clip_image", "clip_text"} <= set(test.features) and "clip_image" in test.query_features


def test_clip_without_weights_is_refused(tiny_data, tmp_path):
    result = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", tmp_path,
                  "--clip-model", "ViT-B-32")
    assert isinstance(result.exception, ConfigError)


def test_an_unknown_image_encoder_is_one_line_before_any_work(tiny_data, tmp_path):
    result = _run("features", "--dataset", "ml100k", "--data-dir", tiny_data, "--out", tmp_path / "o",
                  "--image-encoder", "resnet9000", "--no-cache")
    assert isinstance(result.exception, ConfigError) and "--image-encoder 'resnet9000'" in str(result.exception)
    assert result.exception.exit_code == 2 and not (tmp_path / "o").exists()
