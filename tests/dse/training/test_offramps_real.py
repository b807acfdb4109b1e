"""On the real MiniLM and the full SST-2 dev set (the smoke study's fine-tune): every off-ramp at
least matches a logistic-regression probe fitted to its own layer's features."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GLUE = Path(os.environ.get("DSE_GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")
# Paired dev accuracies of two classifiers on the same 872 sentences differ by ~1 point from
# which sentences happen to be in dev (about 10 % of them classified differently): an off-ramp
# 1.5 points below its probe is below it, not noise.
TOLERANCE_POINTS = 1.5


@pytest.mark.integration
def test_every_off_ramp_reaches_a_linear_probe_on_its_own_features(tmp_path: Path) -> None:
    if not GLUE.is_dir():
        pytest.fail(f"real GLUE data not found at {GLUE} (set DSE_GLUE_DIR)")
    out = tmp_path / "offramps.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "offramp_probe.py"), "--config",
                          str(ROOT / "search_spaces" / "smoke.yaml"), "--full-dev", "--json", str(out)],
                         capture_output=True, text=True, env={**os.environ, "DSE_GLUE_DIR": str(GLUE)},
                         cwd=ROOT, timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["dev_rows"] == 872
    assert len(result["off_ramps"]) == len(result["probe_own"]) == 6
    for layer, (ramp, probe) in enumerate(zip(result["off_ramps"], result["probe_own"], strict=True), start=1):
        assert ramp >= probe - TOLERANCE_POINTS, f"off-ramp {layer}: {ramp:.1f} % vs its probe {probe:.1f} %"
    assert result["early_exit"]["avg_exit_layer"] < 6  # within 1 point of the final layer, some exit early
