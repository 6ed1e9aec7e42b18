"""Configs: YAML + overrides + ${ENV}, and every mistake caught before training with its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmrank.config import (
    RerankConfig,
    TrainSettings,
    apply_sets,
    load_config,
    load_yaml_with_overrides,
    validate_config,
)
from mmrank.errors import ConfigError
from mmrank.losses import LIST_LOSSES
from mmrank.models.registry import build_ranker, check_params

REPO = Path(__file__).resolve().parents[2]
BASE = """
task: rerank
data:
  train: "${DATA}/train.txt"
  valid: ["${DATA}/a.txt", "${DATA}/b.txt"]
model:
  kind: cotrr
  params: {d_model: 64}
train:
  max_epochs: 3
"""


@pytest.fixture
def cfg_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA", "/data")
    p = tmp_path / "c.yaml"
    p.write_text(BASE)
    return p


def test_load_with_env_and_overrides(cfg_file):
    cfg = load_config(cfg_file, ["train.lr=0.01", "model.params.list_context=true", "train.loss_params.k=5"])
    assert isinstance(cfg, RerankConfig)
    assert cfg.data.train == "/data/train.txt" and cfg.data.valid == ["/data/a.txt", "/data/b.txt"]
    assert cfg.train.lr == 0.01 and cfg.train.max_epochs == 3
    assert cfg.model.params == {"d_model": 64, "list_context": True}
    assert cfg.train.loss_params == {"k": 5}


def test_unknown_key_names_its_path_and_the_allowed_keys(cfg_file):
    with pytest.raises(ConfigError) as e:
        load_config(cfg_file, ["train.learning_rate=0.1"])
    msg = str(e.value)
    assert "train.learning_rate: unknown key" in msg and "'lr'" in msg and str(cfg_file) in msg


def test_wrong_type_and_literal_name_the_allowed_values(cfg_file):
    with pytest.raises(ConfigError, match=r"train.max_epochs: .*integer"):
        load_config(cfg_file, ["train.max_epochs=many"])
    with pytest.raises(ConfigError, match=re.escape(f"train.loss: unknown loss 'softmax' — allowed: {sorted(LIST_LOSSES)}")):
        load_config(cfg_file, ["train.loss=softmax"])
    with pytest.raises(ConfigError, match=r"model.kind: .*'cotrr'"):
        load_config(cfg_file, ["model.kind=bert"])


def test_model_params_checked_per_kind_before_training():
    with pytest.raises(ConfigError, match=r"model.params \(cotrr\): d_modl: unknown key"):
        build_ranker("cotrr", {"d_modl": 3})
    with pytest.raises(ConfigError, match=r"model.params \(lambdamart\): trees: unknown key — allowed keys: .*n_estimators"):
        check_params("lambdamart", {"trees": 3})
    with pytest.raises(ConfigError, match="allowed"):
        build_ranker("xgboost")


def test_unset_env_var_is_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA", raising=False)
    p = tmp_path / "c.yaml"
    p.write_text(BASE)
    with pytest.raises(ConfigError, match=r"data.train: environment variable \$\{DATA\} is not set"):
        load_config(p)


def test_sets_create_sections_and_refuse_bad_forms():
    assert apply_sets({}, ["a.b.c=[1, 2]"]) == {"a": {"b": {"c": [1, 2]}}}
    with pytest.raises(ConfigError, match="key=value"):
        apply_sets({}, ["train.lr"])
    with pytest.raises(ConfigError, match="is a value"):
        apply_sets({"a": 1}, ["a.b=2"])


def test_bad_yaml_and_unknown_task(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_yaml_with_overrides(p)
    p.write_text("task: translate\n")
    with pytest.raises(ConfigError, match="task: unknown task 'translate'"):
        load_config(p)


def test_validate_config_is_reusable():
    s = validate_config(TrainSettings, {"lr": 0.5}, "x.yaml")
    assert s.lr == 0.5
    with pytest.raises(ConfigError, match=r"x.yaml: lr: Input should be greater than 0"):
        validate_config(TrainSettings, {"lr": -1}, "x.yaml")


@pytest.mark.parametrize("name", ["mq2008_cotrr", "mq2008_fusion", "mq2008_lambdamart"])
def test_presets_validate_and_build(name, monkeypatch):
    monkeypatch.setenv("MMRANK_DATA_DIR", "/somewhere")
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.data.test == "/somewhere/ltr/MQ2008/S5.txt"
    build_ranker(cfg.model.kind, cfg.model.params)


def test_a_misspelt_metric_is_refused_with_the_config_before_any_data_is_read(cfg_file):
    with pytest.raises(ConfigError, match=r"evaluate.metrics: unknown metric 'ndgc@5'"):
        load_config(cfg_file, ["evaluate.metrics=[ndcg@10,ndgc@5]"])
