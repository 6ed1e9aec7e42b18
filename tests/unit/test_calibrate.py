"""Calibration: ECE/Brier/log-loss by hand, fitted calibrators improve held-out ECE, JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from mmrank.calibrate import (
    IsotonicCalibrator, TemperatureCalibrator, brier, calibration_report, ece, load_calibrator, log_loss,
    make_calibrator, reliability_table, save_calibrator,
)
from mmrank.errors import ConfigError, DataError


def test_metrics_by_hand():
    p = np.array([0.05, 0.15, 0.95, 0.92])
    y = np.array([0.0, 1.0, 1.0, 1.0])
    # bins: [0,.1): p .05 y 0 -> |0-.05|; [.1,.2): p .15 y 1 -> .85; [.9,1]: mean p .935, y 1 -> .065
    assert ece(p, y) == pytest.approx(0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.065)
    assert brier(p, y) == pytest.approx(np.mean([0.05**2, 0.85**2, 0.05**2, 0.08**2]))
    assert log_loss(p, y) == pytest.approx(-np.mean([np.log(0.95), np.log(0.15), np.log(0.95), np.log(0.92)]))
    table = reliability_table(p, y)
    assert len(table) == 10 and table[9]["count"] == 2 and table[5]["count"] == 0
    assert reliability_table(np.array([1.0]), np.array([1.0]))[9]["count"] == 1  # p = 1 is in the last bin


def synthetic(n, seed):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n) * 3
    y = (rng.random(n) < 1 / (1 + np.exp(-(s - 1) / 2.5))).astype(float)  # true p = σ((s-1)/2.5)
    return s, y


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_calibrators_lower_held_out_ece(method):
    s_val, y_val = synthetic(4000, 0)
    s_test, y_test = synthetic(4000, 1)
    cal = make_calibrator(method).fit(s_val, y_val)
    raw = make_calibrator("none").transform(s_test)
    before, after = ece(raw, y_test), ece(cal.transform(s_test), y_test)
    assert after < before / 2 and after < 0.03
    if method == "temperature":
        assert cal.temperature == pytest.approx(2.5, rel=0.15) and cal.bias == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize("cls", [TemperatureCalibrator, IsotonicCalibrator])
def test_json_round_trip(tmp_path, cls):
    s, y = synthetic(500, 2)
    cal = cls().fit(s, y)
    save_calibrator(cal, tmp_path / "c.json")
    again = load_calibrator(tmp_path / "c.json")
    assert type(again) is cls and np.allclose(again.transform(s), cal.transform(s))
    assert "pickle" not in (tmp_path / "c.json").read_text()


def test_errors():
    with pytest.raises(ConfigError, match="allowed"):
        make_calibrator("platt")
    with pytest.raises(DataError, match="both relevant and non-relevant"):
        TemperatureCalibrator().fit(np.zeros(5), np.zeros(5))
    rep = calibration_report(np.array([0.2, 0.8]), np.array([0, 2]), relevance_threshold=1)
    assert rep["positive_rate"] == 0.5 and rep["n"] == 2


def test_a_calibrator_file_that_is_not_an_object_and_empty_isotonic_input_are_data_errors(tmp_path):
    from mmrank.calibrate import IsotonicCalibrator, load_calibrator

    path = tmp_path / "calibrator.json"
    path.write_text("[1]")
    with pytest.raises(DataError, match="JSON object"):
        load_calibrator(path)
    with pytest.raises(DataError, match="needs validation scores"):
        IsotonicCalibrator().fit(np.zeros(0), np.zeros(0))
