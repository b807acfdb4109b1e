"""A real study folder written through the engine's storage, with recorded trials (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from dse.config import StudyConfig, parse_study_config
from dse.study.engine import StudyFolder, distributions, open_study

STUDY = {
    "name": "recorded", "data": {"dev_subset": 16},
    "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.1},
                     "vmac_lanes": {"type": "categorical", "choices": [8, 16]},
                     "envm_cell": {"type": "categorical", "choices": ["rram_slc", "pcm"]}},
    "constraints": {"max_accuracy_drop_points": 3.0},
    "hypervolume_reference": {"accuracy": 70.0, "energy_uj": 1000.0, "latency_ms": 5.0},
}
# accuracy, energy_uj, latency_ms per trial; None: the trial failed
RECORDED = [(85.0, 600.0, 3.0), (86.0, 700.0, 2.5), (80.0, 300.0, 1.0), None, (84.0, 400.0, 2.0),
            (83.5, 800.0, 4.0)]
BASELINE = 86.0


def recorded_config() -> StudyConfig:
    return parse_study_config(STUDY, source="test")


@pytest.fixture
def recorded_study(tmp_path: Path) -> StudyFolder:
    """Six trials as the coordinator records them (metrics, knobs, details, constraints)."""
    config = recorded_config()
    folder = StudyFolder(tmp_path / config.name)
    study = open_study(folder, config, create=True)
    study.set_user_attr("baseline_points", BASELINE)
    for values in RECORDED:
        trial = study.ask(fixed_distributions=distributions(config))
        trial.set_user_attr("knobs", config.knob_values(trial.params))
        if values is None:
            trial.set_user_attr("fail_reason", "InvalidDesign: test")
            study.tell(trial, state=TrialState.FAIL)
            continue
        accuracy, energy, latency = values
        trial.set_user_attr("metrics", {"accuracy": accuracy, "accuracy_drop": BASELINE - accuracy,
                                        "energy_uj": energy, "latency_ms": latency, "area_mm2": 2.0})
        trial.set_user_attr("details", {"energy_breakdown_uj": {
            "mac": 0.05 * energy, "sram": 0.1 * energy, "envm": 0.01 * energy, "dram": 0.6 * energy,
            "leakage": 0.04 * energy, "sfu": 0.0, "overhead": 0.2 * energy}})
        trial.set_constraint("accuracy_drop", BASELINE - accuracy - 3.0)
        study.tell(trial, [accuracy, energy, latency])
    return folder

