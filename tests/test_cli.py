"""The ``dse`` command line: a real study end to end, and clean errors for bad input.

The end-to-end test fine-tunes the real packaged MiniLM on real SST-2 rows (a short budget:
``search_spaces/smoke.yaml``) and runs the study through the installed console script.
"""

from __future__ import annotations

import json
import os
import re
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


def run_space(name: str, results: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``dse study run search_spaces/<name>.yaml`` into ``results``; it must succeed."""
    run = dse("study", "run", str(ROOT / "search_spaces" / f"{name}.yaml"), "--results-dir", str(results), env=env)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory, shared_cache_dir: Path) -> tuple[Path, dict[str, str]]:  # noqa: ANN001
    if not GLUE.is_dir():
        pytest.fail(f"real GLUE data not found at {GLUE} (set DSE_GLUE_DIR)")
    base = tmp_path_factory.mktemp("smoke")
    # the session's fine-tune cache: the other real-model tests reuse the fine-tuned checkpoint
    env = {"DSE_GLUE_DIR": str(GLUE), "DSE_CACHE_DIR": str(shared_cache_dir)}
    run = run_space("smoke", base / "results", env)
    assert "Pareto front of smoke" in run.stdout
    return base / "results" / "smoke", env


@pytest.mark.integration
def test_real_study_outputs(smoke_study) -> None:  # noqa: ANN001
    folder, _ = smoke_study
    trials = pd.read_csv(folder / "trials.csv")
    front = pd.read_csv(folder / "pareto.csv")
    assert ((trials["state"] == "COMPLETE") & ~trials["derived"]).sum() == 8
    # the cheap-knob sweep adds derived designs around each new compression setting
    derived = trials[trials["derived"]]
    assert len(derived) >= 1 and derived["feasible"].all()
    assert set(derived["derived_from"].dropna().astype(int)) <= set(trials.loc[~trials["derived"], "trial"])
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
    out = tmp_path / "knee"
    run = dse("export", str(folder), "--pick", "knee", "-o", str(out), env=env)
    assert run.returncode == 0, run.stderr
    record = json.loads((out / "design.json").read_text())
    assert record["_type"] == "edgebert-dse.design" and record["_version"] == 2
    accelerator = record["_data"]["accelerator"]
    assert accelerator and json.loads((out / "accelerator.json").read_text()) == accelerator
    assert accelerator["adaptivfloat"]["per_tensor_bias"]  # biases of the exported weights
    for target in (out, out / "design.json"):
        again = dse("evaluate", str(target), env=env)
        assert again.returncode == 0, again.stderr
        metrics = json.loads(again.stdout)
        for name, value in record["_data"]["metrics"].items():
            assert metrics[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name

    # the Hugging Face folder alone reproduces the trial's accuracy on the same dev rows
    assert {"config.json", "model.safetensors", "off_ramps.safetensors", "tokenizer.json"} <= {
        p.name for p in (out / "model").iterdir()}
    scored = dse("evaluate", str(out), "--model", env=env)
    assert scored.returncode == 0, scored.stderr
    score = json.loads(scored.stdout)
    assert score["accuracy"] == record["_data"]["metrics"]["accuracy"]  # exactly
    assert score["avg_exit_layer"] == pytest.approx(record["_data"]["metrics"]["avg_exit_layer"], rel=1e-6)
    assert score["dev_rows"] == 200

    default = dse("export", str(folder), "--trial", str(record["_data"]["trial"]), env=env)
    assert default.returncode == 0, default.stderr
    assert (folder / "exports" / f"trial-{record['_data']['trial']}" / "model" / "config.json").is_file()


@pytest.mark.integration
def test_deploy_quantizes_the_exported_design(smoke_study, tmp_path: Path) -> None:  # noqa: ANN001
    folder, env = smoke_study
    out = tmp_path / "knee"
    assert dse("export", str(folder), "--pick", "knee", "-o", str(out), env=env).returncode == 0
    run = dse("deploy", str(out), "--threads", "1", "--max-rows", "100", env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["task"] == "sst2" and report["dev_rows"] == 100 and report["threads"] == 1
    fp32, int8 = report["fp32"], report["int8"]
    assert 0 < int8["size_mb"] < fp32["size_mb"]
    # fp32 artifact = the exported model at batch size 1, without AdaptivFloat activation
    # quantization (the smoke knee has none): the trial's accuracy up to round-off at boundaries
    assert abs(fp32["accuracy"] - report["trial_accuracy"]) <= 2
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 10 and report["prediction_agreement"] >= 0.8
    for f in (fp32, int8):
        assert 0 < f["latency_median_ms"] <= f["latency_p95_ms"] and 1 <= f["avg_exit_layer"] <= 6
    assert {"model_fp32.pt", "model_int8.pt", "deploy.json"} <= {p.name for p in (out / "deploy").iterdir()}


@pytest.mark.integration
def test_study_plots_hypervolume_and_report(smoke_study, tmp_path: Path) -> None:  # noqa: ANN001
    folder, env = smoke_study
    for name in ("pareto", "hypervolume", "energy_breakdown", "knobs"):
        for ext in ("png", "svg"):
            assert (folder / "plots" / f"{name}.{ext}").stat().st_size > 5_000, (name, ext)
    status = json.loads(dse("study", "status", str(folder), "--format", "json", env=env).stdout)
    assert status["hypervolume_reference"] == {"accuracy": 70.0, "energy_uj": 1000.0, "latency_ms": 5.0}
    assert status["hypervolume_reference_source"] == "fixed in the study definition"
    assert status["hypervolume"] > 0
    out = tmp_path / "report.html"
    run = dse("report", str(folder), "-o", str(out), "--design", "best:latency_ms", env=env)
    assert run.returncode == 0, run.stderr
    # the per-sentence figures come from the cached logits and agree with what the trial recorded
    found = re.search(r"re-derived mean latency ([0-9.e+-]+) ms \(recorded on the trial: ([0-9.e+-]+) ms\)",
                      out.read_text(encoding="utf-8"))
    assert found is not None
    assert float(found.group(1)) == pytest.approx(float(found.group(2)), rel=1e-3)
    assert (folder / "plots" / "design-best-latency_ms.svg").is_file()


@pytest.mark.integration
def test_status_and_resume_with_ray(smoke_study) -> None:  # noqa: ANN001
    folder, env = smoke_study
    status = json.loads(dse("study", "status", str(folder), "--format", "json", env=env).stdout)
    assert status["completed"] == 8 and status["pareto_size"] >= 1
    resumed = dse("study", "resume", str(folder), "--n-trials", "10", "--executor", "ray", env=env)
    assert resumed.returncode == 0, resumed.stderr
    status = json.loads(dse("study", "status", str(folder), "--format", "json", env=env).stdout)
    assert status["completed"] == 10 and status["target_trials"] == 10  # the override, not the definition's 8


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    run = dse("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"dse {version('edgebert-dse')}"


def test_python_dash_m_dse_is_the_same_command(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "dse", "--help"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Usage: dse" in run.stdout and "study" in run.stdout and "--version" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "dse", "frobnicate"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert bad.returncode == 2 and "No such command" in bad.stderr


def test_config_schema_validates_a_definition(tmp_path: Path) -> None:
    import jsonschema
    import yaml

    run = dse("config", "schema")
    assert run.returncode == 0, run.stderr
    validator = jsonschema.Draft202012Validator(json.loads(run.stdout))
    assert not list(validator.iter_errors(yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())))


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
    (["evaluate", "{tmp}"], "not a design export folder (no design.json)"),
    (["evaluate", "{tmp}", "--model"], "no such exported model folder"),
    (["deploy", "{tmp}"], "not a design export folder (no model/config.json"),
    (["deploy", "{tmp}/nope"], "no such export folder"),
    (["deploy", "{tmp}", "--threads", "0"], "Invalid value for '--threads'"),
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


@pytest.mark.integration
def test_study_searches_training_time_and_post_training_knobs(smoke_study, tmp_path: Path) -> None:  # noqa: ANN001
    from dse.study.engine import StudyFolder, open_study

    _, env = smoke_study
    run_space("smoke_training", tmp_path, env)
    folder = StudyFolder(tmp_path / "smoke_training")
    study = open_study(folder, folder.load_config(), create=False)
    done = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs.get("derived")]
    assert len(done) == 4
    trained = [t for t in done if t.params["pruning_method"] == "magnitude"]
    plain = [t for t in done if t.params["pruning_method"] == "none"]
    assert trained and plain  # the seeded sampler draws both training-time settings
    for t in trained:  # every one reuses the one compression-aware fine-tune, really 50% sparse
        sparsity = t.user_attrs["details"]["trained_matrix_sparsity"]
        assert all(abs(v - 0.5) < 0.01 for v in sparsity.values())
    assert len({t.user_attrs["details"]["trained_key"] for t in trained}) == 1
    # distillation is fixed on, so "none" is a distillation-only fine-tune: its own model, dense
    plain_keys = {t.user_attrs["details"]["trained_key"] for t in plain}
    assert len(plain_keys) == 1 and plain_keys.isdisjoint(t.user_attrs["details"]["trained_key"] for t in trained)
    for t in plain:
        assert all(v < 0.01 for v in t.user_attrs["details"]["trained_matrix_sparsity"].values())
    assert all(60 <= t.user_attrs["metrics"]["accuracy"] <= 100 for t in done)


@pytest.mark.integration
def test_study_with_envm_faults_trades_cell_density_for_accuracy(smoke_study, tmp_path: Path) -> None:  # noqa: ANN001
    _, env = smoke_study
    run_space("smoke_faults", tmp_path, env)
    trials = pd.read_csv(tmp_path / "smoke_faults" / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert (~done["derived"]).sum() == 4
    # the mean of 3 faulty passes; faults can fix a wrong answer by chance, hence 1 point of slack
    assert done["accuracy_under_faults"].notna().all()
    assert (done["accuracy_under_faults"] <= done["accuracy"] + 1.0).all()
    by_cell = done.groupby("knob.envm_cell")["faults.faulty_cells_mean"]
    assert {"rram_slc", "rram_mlc3"} <= set(by_cell.groups)  # the trials and their sweeps score both
    assert by_cell.max()["rram_slc"] == 0 < by_cell.min()["rram_mlc3"]  # an SLC cell never errs
    # 9.7e-2 of the MLC3 cells are faulty: the embeddings break, accuracy falls
    mlc3_rows = done[done["knob.envm_cell"] == "rram_mlc3"]
    assert (mlc3_rows["accuracy_under_faults"] < mlc3_rows["accuracy"] - 1.0).all()


@pytest.mark.integration
def test_multitask_study_serves_three_tasks_from_one_embedding_table(smoke_study, tmp_path: Path) -> None:  # noqa: ANN001
    import torch

    from dse import load_exported_model
    from dse.compression.apply import embedding_tables

    _, env = smoke_study
    run = run_space("smoke_multitask", tmp_path, env)
    assert "baselines sst2" in run.stdout and "approximation: qnli" in run.stdout
    folder = tmp_path / "smoke_multitask"
    trials = pd.read_csv(folder / "trials.csv")
    done = trials[trials["state"] == "COMPLETE"]
    assert (~done["derived"]).sum() == 4 and done["derived"].any()  # the sweep of the shared hardware knobs
    drops = done[[f"{t}.accuracy_drop" for t in ("sst2", "mrpc", "qnli")]]
    assert (done["worst_accuracy_drop"] == drops.max(axis=1)).all()
    mixed = 0.5 * done["sst2.accuracy"] + 0.25 * done["mrpc.accuracy"] + 0.25 * done["qnli.accuracy"]
    assert ((done["accuracy"] - mixed).abs() < 1e-9).all()
    assert (done.loc[done["feasible"], "worst_accuracy_drop"] <= 15.0).all()
    assert done["sst2.accuracy"].max() >= 70  # a real fine-tune, not chance
    status = json.loads(dse("study", "status", str(folder), "--format", "json", env=env).stdout)
    assert "fine-tuned on 40% of the dev rows" in status["approximations"]["qnli"]
    assert set(status["baseline_points_by_task"]) == {"sst2", "mrpc", "qnli"}

    out = tmp_path / "export"
    assert dse("export", str(folder), "--pick", "knee", "-o", str(out), env=env).returncode == 0
    data = json.loads((out / "design.json").read_text())["_data"]
    memory = data["details"]["memory_breakdown_mb"]
    assert data["metrics"]["memory_mb"] == pytest.approx(sum(memory.values()))  # the table counted once
    models = {t: load_exported_model(out / t / "model").model for t in ("sst2", "mrpc", "qnli")}
    tables = {t: embedding_tables(m) for t, m in models.items()}
    for name, table in tables["sst2"].items():  # three fine-tunes, one stored embedding table
        assert all(torch.equal(table.weight, tables[t][name].weight) for t in ("mrpc", "qnli"))
    assert all((out / t / "accelerator.json").is_file() for t in models)
    again = dse("evaluate", str(out), env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == pytest.approx(data["metrics"])  # rebuilt from scratch: same figures
