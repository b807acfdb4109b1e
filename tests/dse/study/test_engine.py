"""Coordinator bookkeeping: study folder, orphan sweep, single-coordinator lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from dse.config import parse_study_config
from dse.errors import DSEError
from dse.study.engine import StudyFolder, coordinator_lock, distributions, open_study, sweep_orphans

SPACE = {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.1},
         "envm_cell": {"type": "categorical", "choices": ["rram_slc", "pcm"]}}


def _config(**extra):  # noqa: ANN003, ANN202
    return parse_study_config({"name": "unit", "search_space": SPACE, **extra}, source="test")


def test_folder_is_created_and_reopened(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    study = open_study(folder, _config(), create=True)
    assert folder.config.is_file() and folder.journal.is_file()
    assert folder.load_config() == _config()
    assert open_study(folder, _config(), create=False).study_name == study.study_name


def test_refuses_a_folder_of_another_study(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    open_study(folder, _config(), create=True)
    with pytest.raises(DSEError, match="different study definition"):
        open_study(folder, _config(n_trials=3), create=True)
    with pytest.raises(DSEError, match="not a study folder"):
        open_study(StudyFolder(tmp_path / "empty"), _config(), create=False)


def test_orphans_are_failed_and_requeued_with_bounded_retries(tmp_path: Path) -> None:
    study = open_study(StudyFolder(tmp_path / "unit"), _config(), create=True)
    trial = study.ask(fixed_distributions=distributions(_config()))
    params = dict(trial.params)
    assert sweep_orphans(study) == 1
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].system_attrs["fixed_params"] == params  # asked next, with these params
    # the re-queued trial dies too, twice: it is re-queued at most MAX_RETRIES times
    for _ in range(2):
        study.ask(fixed_distributions=distributions(_config()))
        sweep_orphans(study)
    assert sum(t.state == TrialState.WAITING for t in study.trials) == 0
    assert sum(t.params == params for t in study.trials) == 3


def test_one_coordinator_per_study(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    with coordinator_lock(folder):
        with pytest.raises(DSEError, match="already running"):
            with coordinator_lock(folder):
                pass
    with coordinator_lock(folder):  # released on exit (and by the kernel if killed)
        pass
