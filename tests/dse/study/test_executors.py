"""Executors on a real local Ray: trials in flight, dead workers, transient errors, one evaluation per key.

Faults are real: the injected evaluation calls ``os._exit`` inside the Ray worker process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dse.errors import DSEError
from dse.evaluation import evaluate_trial
from dse.study.engine import StudyFolder, count_complete, open_study, run_study
from dse.study.executors import InlineExecutor, OneEvaluationPerKey, RayExecutor, TransientEvaluationError

from .conftest import tiny_config, tiny_context

ray = pytest.importorskip("ray")


def test_executor_starts_and_stops_its_own_local_ray(tmp_path: Path) -> None:
    # first in this file: the module's shared Ray below must not be running yet
    assert not ray.is_initialized()
    executor = RayExecutor(tiny_context(None), cpus_per_trial=1)
    try:
        assert ray.is_initialized() and executor.capacity == int(ray.cluster_resources()["CPU"])
        executor.submit(7, tiny_config().knob_values({}))
        number, outcome = executor.wait_one()
        assert number == 7 and not isinstance(outcome, BaseException)
    finally:
        executor.close()
    assert not ray.is_initialized()
    with pytest.raises(DSEError, match="gpus_per_trial=1 but the Ray cluster has 0 GPUs"):
        RayExecutor(tiny_context(None), gpus_per_trial=1)
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def local_ray():  # noqa: ANN201
    """One local Ray for the module (executors reuse a running instance and leave it running)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _study(tmp_path: Path, name: str = "unit", **extra):  # noqa: ANN003, ANN202
    folder = StudyFolder(tmp_path / name)
    return folder, tiny_config(name=name, **extra)


def test_ray_study_with_trials_in_flight_matches_inline(tmp_path: Path, local_ray: None) -> None:
    folder, config = _study(tmp_path, n_trials=6, executor={"kind": "ray", "max_in_flight": 2})
    stats = run_study(folder, config, context=tiny_context(folder.cache))
    assert stats.completed == 6 and stats.failed == 0
    study = open_study(folder, config, create=False)
    assert count_complete(study) == 6
    inline = tiny_context(None)
    for t in study.trials:  # the workers computed exactly what the coordinator would have
        assert evaluate_trial(inline, t.user_attrs["knobs"]).metrics == pytest.approx(t.user_attrs["metrics"])


def test_worker_process_that_dies_is_retried(tmp_path: Path, local_ray: None) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()

    def dies_once(ctx, knobs):  # noqa: ANN001, ANN202
        mark = Path(marks) / f"{knobs['exit_threshold']}-{knobs['envm_cell']}-{knobs['voltage_v']}-{knobs['encoder_pruning']}"
        if not mark.exists():
            mark.touch()
            os._exit(1)  # the worker process dies mid-evaluation
        return evaluate_trial(ctx, knobs)

    folder, config = _study(tmp_path, n_trials=3, executor={"kind": "ray", "max_in_flight": 2})
    stats = run_study(folder, config, context=tiny_context(folder.cache), evaluate=dies_once)
    assert stats.completed == 3 and stats.failed == 0
    assert len(list(marks.iterdir())) >= 3  # every trial's first worker really died


def test_worker_that_always_dies_fails_its_trial_with_the_reason(tmp_path: Path, local_ray: None) -> None:
    poison = tmp_path / "poison"

    def pcm_kills(ctx, knobs):  # noqa: ANN001, ANN202
        # the first design with pcm is poisoned: every worker that evaluates it dies
        if knobs["envm_cell"] == "pcm":
            key = repr(sorted(knobs.items()))
            if not poison.exists():
                poison.write_text(key)
            if poison.read_text() == key:
                os._exit(1)
        return evaluate_trial(ctx, knobs)

    folder, config = _study(tmp_path, n_trials=4, executor={"kind": "ray", "max_in_flight": 2, "max_retries": 1})
    stats = run_study(folder, config, context=tiny_context(folder.cache), evaluate=pcm_kills)
    study = open_study(folder, config, create=False)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stats.completed == 4 and len(failed) == stats.failed >= 1  # the study went on
    for t in failed:
        assert repr(sorted(t.user_attrs["knobs"].items())) == poison.read_text()
        reason = t.user_attrs["fail_reason"]
        assert reason.startswith("WorkerCrashedError") and "\n" not in reason


def test_transient_error_is_retried_by_ray(tmp_path: Path, local_ray: None) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()

    def flaky(ctx, knobs):  # noqa: ANN001, ANN202
        mark = Path(marks) / f"{sorted(knobs.items())}".replace("/", "_")[:200]
        if not mark.exists():
            mark.touch()
            raise TransientEvaluationError("the cache disk hiccuped")
        return evaluate_trial(ctx, knobs)

    folder, config = _study(tmp_path, n_trials=3, executor={"kind": "ray", "max_in_flight": 2})
    assert run_study(folder, config, context=tiny_context(folder.cache), evaluate=flaky).failed == 0


