"""The versioned design JSON and the export folder's guards (the full export: tests/test_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from dse.artifacts.export import (
    ACCELERATOR_FILE,
    DESIGN_FILE,
    EXPORT_TYPE,
    EXPORT_VERSION,
    MODEL_DIR,
    design_record,
    export_design,
    load_design,
    write_design,
)
from dse.config import StudyConfig, parse_study_config
from dse.errors import DSEError

METRICS = {"accuracy": 81.5, "accuracy_drop": 0.5, "energy_uj": 400.0, "latency_ms": 2.0,
           "p95_latency_ms": 3.0, "area_mm2": 2.0, "memory_mb": 16.0, "avg_exit_layer": 4.5,
           "target_met_fraction": 1.0}


def _config() -> StudyConfig:
    return parse_study_config({"name": "tiny", "task": "sst2", "n_trials": 2,
                               "search_space": {"exit_threshold": {"type": "float", "low": 0, "high": 1}},
                               "fixed": {"vmac_lanes": 8}}, source="test")


def _study(config: StudyConfig) -> optuna.Study:
    """An in-memory study with one COMPLETE trial (0) and one FAILED trial (1)."""
    study = optuna.create_study(directions=config.directions())
    study.set_user_attr("prepared_key", "abc123")
    dist = {"exit_threshold": FloatDistribution(0, 1)}
    study.add_trial(optuna.trial.create_trial(
        params={"exit_threshold": 0.3}, distributions=dist,
        values=[METRICS[n] for n in config.objective_names()],
        user_attrs={"knobs": config.knob_values({"exit_threshold": 0.3}), "metrics": METRICS},
    ))
    study.add_trial(optuna.trial.create_trial(params={"exit_threshold": 0.1}, distributions=dist,
                                              state=optuna.trial.TrialState.FAIL))
    return study


@pytest.fixture(scope="module")
def record() -> dict:
    config = _config()
    return design_record(_study(config), config, 0)


def test_design_json_round_trips_from_the_folder_or_the_file(record: dict, tmp_path: Path) -> None:
    assert record["_type"] == EXPORT_TYPE and record["_version"] == EXPORT_VERSION == 2
    data = record["_data"]
    assert data["compression"]["exit_threshold"] == 0.3 and "exit_threshold" not in data["hardware"]
    assert data["hardware"]["vmac_lanes"] == 8 and data["prepared_key"] == "abc123"
    assert data["files"] == {"model": MODEL_DIR, "accelerator": ACCELERATOR_FILE}
    assert data["accelerator"]["vmac_lanes"] == 8
    write_design(record, tmp_path / DESIGN_FILE)
    for target in (tmp_path, tmp_path / DESIGN_FILE):
        loaded, config = load_design(target)
        assert loaded == json.loads(json.dumps(data)) and config == _config()


def test_version_1_files_still_load(record: dict, tmp_path: Path) -> None:
    old = {**record, "_version": 1}
    loaded, _ = load_design(write_design(old, tmp_path / "knee.json"))
    assert loaded["metrics"] == METRICS


def _write(path: Path, change) -> Path:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(change if isinstance(change, str) else json.dumps(change))
    return path


BAD = [
    ("missing-file", "no such file"),
    ("not-json", "design.json is damaged or not a readable JSON design export (JSONDecodeError"),
    ("wrong-type", f"not an {EXPORT_TYPE} export"),
    ("future-version", "export version 3 is not supported (this tool reads 1, 2)"),
    ("no-data", "malformed edgebert-dse.design export"),
    ("unknown-knob", "unknown knobs ['colour']"),
    ("knob-out-of-range", "encoder_pruning: 1.5 is outside the legal range"),
    ("knob-wrong-type", "envm_cell: 'bogus' is not one of"),
    ("empty-folder", "not a design export folder (no design.json)"),
    ("model-folder", "score an exported model with: dse evaluate --model"),
]


@pytest.mark.parametrize(("case", "message"), BAD, ids=[c for c, _ in BAD])
def test_bad_designs_are_one_line_errors(case: str, message: str, record: dict, tmp_path: Path) -> None:
    target = tmp_path / "x" / DESIGN_FILE
    if case == "not-json":
        _write(target, "{")
    elif case == "wrong-type":
        _write(target, {**record, "_type": "something.else"})
    elif case == "future-version":
        _write(target, {**record, "_version": 3})
    elif case == "no-data":
        _write(target, {"_type": EXPORT_TYPE, "_version": 2, "_data": {"metrics": {}}})
    elif case == "unknown-knob":
        data = {**record["_data"], "hardware": {**record["_data"]["hardware"], "colour": "red"}}
        _write(target, {**record, "_data": data})
    elif case == "knob-out-of-range":
        _write(target, {**record, "_data": {**record["_data"], "compression": {"encoder_pruning": 1.5}}})
    elif case == "knob-wrong-type":
        data = {**record["_data"], "hardware": {**record["_data"]["hardware"], "envm_cell": "bogus"}}
        _write(target, {**record, "_data": data})
    elif case == "empty-folder":
        target = tmp_path
    elif case == "model-folder":
        target = _write(tmp_path / MODEL_DIR / "config.json", "{}").parent
    with pytest.raises(DSEError) as err:
        load_design(target)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("number", "out", "message"), [
    (0, "knee.json", "the export is a folder"),
    (0, "a-file", "exists and is not a folder"),
    (7, "out", "trial 7 does not exist (the study has 2)"),
    (1, "out", "trial 1 is FAIL, not COMPLETE"),
])
def test_export_refuses_bad_targets_before_any_work(number: int, out: str, message: str, tmp_path: Path) -> None:
    config = _config()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(DSEError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_design(_study(config), config, number, tmp_path / out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing written


def _existing(tmp_path: Path, case: str) -> Path:
    """An export target that already holds something (issue #16: export deleted model/ silently)."""
    out = tmp_path / "out"
    (out / MODEL_DIR).mkdir(parents=True)
    (out / MODEL_DIR / "weights.bin").write_text("the user's own model")
    if case == "other-design":
        record = design_record(_study(_config()), _config(), 0)
        _write(out / DESIGN_FILE, {**record, "_data": {**record["_data"], "trial": 5}})
    elif case == "not-a-design":
        _write(out / DESIGN_FILE, "{")
    return out


@pytest.mark.parametrize("case", ["user-folder", "other-design", "not-a-design"])
def test_export_refuses_a_non_empty_folder_before_any_work(case: str, tmp_path: Path) -> None:
    config = _config()
    out = _existing(tmp_path, case)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DSEError, match="is not empty and not an export of trial 0") as err:
        export_design(_study(config), config, 0, out)
    assert "\n" not in str(err.value)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing lost


