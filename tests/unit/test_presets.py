"""Every preset in configs/ validates and builds its model (what `mmrank train PRESET` does before
reading any data), so a preset cannot ship with a key its model does not take."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmrank.config import load_config
from mmrank.models.registry import build_ranker

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_preset_validates_and_builds_its_model(path, monkeypatch):
    # Every folder a preset reads from the environment (MMRANK_DATA_DIR, MMRANK_RETRIEVED, ...):
    # building the model reads no data, so any path will do.
    for name in set(re.findall(r"\$\{(\w+)", path.read_text())) | {"MMRANK_DATA_DIR"}:
        monkeypatch.setenv(name, "/data")
    cfg = load_config(path)
    model = build_ranker(cfg.model.kind, cfg.model.params)
    assert model.kind == cfg.model.kind


def test_the_new_sequential_presets_are_there():
    names = {p.stem for p in CONFIGS}
    assert {"ml100k_sasrec_content", "ml100k_sasrec_cl"} <= names
