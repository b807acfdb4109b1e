"""The HTML report of a recorded study: self-contained, and rendered by a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from dse.analysis.report import write_report
from dse.errors import DSEError
from dse.study.engine import StudyFolder

CHROMIUM = Path("/usr/bin/chromium")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        return subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120, check=True,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_report_is_self_contained(recorded_study: StudyFolder) -> None:
    path = write_report(recorded_study)
    assert path == recorded_study.path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)  # nothing fetched
    assert "<script" not in text and "<link" not in text and "url(" not in text
    assert text.count('src="data:image/png;base64,') == 4  # pareto, hypervolume, energy, knobs
    for section in ("Summary", "Pareto designs (feasible)", "Chosen designs", "Plots", "Study definition"):
        assert f"<h2>{section}</h2>" in text
    assert "fixed in the study definition" in text  # the reference point and where it comes from
    assert "hypervolume_reference:" in text  # the definition itself, as YAML
    # no model was ever prepared for these recorded trials: the per-sentence section says so
    assert "per-sentence plots need the study&#x27;s fine-tuned model" in text
    assert (recorded_study.plots / "pareto.svg").is_file()


def test_report_renders_in_headless_chromium(recorded_study: StudyFolder, tmp_path: Path) -> None:
    path = write_report(recorded_study, tmp_path / "out" / "r.html")
    dom = _chromium("--dump-dom", path.as_uri()).stdout
    assert "<title>edgebert-dse report: recorded</title>" in dom
    pareto = re.search(r'<table id="pareto">.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert pareto is not None and pareto.group(1).count("<tr>") == 3  # trials 1, 0 and 4
    picks = re.search(r'<table id="picks"><thead><tr>(.*?)</tr>', dom, re.S)
    assert picks is not None
    for title in ("knee", "best accuracy (trial 1)", "minimum energy (trial 4)", "largest hypervolume"):
        assert title in picks.group(1)
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,5000", "--hide-scrollbars", path.as_uri())
    image = mpimg.imread(shot)[..., :3]
    assert image.shape[:2] == (5000, 1200)
    # the page's own styles are greys; saturated pixels come only from the decoded plots
    saturated = (image.max(axis=2) - image.min(axis=2)) > 0.35
    assert saturated.mean() > 0.002
    # the first plot (red Pareto points, blue feasible ones) is drawn, not a broken-image icon
    red = (np.abs(image - np.array([0xD6, 0x27, 0x28]) / 255).max(axis=2) < 0.08).sum()
    blue = (np.abs(image - np.array([0x1F, 0x77, 0xB4]) / 255).max(axis=2) < 0.08).sum()
    assert red > 50 and blue > 50


def test_report_refuses_an_unknown_design_pick(recorded_study: StudyFolder) -> None:
    with pytest.raises(DSEError, match="unknown pick 'fastest'"):
        write_report(recorded_study, design="fastest")
    assert not (recorded_study.path / "report.html").exists()
