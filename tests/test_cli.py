"""The ``dse`` command line: a real study end to end, and clean errors for bad input.

The end-to-end test fine-tunes the real packaged MiniLM on real SST-2 rows (a short budget:
``search_spaces/smoke.yaml``) and runs the study through the installed console script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
GLUE = Path(os.environ.get("DSE_GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")


def dse(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("dse")  # the console script of this environment
    assert exe.is_file(), "the dse console script is not installed (pip install -e .)"
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=cwd, timeout=1800)


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory) -> tuple[Path, dict[str, str]]:  # noqa: ANN001
    if not GLUE.is_dir():
        pytest.fail(f"real GLUE data not found at {GLUE} (set DSE_GLUE_DIR)")
    base = tmp_path_factory.mktemp("smoke")
    env = {"DSE_GLUE_DIR": str(GLUE), "DSE_CACHE_DIR": str(base / "cache")}
    run = dse("study", "run", str(ROOT / "search_spaces" / "smoke.yaml"), "--results-dir",
              str(base / "results"), env=env)
    assert run.returncode == 0, run.stderr
    assert "Pareto front of smoke" in run.stdout
    return base / "results" / "smoke", env


@pytest.mark.integration
def test_real_study_outputs(smoke_study) -> None:  # noqa: ANN001
    folder, _ = smoke_study
    trials = pd.read_csv(folder / "trials.csv")
    front = pd.read_csv(folder / "pareto.csv")
    assert (trials["state"] == "COMPLETE").sum() == 8
    assert len(front) >= 1
    # a 1,500-row fine-tune of MiniLM on SST-2: well above chance, below perfect
    assert trials["accuracy"].between(60, 100).all() and trials["accuracy"].max() >= 75
    assert (trials["energy_uj"] > 0).all() and (trials["latency_ms"] > 0).all()
    assert trials["cache_hit"].any()  # trials differing only in cheap knobs reuse logits
    assert (folder / "plots" / "pareto.png").stat().st_size > 10_000
    assert trials["target_met_fraction"].between(0, 1).all()
    assert {"config.yaml", "config.sha256", "env.json", "study.journal"} <= {p.name for p in folder.iterdir()}


@pytest.mark.integration
def test_export_reevaluates_to_the_same_figures(smoke_study, tmp_path: Path) -> None:  # noqa: ANN001
    folder, env = smoke_study
    out = tmp_path / "knee.json"
    assert dse("export", str(folder), "--pick", "knee", "-o", str(out), env=env).returncode == 0
    record = json.loads(out.read_text())
    assert record["_type"] == "edgebert-dse.design" and record["_version"] == 1
    accelerator = record["_data"]["accelerator"]
    assert accelerator and json.dumps(accelerator)  # the EdgeBERT-style parameter file
    again = dse("evaluate", str(out), env=env)
    assert again.returncode == 0, again.stderr
    metrics = json.loads(again.stdout)
    for name, value in record["_data"]["metrics"].items():
        assert metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name


@pytest.mark.integration
def test_status_and_resume_with_ray(smoke_study) -> None:  # noqa: ANN001
    folder, env = smoke_study
    status = json.loads(dse("study", "status", str(folder), "--format", "json", env=env).stdout)
    assert status["completed"] == 8 and status["pareto_size"] >= 1
    resumed = dse("study", "resume", str(folder), "--n-trials", "10", "--executor", "ray", env=env)
    assert resumed.returncode == 0, resumed.stderr
    status = json.loads(dse("study", "status", str(folder), "--format", "json", env=env).stdout)
    assert status["completed"] == 10


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


BAD_CLI = [
    (["study", "run"], "Missing argument"),
    (["study", "run", "nope.yaml"], "no such file"),
    (["study", "run", "{space}", "--n-trials", "zero"], "Invalid value for '--n-trials'"),
    (["study", "run", "{space}", "--executor", "spark"], "Invalid value for '--executor'"),
    (["study", "resume", "{tmp}"], "is not a study folder"),
    (["export", "{tmp}", "--pick", "knee", "--trial", "1"], "exactly one of --pick or --trial"),
    (["config", "validate", "{bad}"], "unknown key"),
    (["evaluate", "{space}"], "not a readable JSON design export"),
    (["frobnicate"], "No such command"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CLI, ids=[m for _, m in BAD_CLI])
def test_bad_cli_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    space = _space(tmp_path, "name: x\nsearch_space: {exit_threshold: {type: float, low: 0, high: 1}}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncolor: red\nsearch_space: {exit_threshold: {type: float, low: 0, high: 1}}\n")
    args = [a.format(space=space, tmp=tmp_path, bad=bad) for a in args]
    run = dse(*args, cwd=tmp_path)
    assert run.returncode != 0
    assert message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_missing_glue_folder_is_one_line(tmp_path: Path) -> None:
    space = _space(tmp_path, "name: x\ndata: {glue_dir: /no/such/glue}\n"
                             "search_space: {exit_threshold: {type: float, low: 0, high: 1}}\n")
    run = dse("study", "run", str(space), "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert run.returncode == 1 and "/no/such/glue" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_missing_model_path_is_one_line(tmp_path: Path) -> None:
    space = _space(tmp_path, "name: x\nmodel: {name: ./no-such-model}\n"
                             "search_space: {exit_threshold: {type: float, low: 0, high: 1}}\n")
    run = dse("study", "run", str(space), "--results-dir", str(tmp_path / "r"), cwd=tmp_path,
              env={"DSE_GLUE_DIR": str(GLUE)})
    assert run.returncode == 1 and "does not exist" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_entropy_trace_drives_the_hardware_model(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    # 3 sentences, 6 layers (MiniLM): confident after layers 1, 3 and never
    trace.write_text("tokens,entropy_1,entropy_2,entropy_3,entropy_4,entropy_5,entropy_6\n"
                     "10,0.05,0.1,0.1,0.1,0.1,0.1\n20,0.6,0.5,0.05,0.1,0.1,0.1\n30,0.6,0.6,0.6,0.6,0.6,0.6\n")
    run = dse("trace", str(trace), "--threshold", "0.2")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["avg_exit_layer"] == pytest.approx((1 + 3 + 6) / 3)
    assert out["energy_uj"] > 0 and out["valid"]
    lower = json.loads(dse("trace", str(trace), "--threshold", "0.2", "--voltage", "0.5").stdout)
    assert lower["energy_uj"] < out["energy_uj"] and lower["latency_ms"] > out["latency_ms"]
    bad = tmp_path / "bad.csv"
    bad.write_text("tokens,entropy_1\n10,0.1\n")
    run = dse("trace", str(bad), "--threshold", "0.2")
    assert run.returncode == 1 and "has 1 layers but" in run.stderr
