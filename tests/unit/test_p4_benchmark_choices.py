"""benchmarks/p4_ml100k_rerank.py makes its choices on validation and freezes them: a run that
finishes later (a better validation score included) can no longer change what the report calls
"chosen" or which model is audited; the test score plays no part in any choice."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "p4_ml100k_rerank.py"


@pytest.fixture()
def p4(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("p4_ml100k_rerank", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PICKS_FILE", tmp_path / "picks.json")
    return module


def run(name: str, valid: float, test: float, seed: int = 0, drop: tuple = ()) -> dict:
    return {"spec": {"name": name, "preset": name.split(".")[0], "params": {}, "train": {}, "drop": list(drop),
                     "seed": seed}, "valid_ndcg@10": valid, "test_ndcg@10": test}


def test_choices_follow_validation_not_test_and_stay_frozen(p4):
    runs = {"lambdamart.a.s0": run("lambdamart.a.s0", 0.48, 0.50), "lambdamart.b.s0": run("lambdamart.b.s0", 0.49, 0.40),
            "cotrr.base.s0": run("cotrr.base.s0", 0.53, 0.51), "fusion.off.s0": run("fusion.off.s0", 0.52, 0.60),
            "fusion.entropy.s0": run("fusion.entropy.s0", 0.525, 0.45),
            "lambdamart.b.-text.s0": run("lambdamart.b.-text.s0", 0.99, 0.99, drop=("text",))}
    picks = p4.picks_of(runs)
    assert (picks["lambdamart"], picks["cotrr"], picks["fusion"]) == ("lambdamart.b.s0", "cotrr.base.s0", "fusion.entropy.s0")
    assert "lambdamart.b.-text.s0" not in picks["candidates"]  # ablation runs are never candidates
    assert p4.best_multimodal(runs) == "cotrr.base.s0"
    runs["fusion.adversarial.s0"] = run("fusion.adversarial.s0", 0.60, 0.60)  # finished after the choice
    assert p4.picks_of(runs)["fusion"] == "fusion.entropy.s0"
    assert json.loads(p4.PICKS_FILE.read_text())["fusion"] == "fusion.entropy.s0"
    p4.PICKS_FILE.unlink()
    assert p4.picks_of(runs)["fusion"] == "fusion.adversarial.s0"  # the freeze, not luck, kept it


def test_unmeasured_criteria_are_said_not_failed(p4):
    assert p4._all_below([0.5, 0.8], 0.9) is True and p4._all_below([0.5, 0.95], 0.9) is False
    assert p4._all_below([0.5, None], 0.9) is None and p4._met(None) == "**not measured**"
