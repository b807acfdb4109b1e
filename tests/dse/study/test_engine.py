"""Coordinator: study folder, orphan sweep, single-coordinator lock, faults, kill -9 and resume.

Studies here run the real engine and the real ``evaluate_trial`` on a tiny random-weight BERT
(``conftest.tiny_context``); faults come from evaluation callables injected into ``run_study``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dse.errors import DSEError
from dse.evaluation import evaluate_trial
from dse.study.engine import (
    MAX_RETRIES,
    StudyFolder,
    coordinator_lock,
    count_complete,
    distributions,
    open_study,
    run_study,
    sweep_orphans,
)
from dse.study.executors import TransientEvaluationError

from .conftest import tiny_config as _config
from .conftest import tiny_context

HERE = Path(__file__).resolve().parent


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


def test_refuses_a_study_written_by_a_newer_format(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    open_study(folder, _config(), create=True).set_user_attr("format_version", 99)
    with pytest.raises(DSEError, match="newer edgebert-dse"):
        open_study(folder, _config(), create=False)


def test_readers_never_create_a_study(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    open_study(folder, _config(), create=True)
    folder.journal.write_bytes(b"")  # the folder is there, its trials are not
    with pytest.raises(DSEError, match="holds no study"):
        open_study(folder, _config(), create=False)
    assert folder.journal.read_bytes() == b""


def test_orphans_are_failed_and_requeued_with_bounded_retries(tmp_path: Path) -> None:
    study = open_study(StudyFolder(tmp_path / "unit"), _config(), create=True)
    trial = study.ask(fixed_distributions=distributions(_config()))
    params = dict(trial.params)
    assert sweep_orphans(study) == 1
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[0].user_attrs["fail_reason"] == "coordinator stopped"
    assert study.trials[1].system_attrs["fixed_params"] == params  # asked next, with these params
    # the re-queued trial dies too, twice: it is re-queued at most MAX_RETRIES times
    for _ in range(MAX_RETRIES):
        study.ask(fixed_distributions=distributions(_config()))
        sweep_orphans(study)
    assert sum(t.state == TrialState.WAITING for t in study.trials) == 0
    assert sum(t.params == params for t in study.trials) == MAX_RETRIES + 1


def test_one_coordinator_per_study(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    with coordinator_lock(folder):
        with pytest.raises(DSEError, match=f"already running \\(coordinator pid {os.getpid()}\\)"):
            with coordinator_lock(folder):
                pass
    with coordinator_lock(folder):  # released on exit
        pass


def test_lock_of_a_killed_coordinator_is_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = StudyFolder(tmp_path / "unit")
    open_study(folder, _config(), create=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from dse.study.engine import StudyFolder, coordinator_lock
            with coordinator_lock(StudyFolder(Path({str(folder.path)!r}))):
                print("locked", flush=True)
                time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(DSEError, match=f"coordinator pid {holder.pid}"):
            with coordinator_lock(folder):
                pass
        # a second coordinator through the real CLI is refused the same way, in one line
        from dse.cli import main

        assert main(["study", "resume", str(folder.path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: study {folder.path} is already running (coordinator pid {holder.pid})")
        assert err.count("\n") == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert folder.lock.read_text() == str(holder.pid)  # the stale pid is still written there
    with coordinator_lock(folder):  # the kernel dropped the flock with the process
        assert folder.lock.read_text() == str(os.getpid())


def test_run_counts_only_finished_trials_and_ignores_derived(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = _config(n_trials=4)
    stats = run_study(folder, config, context=tiny_context(folder.cache))
    study = open_study(folder, config, create=False)
    assert stats.completed == 4 and count_complete(study) == 4
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    done = study.trials[0]
    study.add_trial(optuna.trial.create_trial(
        params=done.params, distributions=done.distributions, values=done.values,
        user_attrs={"derived": True}))
    assert count_complete(study) == 4  # a derived trial is not part of the budget
    again = run_study(folder, config, context=tiny_context(folder.cache))  # nothing left to do
    assert again.completed == 4 and len(open_study(folder, config, create=False).trials) == 5


def test_failed_evaluation_records_its_reason_and_the_study_goes_on(tmp_path: Path) -> None:
    def fragile(ctx, knobs):  # noqa: ANN001, ANN202
        if knobs["envm_cell"] == "pcm":
            raise ValueError("pcm is not supported by this test\nsecond line")
        return evaluate_trial(ctx, knobs)

    folder = StudyFolder(tmp_path / "unit")
    config = _config(n_trials=5)
    stats = run_study(folder, config, context=tiny_context(folder.cache), evaluate=fragile)
    study = open_study(folder, config, create=False)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stats.completed == 5 and stats.failed == len(failed) >= 1
    assert all(t.user_attrs["fail_reason"] == "ValueError: pcm is not supported by this test" for t in failed)
    assert all(t.params["envm_cell"] == "rram_slc" for t in study.trials if t.state == TrialState.COMPLETE)


def test_transient_errors_are_retried_then_fail_the_trial(tmp_path: Path) -> None:
    calls: dict[str, int] = {}

    def flaky(ctx, knobs):  # noqa: ANN001, ANN202
        key = json.dumps(knobs, sort_keys=True)
        calls[key] = calls.get(key, 0) + 1
        if knobs["envm_cell"] == "pcm":
            raise OSError(28, "No space left on device")  # never recovers: retried, then failed
        if calls[key] == 1:
            raise TransientEvaluationError("first attempt lost")
        return evaluate_trial(ctx, knobs)

    folder = StudyFolder(tmp_path / "unit")
    config = _config(n_trials=4)
    stats = run_study(folder, config, context=tiny_context(folder.cache), evaluate=flaky)
    study = open_study(folder, config, create=False)
    assert stats.completed == 4
    for t in study.trials:
        key = json.dumps(t.user_attrs["knobs"], sort_keys=True)
        if t.state == TrialState.FAIL:
            assert t.user_attrs["fail_reason"].startswith("TransientEvaluationError: OSError")
            assert calls[key] >= 1 + config.executor.max_retries
        else:
            assert calls[key] >= 2


def test_too_many_failures_stop_the_study_with_a_clear_error(tmp_path: Path) -> None:
    def broken(ctx, knobs):  # noqa: ANN001, ANN202
        raise RuntimeError("always")

    folder = StudyFolder(tmp_path / "unit")
    with pytest.raises(DSEError, match="trials failed; last: RuntimeError: always"):
        run_study(folder, _config(n_trials=2), context=tiny_context(folder.cache), evaluate=broken)
    with coordinator_lock(folder):  # the lock was released on the way out
        pass


# A coordinator in a child process that evaluates slowly and logs every model evaluation it
# finishes (a logits-cache miss), so a parent can kill -9 it anywhere and count duplicates.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {here!r})
    from tiny_eval import tiny_config, tiny_context
    from dse.evaluation import evaluate_trial
    from dse.study.engine import StudyFolder, run_study

    def slow(ctx, knobs):
        time.sleep(0.2)
        out = evaluate_trial(ctx, knobs)
        if not out.cache_hit:
            with open({log!r}, "a") as fh:
                fh.write(out.attrs["eval_key"] + "\\n")
        return out

    folder = StudyFolder(Path({folder!r}))
    run_study(folder, tiny_config(n_trials={n}), context=tiny_context(folder.cache), evaluate=slow)
""")


