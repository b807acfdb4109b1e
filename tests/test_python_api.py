"""The Python API end to end, as a script would use it: the real MiniLM on real SST-2 rows
(``search_spaces/smoke.yaml``), every step through ``import dse`` alone, no CLI.

Shares the session's fine-tune cache with tests/test_cli.py, so the smoke fine-tune runs once.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

import dse

ROOT = Path(__file__).resolve().parents[1]
GLUE = Path(os.environ.get("DSE_GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")
PLOTS = ("pareto", "hypervolume", "energy_breakdown", "knobs")


def readme_example() -> str:
    """The README's Python API example (its one ``python`` block under "## Python API")."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.integration
def test_smoke_study_through_import_dse(shared_cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not GLUE.is_dir():
        pytest.fail(f"real GLUE data not found at {GLUE} (set DSE_GLUE_DIR)")
    monkeypatch.setenv("DSE_GLUE_DIR", str(GLUE))
    monkeypatch.setenv("DSE_CACHE_DIR", str(shared_cache_dir))

    # the README's example, run as it stands from a folder holding search_spaces/
    monkeypatch.chdir(tmp_path)
    (tmp_path / "search_spaces").symlink_to(ROOT / "search_spaces")
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    study, analysis, exported = namespace["study"], namespace["analysis"], namespace["exported"]
    metrics, deployed = namespace["metrics"], namespace["deployed"]
    assert study.path.resolve() == (tmp_path / "results" / "smoke").resolve()
    assert study.status()["completed"] == 8
    assert {"config.yaml", "config.sha256", "env.json", "study.journal"} <= {p.name for p in study.path.iterdir()}

    # analyse: DataFrames and picks
    trials, front = analysis.trials, analysis.front
    assert ((trials["state"] == "COMPLETE") & ~trials["derived"]).sum() == 8
    assert len(front) >= 1 and front["feasible"].all()
    assert trials["accuracy"].between(40, 100).all() and trials["accuracy"].max() >= 75  # as in test_cli.py
    assert analysis.hypervolume > 0 and analysis.reference_source == "fixed in the study definition"
    assert analysis.history["hypervolume"].is_monotonic_increasing
    picks = analysis.picks()
    assert set(picks) == {"knee", "max-accuracy", "min-energy", "max-hv-contribution"}
    assert set(picks.values()) <= set(front["trial"])

    # write the outputs: tables and figures
    outputs = study.write_outputs()  # again: the same files
    assert pd.read_csv(study.path / "trials.csv")["trial"].tolist() == trials["trial"].tolist()
    assert pd.read_csv(study.path / "pareto.csv")["trial"].tolist() == front["trial"].tolist()
    assert len(pd.read_csv(study.path / "hypervolume.csv")) == len(analysis.history)
    assert set(outputs.plots) == set(PLOTS)
    for name in PLOTS:
        png, svg = study.path / "plots" / f"{name}.png", study.path / "plots" / f"{name}.svg"
        assert png.stat().st_size > 5_000 and svg.stat().st_size > 5_000, name
        height, width = mpimg.imread(png).shape[:2]
        assert height > 200 and width > 200, name
        assert ET.parse(svg).getroot().tag.endswith("svg"), name
    assert not list(study.path.rglob("*.tmp"))

    # export the knee, re-score it from scratch, score the Hugging Face model alone, deploy it
    assert exported.trial == picks["knee"] and exported.path.resolve() == (tmp_path / "exports" / "knee").resolve()
    assert {"design.json", "model", "accelerator.json"} <= {p.name for p in exported.path.iterdir()}
    record = json.loads((exported.path / "design.json").read_text())["_data"]
    assert record["trial"] == exported.trial and record["study"] == "smoke"
    for name, value in record["metrics"].items():
        assert metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    score = dse.evaluate_export(exported, model=True)
    assert score["accuracy"] == record["metrics"]["accuracy"] and score["dev_rows"] == 200
    assert deployed.dev_rows == 20 and 0 < deployed.int8.size_mb < deployed.fp32.size_mb
    assert deployed.format == "onnx" and list(deployed.int8.latency_ms_by_threads) == ["1"]
    assert {"onnx_fp32", "onnx_int8", "deploy.json"} <= {p.name for p in (exported.path / "deploy").iterdir()}

    # an opened study reads the same
    reopened = dse.Study.open(study.path)
    assert reopened.status()["completed"] == 8 and reopened.pick("knee") == exported.trial


def test_readme_example_is_python_with_the_api_verbs() -> None:
    code = readme_example()
    compile(code, "README.md", "exec")
    for verb in ("Study.create", ".run(", ".analyse(", ".write_outputs(", ".export(", "dse.evaluate_export(",
                 "dse.deploy("):
        assert verb in code, verb