def test_one_model_evaluation_per_compression_setting(tmp_path: Path, local_ray: None) -> None:
    ctx = tiny_context(tmp_path / "cache")
    executor = OneEvaluationPerKey(RayExecutor(ctx, cpus_per_trial=1))
    base = tiny_config().knob_values({"encoder_pruning": 0.5})
    try:
        for n, volts in enumerate((0.5, 0.6, 0.7, 0.8)):  # same model, different hardware
            executor.submit(n, {**base, "voltage_v": volts})
        assert executor.in_flight() == 4
        outcomes = [executor.wait_one()[1] for _ in range(4)]
    finally:
        executor.close()
    assert sorted(o.cache_hit for o in outcomes) == [False, True, True, True]


def test_inline_executor_gives_failures_back_as_values(tiny_ctx) -> None:  # noqa: ANN001
    executor = InlineExecutor(tiny_ctx, evaluate=lambda ctx, knobs: 1 / 0)
    executor.submit(3, {})
    number, result = executor.wait_one()
    assert number == 3 and isinstance(result, ZeroDivisionError)


def test_compression_key_of_a_multitask_trial_covers_every_task() -> None:
    from dse.config import load_study_config
    from dse.study.executors import compression_key

    config = load_study_config(Path(__file__).resolve().parents[3] / "search_spaces" / "smoke_multitask.yaml")
    tasks = [t.name for t in config.tasks]
    params = {f"{t}.encoder_pruning": 0.25 for t in tasks} | {f"{t}.exit_threshold": 0.2 for t in tasks}
    knobs = config.knob_values(params)
    assert "encoder_pruning" not in knobs  # every task sets its own: no shared value left
    key = compression_key(knobs, tasks)
    # another threshold or voltage: the same models; another pruning of one task: not
    assert compression_key({**knobs, "qnli.exit_threshold": 0.6, "voltage_v": 0.5}, tasks) == key
    assert compression_key({**knobs, "mrpc.encoder_pruning": 0.5}, tasks) != key


def test_a_key_that_cannot_be_computed_fails_only_its_trial(tiny_ctx) -> None:  # noqa: ANN001
    base = tiny_config().knob_values({})
    executor = OneEvaluationPerKey(InlineExecutor(tiny_ctx))
    executor.submit(0, base)
    executor.submit(1, {k: v for k, v in base.items() if k != "encoder_pruning"})  # the old multi-task crash
    executor.submit(2, {**base, "encoder_pruning": 0.5})
    assert executor.in_flight() == 3
    results = dict(executor.wait_one() for _ in range(3))
    assert isinstance(results[1], KeyError) and executor.in_flight() == 0
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)


def test_multitask_study_with_per_task_pruning_runs_on_ray(tmp_path: Path, local_ray: None) -> None:
    # every task sets its own encoder_pruning, so no shared one is left in the knob dict: the
    # one-evaluation-per-key guard once raised KeyError on the coordinator and aborted the run
    from dse.config import parse_study_config
    from dse.evaluation import MultiTaskContext

    sst2, rte = tiny_context(tmp_path / "cache", rows=32), tiny_context(tmp_path / "cache", rows=20)
    rte.task, rte.prepared_key = "rte", "tiny-rte"
    ctx = MultiTaskContext({"sst2": sst2, "rte": rte}, {"sst2": 0.5, "rte": 0.5}, {})
    config = parse_study_config({
        "name": "mt", "tasks": [{"name": "sst2"}, {"name": "rte"}], "n_trials": 3, "sweep": {"enabled": False},
        "objectives": [{"name": "worst_accuracy_drop"}, {"name": "energy_uj"}],
        "executor": {"kind": "ray", "max_in_flight": 2},
        "search_space": {"sst2.encoder_pruning": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.5},
                         "rte.encoder_pruning": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.5},
                         "voltage_v": {"type": "float", "low": 0.5, "high": 0.8, "step": 0.1}}}, source="test")
    folder = StudyFolder(tmp_path / "mt")
    stats = run_study(folder, config, context=ctx)
    assert stats.completed == 3 and stats.failed == 0
    done = open_study(folder, config, create=False).get_trials(states=(TrialState.COMPLETE,))
    for t in done:  # the workers computed what the coordinator would have
        assert evaluate_trial(ctx, t.user_attrs["knobs"]).metrics == pytest.approx(t.user_attrs["metrics"])
