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
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    # the seeded sampler draws pcm: at least one trial really failed after its retries
    assert failed and stats.failed == len(failed) and len(done) == 4
    for t in failed:
        assert t.params["envm_cell"] == "pcm"
        assert t.user_attrs["fail_reason"].startswith("TransientEvaluationError: OSError")
        assert calls[json.dumps(t.user_attrs["knobs"], sort_keys=True)] >= 1 + config.executor.max_retries
    for t in done:  # lost once, retried, then scored
        assert t.params["envm_cell"] == "rram_slc" and calls[json.dumps(t.user_attrs["knobs"], sort_keys=True)] >= 2


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


# --- samplers: chosen by name (the CLI's --sampler/--seed), recorded, kept on resume -------------

# what each sampler leaves on the trials it suggested (random: nothing)
SAMPLER_MARKS = {"tpe": "tpe:relative_params", "gp": "gp:relative_params", "nsga2": "NSGAIISampler:generation"}


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random"])
def test_each_sampler_runs_a_tiny_study_and_is_recorded(tmp_path: Path, name: str) -> None:
    from dse.study.engine import sampler_option

    base = _config(n_trials=11)  # one past the TPE and GP start-up trials: their models are used
    config = base.model_copy(update={"sampler": sampler_option(base.sampler, name, 7)})
    folder = StudyFolder(tmp_path / "unit")
    stats = run_study(folder, config, context=tiny_context(folder.cache))
    study = open_study(folder, config, create=False)
    assert stats.completed == 11
    assert study.user_attrs["sampler"] == {"name": name, "seed": 7}
    assert folder.load_config().sampler == config.sampler  # config.yaml: what a resume runs with
    marks = {key.split(":")[0] for t in study.trials for key in t.system_attrs}
    others = {SAMPLER_MARKS[s].split(":")[0] for s in SAMPLER_MARKS if s != name}
    assert not marks & others
    if name in SAMPLER_MARKS:
        assert any(SAMPLER_MARKS[name] in key for t in study.trials for key in t.system_attrs)


def test_sampler_options_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dse.study.engine import sampler_option

    base = _config().sampler
    assert sampler_option(base, seed=3) == base.model_copy(update={"seed": 3})
    with pytest.raises(DSEError, match=r"^unknown sampler 'cmaes' \(tpe, nsga2, random, gp\)$"):
        sampler_option(base, "cmaes")
    with pytest.raises(DSEError, match="seed must be an integer"):
        sampler_option(base, seed=-1)
    monkeypatch.setitem(sys.modules, "scipy", None)  # what a machine without scipy looks like to an import
    with pytest.raises(DSEError, match="sampler gp needs the scipy package") as err:
        sampler_option(base, "gp")
    assert "\n" not in str(err.value)
    config = _config().model_copy(update={"sampler": base.model_copy(update={"name": "gp"})})
    with pytest.raises(DSEError, match="needs the scipy package"):  # a definition naming gp: before any write
        open_study(StudyFolder(tmp_path / "unit"), config, create=True)
    assert not (tmp_path / "unit").exists()


def test_a_folder_run_with_another_sampler_is_refused(tmp_path: Path) -> None:
    from dse.study.engine import sampler_option

    folder = StudyFolder(tmp_path / "unit")
    tpe = _config()
    open_study(folder, tpe, create=True)
    for name, seed in (("nsga2", None), (None, 5)):
        other = tpe.model_copy(update={"sampler": sampler_option(tpe.sampler, name, seed)})
        with pytest.raises(DSEError, match=r"was run with sampler tpe \(seed 0\), not "):
            open_study(folder, other, create=True)
    with pytest.raises(DSEError, match="different study definition"):  # not a sampler question
        open_study(folder, _config(n_trials=3), create=True)
    assert open_study(folder, folder.load_config(), create=True).user_attrs["sampler"] == {"name": "tpe", "seed": 0}


def test_a_resumed_seeded_sampler_does_not_draw_its_first_designs_again(tmp_path: Path) -> None:
    """Without a new seed on resume the random stream restarts and trials 5-8 repeat trials 1-4."""
    from dse.study.engine import sampler_option

    base = _config(n_trials=4)
    config = base.model_copy(update={"sampler": sampler_option(base.sampler, "random", 3)})
    designs = {}
    for name, stops in (("once", (8,)), ("resumed", (4, 8))):
        folder = StudyFolder(tmp_path / name)
        for n in stops:
            run_study(folder, config, n_trials=n, context=tiny_context(folder.cache))
        trials = sorted(open_study(folder, config, create=False).get_trials(deepcopy=False), key=lambda t: t.number)
        designs[name] = [tuple(sorted(t.params.items())) for t in trials if not t.user_attrs.get("derived")]
    assert designs["resumed"][:4] == designs["once"][:4]  # a fresh study keeps its seed's draws
    assert len(designs["resumed"]) == 8 and designs["resumed"][4:] != designs["resumed"][:4]


