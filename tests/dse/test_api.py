"""The Python API (dse.api, re-exported by ``import dse``) on a tiny real model: a whole study
without the CLI. The same on the real MiniLM, with export and re-scoring: tests/test_python_api.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

import dse
from dse.errors import DSEError

from .tiny_eval import tiny_config, tiny_context


def test_import_dse_is_light_and_every_public_name_resolves() -> None:
    script = ("import sys, dse\n"
              "heavy = [m for m in ('torch', 'transformers', 'optuna', 'ray', 'pandas') if m in sys.modules]\n"
              "assert not heavy, heavy\n"
              "print(dse.__version__)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    from importlib.metadata import version

    assert run.stdout.strip() == dse.__version__ == version("edgebert-dse")
    for name in dse.__all__:
        assert getattr(dse, name) is not None, name
    assert (Path(dse.__file__).parent / "py.typed").is_file()


def test_bad_deploy_evaluate_and_trace_requests_fail_before_torch_is_imported(tmp_path: Path) -> None:
    """A wrong format, a folder that is not an export, a broken trace option: one error line at
    once, not after the seconds torch and transformers take to import."""
    space = tmp_path / "space.yaml"
    space.write_text("name: x\n")
    script = (
        "import sys, dse\n"
        "from dse.errors import DSEError\n"
        f"folder = {str(tmp_path)!r}\n"
        "calls = [lambda: dse.deploy(folder, format='tflite'), lambda: dse.deploy(folder, lengths=[32]),\n"
        "         lambda: dse.deploy(folder + '/nope'), lambda: dse.deploy(folder),\n"
        f"         lambda: dse.evaluate_export(folder), lambda: dse.evaluate_export({str(space)!r}),\n"
        f"         lambda: dse.evaluate_trace({str(space)!r}, threshold=0.2, envm_cell='bogus')]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except (DSEError, ValueError) as exc:\n"
        "        print(str(exc).splitlines()[0])\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 7 and "unknown deploy format 'tflite'" in lines[0] and "applies to --format litert" in lines[1]
    assert "no such export folder" in lines[2] and "no model/config.json" in lines[3]
    assert "no design.json" in lines[4] and "JSON design export" in lines[5] and "unknown eNVM cell" in lines[6]


def test_a_whole_study_through_the_api(tmp_path: Path) -> None:
    config = tiny_config(n_trials=4)
    study = dse.Study.create(config, results_dir=tmp_path)
    assert study.path == tmp_path / "unit" and study.name == "unit" and not study.path.exists()  # nothing yet
    seen: list[dse.Progress] = []
    stats = study.run(context=tiny_context(study.folder.cache), progress=seen.append)
    assert stats.completed == 4 and stats.failed == 0
    assert [p.completed for p in seen] == [1, 2, 3, 4] and all(p.target == 4 for p in seen)
    assert all(1 <= p.pareto_size <= p.completed for p in seen) and seen[-1].trials_per_minute > 0

    analysis = study.analyse()
    assert isinstance(analysis.trials, pd.DataFrame) and (analysis.trials["state"] == "COMPLETE").sum() == 4
    assert isinstance(analysis.front, pd.DataFrame) and len(analysis.front) >= 1
    assert list(analysis.history.columns) == ["trial", "feasible", "hypervolume"]
    picks = analysis.picks()
    assert set(picks) <= {"knee", "max-accuracy", "min-energy", "max-hv-contribution"} and "knee" in picks
    assert study.pick("knee") == picks["knee"] and study.pick("max-accuracy") == picks["max-accuracy"]

    outputs = study.write_outputs()
    assert {p.name for p in outputs.tables.values()} == {"trials.csv", "pareto.csv", "hypervolume.csv"}
    assert pd.read_csv(study.path / "trials.csv")["trial"].tolist() == analysis.trials["trial"].tolist()
    assert len(pd.read_csv(study.path / "pareto.csv")) == len(analysis.front)
    assert {"pareto", "hypervolume"} <= set(outputs.plots)
    for path in outputs.files:
        assert path.is_file() and path.stat().st_size > 0, path
    assert mpimg.imread(study.path / "plots" / "pareto.png").shape[0] > 100
    assert not [p for p in study.path.rglob("*.tmp")]

    status = study.status()
    assert status["study"] == "unit" and status["completed"] == 4 and status["pareto_size"] == len(analysis.front)
    json.dumps(status)  # JSON-ready

    again = dse.Study.open(study.path)  # resume is run() on an opened study
    assert again.config == study.config
    stats = again.run(n_trials=6, context=tiny_context(study.folder.cache))
    assert stats.completed == 6
    assert again.status()["completed"] == 6 and again.status()["target_trials"] == 6


def test_readers_refuse_what_is_not_a_study(tmp_path: Path) -> None:
    with pytest.raises(DSEError, match="is not a study folder"):
        dse.Study.open(tmp_path)
    study = dse.Study.create(tiny_config(), results_dir=tmp_path)
    with pytest.raises(DSEError, match="is not a study folder"):
        study.analyse()  # created, never run: nothing to read
    with pytest.raises(DSEError, match="exactly one of pick or trial"):
        study.export(pick="knee", trial=1)
    with pytest.raises(DSEError, match="unknown pick"):
        study.pick("best-ever")
    with pytest.raises(DSEError, match="not a design export folder"):
        dse.evaluate_export(tmp_path)
    with pytest.raises(DSEError, match="no such exported model folder"):
        dse.evaluate_export(tmp_path / "nope", model=True)
    with pytest.raises(DSEError, match="no such export folder"):
        dse.deploy(tmp_path / "nope")


def test_create_takes_a_file_and_a_storage(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("name: x\nsearch_space: {exit_threshold: {type: float, low: 0, high: 1}}\n")
    study = dse.Study.create(space, results_dir=tmp_path / "r", storage="sqlite")
    assert study.config.storage.kind == "sqlite" and study.path == tmp_path / "r" / "x"
    with pytest.raises(dse.ConfigError, match="--storage"):
        dse.Study.create(space, storage="mongodb://nowhere")


def test_design_export_is_a_path(tmp_path: Path) -> None:
    exported = dse.DesignExport(tmp_path / "knee", trial=3, pick="knee")
    assert os.fspath(exported) == str(tmp_path / "knee") and Path(exported) == tmp_path / "knee"


def test_config_schema_and_hash() -> None:
    schema = dse.config_schema()
    assert schema["title"] == "edgebert-dse study definition"
    config = tiny_config()
    assert dse.config_hash(config) == dse.config_hash(dse.StudyConfig.model_validate(config.model_dump()))


def test_the_sampler_chosen_at_create_is_recorded_and_kept(tmp_path: Path) -> None:
    config = tiny_config(n_trials=2)  # the definition says tpe
    study = dse.Study.create(config, results_dir=tmp_path, sampler="random", seed=4)
    assert study.config.sampler.name == "random" and study.config.sampler.seed == 4
    assert study.run(context=tiny_context(study.folder.cache)).completed == 2
    reopened = dse.Study.open(study.path)  # what dse study resume runs: the recorded sampler
    assert (reopened.config.sampler.name, reopened.config.sampler.seed) == ("random", 4)
    assert reopened.run(n_trials=3, context=tiny_context(study.folder.cache)).completed == 3
    with pytest.raises(DSEError, match=r"was run with sampler random \(seed 4\), not tpe \(seed 0\)"):
        dse.Study.create(config, results_dir=tmp_path).run(context=tiny_context(study.folder.cache))
    with pytest.raises(DSEError, match="unknown sampler 'cmaes'"):
        dse.Study.create(config, results_dir=tmp_path, sampler="cmaes")