def test_export_with_force_still_never_replaces_a_model_folder_it_did_not_write(tmp_path: Path) -> None:
    config = _config()
    out = _existing(tmp_path, "user-folder")
    with pytest.raises(DSEError, match="is not an exported model; it will not be replaced"):
        export_design(_study(config), config, 0, out, force=True)
    assert (out / MODEL_DIR / "weights.bin").read_text() == "the user's own model"


def test_export_refuses_a_read_only_target_before_any_work(tmp_path: Path) -> None:
    import os

    config = _config()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    target = locked / "out" if os.geteuid() != 0 else Path("/proc/out")  # root writes anywhere but /proc
    try:
        with pytest.raises(DSEError, match="cannot write the export to"):
            export_design(_study(config), config, 0, target)
    finally:
        locked.chmod(0o755)
    assert not target.exists()


def test_export_refuses_a_trial_scored_with_fp32_activations(tmp_path: Path) -> None:
    # issue #15 item 3: an older dse measured accuracy with fp32 activations (activation_bits=0)
    # and charged 8 bits; such a trial has no coherent design to export
    config = _config()
    study = optuna.create_study(directions=config.directions())
    study.add_trial(optuna.trial.create_trial(
        params={"exit_threshold": 0.3}, distributions={"exit_threshold": FloatDistribution(0, 1)},
        values=[METRICS[n] for n in config.objective_names()],
        user_attrs={"knobs": {**config.knob_values({"exit_threshold": 0.3}), "activation_bits": 0},
                    "metrics": METRICS}))
    with pytest.raises(DSEError, match="trial 0 was scored with activation_bits: 0 is outside the legal range") as err:
        export_design(study, config, 0, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