# --- hardware first: designs that cannot be feasible never run their model ----------------------

AREA_LIMIT_MM2 = 0.3  # the tiny model's chip: ~0.11 mm2 with 4 VMAC lanes, ~0.47 mm2 with 64


def _screened_config(**extra):  # noqa: ANN003, ANN202
    from .conftest import tiny_config

    return tiny_config(search_space={"vmac_lanes": {"type": "categorical", "choices": [4, 64]},
                                     "exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.1}},
                       **{"constraints": {"max_area_mm2": AREA_LIMIT_MM2}, **extra})


def _guarded_context(cache: Path):  # noqa: ANN202
    """The tiny context with a model that raises if anything runs it."""
    ctx = tiny_context(cache, baseline_points=50.0)

    def refuse(module, args):  # noqa: ANN001, ANN202, ARG001
        raise RuntimeError("the model ran")

    ctx.model.backbone.embeddings.register_forward_pre_hook(refuse)
    return ctx


def test_a_screened_design_never_runs_the_model_and_an_unscreened_one_does(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    config = _screened_config(n_trials=1)
    # every unscreened design reaches the model and fails there, until the study gives up
    with pytest.raises(DSEError, match="trials failed; last: RuntimeError: the model ran"):
        run_study(folder, config, context=_guarded_context(folder.cache))
    study = open_study(folder, config, create=False)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert pruned and failed
    for t in pruned:
        assert t.params["vmac_lanes"] == 64
        assert t.user_attrs["screened"].startswith("hardware screen: area_mm2 0.47")
        assert f"> max_area_mm2 {AREA_LIMIT_MM2:g}" in t.user_attrs["screened"]
        assert t.constraints["area"] > 0 and "fail_reason" not in t.user_attrs
    assert all(t.params["vmac_lanes"] == 4 and t.user_attrs["fail_reason"] == "RuntimeError: the model ran"
               for t in failed)


def test_screened_designs_are_pruned_with_their_reason_in_trials_csv(tmp_path: Path) -> None:
    import pandas as pd

    from dse.analysis.outputs import write_study_outputs
    from dse.analysis.results import analyse_study

    folder = StudyFolder(tmp_path / "unit")
    config = _screened_config(n_trials=3)
    stats = run_study(folder, config, context=tiny_context(folder.cache))
    study = open_study(folder, config, create=False)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert stats.completed == count_complete(study) == 3  # screened designs are not in the budget
    assert stats.screened == len(pruned) >= 1
    assert all(t.params["vmac_lanes"] == 4 for t in study.get_trials(states=(TrialState.COMPLETE,)))
    analysis = analyse_study(study, config)
    assert set(analysis.front["trial"]) <= {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
    write_study_outputs(analysis, folder)
    table = pd.read_csv(folder.path / "trials.csv")
    rows = table[table["state"] == "PRUNED"]
    assert len(rows) == len(pruned) and not rows["feasible"].any()
    assert rows["screened"].str.startswith("hardware screen: area_mm2").all()
    assert table[table["state"] == "COMPLETE"]["screened"].isna().all()


def test_a_study_whose_every_design_is_ruled_out_stops_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dse.study import engine

    monkeypatch.setattr(engine, "MAX_SCREENED_IN_A_ROW", 6)
    folder = StudyFolder(tmp_path / "unit")
    config = _screened_config(n_trials=2, constraints={"max_area_mm2": 0.01})
    with pytest.raises(DSEError, match=r"ruled out the last 6 designs sampled \(hardware screen: area_mm2"):
        run_study(folder, config, context=_guarded_context(folder.cache))
    study = open_study(folder, config, create=False)
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 6


def test_hardware_screen_reasons() -> None:
    from dse.evaluation import HardwareBounds
    from dse.study.engine import hardware_screen

    config = _screened_config(constraints={"max_area_mm2": 1.0, "max_memory_mb": 2.0, "latency_target_ms": 3.0})
    ok = HardwareBounds(area_mm2=1.0, memory_mb=2.0, min_latency_ms=3.0, invalid_reason=None)
    assert hardware_screen(config, ok) == (None, {})  # at the limits: may still be feasible
    reason, broken = hardware_screen(config, HardwareBounds(1.5, 2.0, 4.0, None))
    assert reason == ("hardware screen: area_mm2 1.5 > max_area_mm2 1; latency_ms >= 4 > latency_target_ms 3 "
                      "(every sentence exiting at layer 1)")
    assert broken == {"area": 0.5, "latency": 1.0}
    reason, broken = hardware_screen(config, HardwareBounds(0.1, 0.1, 0.1, "eNVM cell pcm has no valid array"))
    assert reason == "hardware screen: eNVM cell pcm has no valid array" and broken == {}
    assert hardware_screen(_config(), HardwareBounds(9.0, 9.0, 9.0, None)) == (None, {})  # no limits set


def test_optuna_tools_see_metric_names_and_constraints(tmp_path: Path) -> None:
    from optuna_dashboard._serializer import serialize_frozen_trial

    from dse.study.pareto import feasible, named_constraints

    folder = StudyFolder(tmp_path / "unit")
    # the unpruned model (0.0375 MB) breaks the memory budget, the 50%-pruned one (0.025 MB) meets
    # it; the sweep adds derived trials, the hardware screen may prune designs
    config = _config(n_trials=4, constraints={"max_memory_mb": 0.03}, sweep={"enabled": True})
    run_study(folder, config, context=tiny_context(folder.cache))
    study = open_study(folder, config, create=False)
    assert study.metric_names == config.objective_names()
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert any(t.user_attrs.get("derived") for t in trials)
    assert {feasible(t) for t in trials} == {True, False}
    for t in trials:
        named = named_constraints(t)
        assert set(named) == {"memory"}  # each once, by name: the dashboard's copy is not counted twice
        # optuna-dashboard 0.21 marks feasibility from this list only
        shown = serialize_frozen_trial(study._study_id, t, {})["constraints"]
        assert shown == list(named.values()) and feasible(t) is all(v <= 0 for v in shown)


def test_an_older_study_gets_its_metric_names_when_it_resumes(tmp_path: Path) -> None:
    folder = StudyFolder(tmp_path / "unit")
    study = open_study(folder, _config(), create=True)
    study._storage.set_study_system_attr(study._study_id, "study:metric_names", None)  # as before naming
    assert open_study(folder, _config(), create=False).metric_names is None  # readers write nothing
    assert open_study(folder, _config(), create=True).metric_names == _config().objective_names()


def _early_stopping_config(**extra):  # noqa: ANN003, ANN202
    from dse.config import parse_study_config

    return parse_study_config({
        "name": "staged", "sweep": {"enabled": False}, "early_stopping": {"enabled": True},
        "search_space": {"exit_threshold": {"type": "categorical", "choices": [0.0, 0.7]},
                         "voltage_v": {"type": "float", "low": 0.5, "high": 0.8, "step": 0.1}},
        "constraints": {"max_accuracy_drop_points": 1.0}, **extra}, source="test")


def test_early_stopped_trials_are_pruned_with_their_reason_never_designs_and_stay_pruned(tmp_path: Path) -> None:
    from dse.analysis.results import pareto_table, trials_table
    from dse.artifacts.export import export_design

    from ..tiny_eval import perfect_context

    config = _early_stopping_config(n_trials=2)
    folder = StudyFolder(tmp_path / "staged")
    # trial 0: every row exits after layer 1 (0 points against a 100-point baseline): stopped
    open_study(folder, config, create=True).enqueue_trial({"exit_threshold": 0.7, "voltage_v": 0.8})
    stats = run_study(folder, config, context=perfect_context(folder.cache))
    study = open_study(folder, config, create=False)
    stopped = study.trials[0]
    assert stopped.state == TrialState.PRUNED and stats.early_stopped >= 1
    assert stopped.user_attrs["early_stopped"].startswith("stage 0.25: infeasible: accuracy drop")
    assert stopped.user_attrs["partial"]["rows"] == 100 and stopped.user_attrs["partial"]["correct"] == 0
    assert stopped.constraints["accuracy_drop"] > 0  # the sampler learns it is infeasible
    assert count_complete(study) == 2 == stats.completed  # not a finished trial
    table = trials_table(study, config)
    assert 0 not in set(pareto_table(table, config)["trial"])
    assert table.set_index("trial").loc[0, "early_stopped"] == stopped.user_attrs["early_stopped"]
    with pytest.raises(DSEError, match="PRUNED, not COMPLETE"):
        export_design(study, config, 0, tmp_path / "export", cache_dir=folder.cache)
    # resume: the stopped trial stays PRUNED with its figures, and is not evaluated again
    run_study(folder, config, n_trials=4, context=perfect_context(folder.cache))
    again = open_study(folder, config, create=False).trials[0]
    assert again.state == TrialState.PRUNED and again.user_attrs == stopped.user_attrs