def _wait_for_progress(folder: StudyFolder, child: subprocess.Popen, grown_by: int) -> None:
    """Until the child's journal has grown by ``grown_by`` bytes (it is inside the study loop)."""
    start = folder.journal.stat().st_size if folder.journal.is_file() else 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if folder.journal.is_file() and folder.journal.stat().st_size >= start + grown_by:
            return
        time.sleep(0.05)
    raise AssertionError("the study made no progress")


def test_kill_9_at_any_moment_then_resume(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    log = tmp_path / "evaluations.log"
    n = 8
    script = CHILD.format(here=str(HERE.parent), log=str(log), folder=str(folder.path), n=n)
    finished: dict[int, tuple[float, ...]] = {}
    for grown_by, delay in ((1, 0.0), (3000, 0.13), (1500, 0.31)):  # at setup, mid-trial, mid-write
        child = subprocess.Popen([sys.executable, "-c", script])
        _wait_for_progress(folder, child, grown_by)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        if folder.config_sha.is_file():
            study = open_study(folder, _config(n_trials=n), create=False)
            for t in study.get_trials(states=(TrialState.COMPLETE,)):
                assert finished.setdefault(t.number, tuple(t.values)) == tuple(t.values)
    done = subprocess.run([sys.executable, "-c", script], timeout=300)
    assert done.returncode == 0
    study = open_study(folder, _config(n_trials=n), create=False)
    complete = {t.number: tuple(t.values) for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert all(complete.get(k) == v for k, v in finished.items())  # no finished trial lost
    assert count_complete(study) == n  # exactly the budget, RUNNING orphans not counted
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    keys = log.read_text().split()
    assert len(keys) == len(set(keys))  # no evaluation ran to completion twice
    assert all(t.user_attrs.get("fail_reason") == "coordinator stopped"
               for t in study.get_trials(states=(TrialState.FAIL,)))


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    script = CHILD.format(here=str(HERE.parent), log=str(tmp_path / "ev.log"), folder=str(folder.path), n=6)
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    _wait_for_progress(folder, child, 2000)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in err
    assert folder.lock.read_text() == ""  # released and cleared on the way out
    assert subprocess.run([sys.executable, "-c", script], timeout=300).returncode == 0
    assert count_complete(open_study(folder, _config(n_trials=6), create=False)) == 6


def test_accuracy_under_faults_constraint_is_a_lower_bound() -> None:
    from dse.config import parse_study_config
    from dse.study.engine import _constraints

    config = parse_study_config({"name": "c", "constraints": {"min_accuracy_under_faults_points": 70.0},
                                 "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.5}}},
                                source="test")
    metrics = {"accuracy_drop": 1.0, "latency_ms": 1.0, "area_mm2": 1.0, "memory_mb": 1.0,
               "accuracy_under_faults": 65.5}
    assert _constraints(config, metrics) == {"accuracy_under_faults": 4.5}  # 70 - 65.5 > 0: infeasible
    assert _constraints(config, {**metrics, "accuracy_under_faults": 72.0}) == {"accuracy_under_faults": -2.0}
