"""The HTML report renders in headless Chromium with no console message, and is self-contained.

Needs the Debian package ``chromium`` (``apt-get install -y chromium``); skipped with that reason
when it is absent. The screenshot is kept in the test's temp dir for a human look.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from known_answer.rankers import GatedModalityRanker
from known_answer.simulator import simulate
from mmrank.audit import audit
from mmrank.models.baselines import HeuristicBaseline
from mmrank.report import write_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]? ?(.*)")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed: apt-get update && apt-get install -y chromium")


def open_page(page: Path, work: Path, screenshot: Path) -> tuple[list[str], str]:
    """(console messages, rendered DOM) of ``page`` in a fresh browser profile."""
    common = [chromium(), *FLAGS, f"--user-data-dir={work / 'profile'}", "--window-size=1200,3000"]
    shot = subprocess.run([*common, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    logs = shot.stderr + dom.stderr
    return [m.group(1) for m in CONSOLE.finditer(logs)], dom.stdout


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    sim = simulate(0, ["dead_modality"])
    result = audit(GatedModalityRanker().fit(sim.train), HeuristicBaseline(), train=sim.train, test=sim.test,
                   train_interactions=sim.train_events, test_interactions=sim.test_events, n_jobs=1,
                   policy={"significance": {"bootstrap_resamples": 1000, "permutation_resamples": 1000}})
    result.save(out / "audit.json")
    write_report(out, result.to_dict())
    return out


def test_report_renders_without_console_errors(report_dir, tmp_path):
    page = report_dir / "report.html"
    messages, dom = open_page(page, tmp_path, tmp_path / "report.png")
    assert messages == []
    assert "PAUSE_AND_FIX" in dom and "modality_ablation" in dom
    assert len(re.findall(r"<img src=\"data:image/png;base64,", dom)) >= 5  # CI, forest, ablation, attention, scatter...
    assert (tmp_path / "report.png").stat().st_size > 20_000


def test_report_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", html)
    assert "<script" not in html
    srcs = re.findall(r"<img src='([^']{0,30})", html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_console_detection_catches_an_error(tmp_path):
    """The detector itself can fail: a page that logs an error is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('planted-error-42')</script></body></html>")
    messages, _ = open_page(bad, tmp_path, tmp_path / "bad.png")
    assert any("planted-error-42" in m for m in messages)
