"""The study coordinator: one process owns the Optuna study and runs an ask-and-tell loop.

Storage is an append-only journal in the study folder (or SQLite/PostgreSQL, see
``dse.study.storage``), so killing the coordinator at any moment loses no finished trial; on
resume, trials left RUNNING are failed and re-queued, and evaluations already in the logits
cache are not run again. A kernel lock (flock) allows one coordinator per study folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from dse.config import CategoricalParam, FloatParam, StudyConfig, config_hash, parse_study_config
from dse.errors import DSEError
from dse.io import write_text_atomic
from dse.study.storage import JOURNAL_NAME, display_url, open_storage, repair_journal, resolve_storage_url
from dse.version import __version__

__all__ = [
    "MAX_RETRIES",
    "STUDY_FORMAT",
    "RunStats",
    "StudyFolder",
    "check_folder",
    "coordinator_lock",
    "count_complete",
    "distributions",
    "make_sampler",
    "open_study",
    "run_study",
    "sweep_orphans",
]

log = logging.getLogger(__name__)
MAX_RETRIES = 2  # re-queues of a trial that was RUNNING when the coordinator died
TOOL_VERSION = __version__  # recorded in env.json and the study attrs
STUDY_FORMAT = 1  # layout of the study's user attrs and folder; a newer one is refused


@dataclass(frozen=True)
class StudyFolder:
    """Layout of ``results/<study>/``."""

    path: Path

    config = property(lambda self: self.path / "config.yaml")
    config_sha = property(lambda self: self.path / "config.sha256")
    journal = property(lambda self: self.path / JOURNAL_NAME)
    cache = property(lambda self: self.path / "cache" / "logits")
    plots = property(lambda self: self.path / "plots")
    lock = property(lambda self: self.path / ".coordinator.lock")

    def load_config(self) -> StudyConfig:
        if not self.config.is_file():
            raise DSEError(f"{self.path} is not a study folder (no config.yaml)")
        data = yaml.safe_load(self.config.read_text())
        return parse_study_config(data, source=str(self.config))


def distributions(config: StudyConfig) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for name, p in config.search_space.items():
        if isinstance(p, CategoricalParam):
            out[name] = CategoricalDistribution(list(p.choices))
        elif isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, step=p.step, log=p.log)
        else:
            out[name] = IntDistribution(p.low, p.high, step=p.step, log=p.log)
    return out


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    seed = config.sampler.seed
    match config.sampler.name:
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        case "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        case "gp":
            return optuna.samplers.GPSampler(seed=seed)
        case _:
            return optuna.samplers.RandomSampler(seed=seed)


def _environment() -> dict[str, str]:
    import torch
    import transformers

    return {
        "tool": TOOL_VERSION, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "optuna": optuna.__version__,
        "machine": platform.machine(), "platform": platform.platform(),
    }


def _with_folder_storage(folder: StudyFolder, config: StudyConfig) -> StudyConfig:
    """The folder's recorded storage wins; a definition or option naming another one is refused."""
    if not folder.config.is_file():
        return config
    stored = folder.load_config().storage
    if config.storage == stored:
        return config
    if "storage" in config.model_fields_set:
        raise DSEError(f"{folder.path} keeps its trials in {display_url(resolve_storage_url(folder.path, stored))}, "
                       f"not {display_url(resolve_storage_url(folder.path, config.storage))}; "
                       "use another --results-dir or the same storage")
    return config.model_copy(update={"storage": stored})


def check_folder(folder: StudyFolder, config: StudyConfig, *, create: bool) -> StudyConfig:
    """Refuse a folder of another study (read-only); the definition with the folder's storage."""
    if folder.config_sha.is_file():
        stored = folder.config_sha.read_text().strip()
        digest = config_hash(config)
        if stored != digest:
            raise DSEError(
                f"{folder.path} holds a different study definition (hash {stored[:12]} vs "
                f"{digest[:12]}); use another --results-dir or study name"
            )
    elif not create:
        raise DSEError(f"{folder.path} is not a study folder (no config.sha256)")
    return _with_folder_storage(folder, config)


def open_study(folder: StudyFolder, config: StudyConfig, *, create: bool) -> optuna.Study:
    """Create the study folder and study, or reopen them; refuses a folder of another study.

    With ``create=False`` (readers: status, pareto, export, dashboard) nothing is written.
    """
    config = check_folder(folder, config, create=create)
    digest = config_hash(config)
    if create and not folder.config_sha.is_file():
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder.config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
            write_text_atomic(folder.path / "env.json", json.dumps(_environment(), indent=2))
            write_text_atomic(folder.config_sha, digest + "\n")  # last: marks the folder complete
        except OSError as exc:
            raise DSEError(f"cannot write the results folder {folder.path}: {exc.strerror}") from None
    storage = open_storage(folder.path, config.storage)
    where = display_url(resolve_storage_url(folder.path, config.storage))
    sampler = make_sampler(config)
    if create:
        study = optuna.create_study(
            storage=storage, sampler=sampler, study_name=config.name,
            directions=config.directions(), load_if_exists=True,
        )
    else:
        try:
            study = optuna.load_study(storage=storage, sampler=sampler, study_name=config.name)
        except KeyError:
            raise DSEError(f"{where} holds no study {config.name!r} (the study never started?)") from None
    attrs = study.user_attrs
    if attrs.get("config_hash") not in (None, digest):
        raise DSEError(f"{where} holds study {config.name!r} of another study definition")
    if int(attrs.get("format_version", 1)) > STUDY_FORMAT:
        raise DSEError(f"{where} was written by a newer edgebert-dse (study format "
                       f"{attrs['format_version']}, tool {attrs.get('tool_version', '?')}); "
                       f"this version {TOOL_VERSION} reads format {STUDY_FORMAT}")
    home = str(folder.path.resolve())
    if create and isinstance(storage, RDBStorage) and attrs.get("results_dir") not in (None, home):
        # a shared database: two folders on one study would mean two coordinators
        raise DSEError(f"{where} already holds study {config.name!r} for results folder "
                       f"{attrs['results_dir']}; use another study name or database")
    if create and "config_hash" not in attrs:
        study.set_user_attr("config_hash", digest)
        study.set_user_attr("objectives", config.objective_names())
        study.set_user_attr("tool_version", TOOL_VERSION)
        study.set_user_attr("format_version", STUDY_FORMAT)
        study.set_user_attr("results_dir", home)
    return study


@contextmanager
def coordinator_lock(folder: StudyFolder) -> Iterator[None]:
    """One coordinator per study; the kernel drops the lock when a killed process exits.

    The lock file keeps the holder's pid, so a refusal names it, and a lock left by a killed
    coordinator is recognised (the file is there, the flock is not) and taken over.
    """
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
        fh = open(folder.lock, "a+")
    except OSError as exc:
        raise DSEError(f"cannot write the results folder {folder.path}: {exc.strerror}") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise DSEError(
                f"study {folder.path} is already running (coordinator pid {fh.read().strip() or '?'}); "
                "wait for it or stop it first"
            ) from None
        fh.seek(0)
        previous = fh.read().strip()
        if previous:
            log.info("taking over the lock of a stopped coordinator (pid %s)", previous)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()  # an empty lock file: the last coordinator stopped cleanly
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C: executors close, the lock is released, trials are kept."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sweep_orphans(study: optuna.Study) -> int:
    """Fail trials a dead coordinator left RUNNING and re-queue their parameters."""
    swept = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "coordinator stopped")
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        retries = int(t.user_attrs.get("retries", 0))
        if retries < MAX_RETRIES and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": retries + 1})
        swept += 1
    return swept


def _constraints(config: StudyConfig, metrics: dict[str, float]) -> dict[str, float]:
    c = config.constraints
    limits = {
        # every task of a multi-task study within the budget: its worst task's drop
        "accuracy_drop": (metrics.get("worst_accuracy_drop", metrics["accuracy_drop"]), c.max_accuracy_drop_points),
        "latency": (metrics["latency_ms"], c.latency_target_ms),
        "area": (metrics["area_mm2"], c.max_area_mm2),
        "memory": (metrics["memory_mb"], c.max_memory_mb),
    }
    out = {k: float(v - limit) for k, (v, limit) in limits.items() if limit is not None}
    if c.min_accuracy_under_faults_points is not None:  # a lower bound: <= 0 is feasible
        out["accuracy_under_faults"] = float(c.min_accuracy_under_faults_points - metrics["accuracy_under_faults"])
    return out


def count_complete(study: optuna.Study) -> int:
    return sum(
        1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get("derived")
    )


def record_derived_trials(study: optuna.Study, config: StudyConfig, ctx: Any, source: int, *,
                          knobs: dict[str, Any], dists: dict[str, BaseDistribution]) -> int:
    """Add the cheap-knob sweep's designs around trial ``source`` as derived trials."""
    from dse.study.sweep import sweep_cheap_knobs

    try:
        designs = sweep_cheap_knobs(ctx, config, knobs, dists, constraints=lambda m: _constraints(config, m))
    except Exception as exc:  # the sweep only adds designs; its failure must not stop the study
        log.warning("cheap-knob sweep after trial %d failed: %s", source, exc)
        return 0
    seen = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    designs = [d for d in designs if tuple(sorted(d.params.items())) not in seen]
    for d in designs:
        study.add_trial(optuna.trial.create_trial(
            params=d.params, distributions=dists,
            values=[d.metrics[n] for n in config.objective_names()],
            constraints=_constraints(config, d.metrics),
            user_attrs={"derived": True, "derived_from": source, "knobs": config.knob_values(d.params),
                        "metrics": d.metrics, "details": d.attrs, "cache_hit": True},
        ))
    return len(designs)


@dataclass
class RunStats:
    completed: int = 0
    failed: int = 0
    cache_hits: int = 0
    derived: int = 0  # trials added by the cheap-knob sweep (not counted in the budget)
    started: float = 0.0


def run_study(
    folder: StudyFolder,
    config: StudyConfig,
    *,
    n_trials: int | None = None,
    executor_kind: str | None = None,
    ray_address: str | None = None,
    max_in_flight: int | None = None,
    progress: Any = None,
    evaluate: Any = None,
    context: Any = None,
) -> RunStats:
    """Run (or continue) the study until ``n_trials`` trials have completed.

    ``evaluate(ctx, knobs) -> TrialOutcome`` replaces ``dse.evaluation.evaluate_trial`` and
    ``context`` a built ``EvalContext`` (for tests and benchmarks of the engine itself).
    """
    from dse.evaluation import build_context, evaluate_trial
    from dse.study.executors import make_executor

    target = n_trials or config.n_trials
    check_folder(folder, config, create=True)  # before the lock: a refused run leaves no trace
    with coordinator_lock(folder), _sigterm_as_interrupt():
        repair_journal(folder.journal)  # safe: we are the only writer now
        study = open_study(folder, config, create=True)
        swept = sweep_orphans(study)
        if swept:
            log.warning("resumed: %d unfinished trial(s) failed and re-queued", swept)
        stats = RunStats(completed=count_complete(study), started=time.perf_counter())
        study.set_user_attr("target_trials", target)  # what status reports (--n-trials overrides the definition)
        if stats.completed >= target:
            return stats
        # absolute: Ray workers do not share the coordinator's working directory
        ctx = context if context is not None else build_context(config, cache_dir=folder.cache.resolve())
        study.set_user_attr("baseline_points", ctx.baseline_points)
        study.set_user_attr("prepared_key", ctx.prepared_key)
        if config.is_multitask:
            study.set_user_attr("baseline_points_by_task", ctx.baseline_points_by_task)
            study.set_user_attr("approximations", ctx.approximations)
        ex = config.executor
        kind = executor_kind or ex.kind
        executor = make_executor(
            kind, ctx, address=ray_address or ex.ray_address,
            cpus_per_trial=ex.cpus_per_trial, gpus_per_trial=ex.gpus_per_trial,
            max_retries=ex.max_retries, evaluate=evaluate or evaluate_trial,
        )
        # inline evaluates one at a time: asking ahead would only hide results from the sampler
        in_flight = 1 if kind == "inline" else max_in_flight or ex.max_in_flight
        dists = distributions(config)
        running: dict[int, optuna.Trial] = {}
        max_failures = max(10, target)
        try:
            while stats.completed < target:
                while (stats.completed + len(running) < target
                       and len(running) < in_flight):
                    trial = study.ask(fixed_distributions=dists)
                    knobs = config.knob_values(trial.params)
                    trial.set_user_attr("knobs", knobs)
                    running[trial.number] = trial
                    executor.submit(trial.number, knobs)
                number, result = executor.wait_one()
                trial = running.pop(number)
                if isinstance(result, BaseException):
                    reason = f"{result.__class__.__name__}: {result}".splitlines()[0][:300]
                    trial.set_user_attr("fail_reason", reason)
                    study.tell(trial, state=TrialState.FAIL)
                    stats.failed += 1
                    log.warning("trial %d failed: %s", number, reason)
                    if stats.failed >= max_failures:
                        raise DSEError(f"{stats.failed} trials failed; last: {reason}")
                else:
                    for name, value in _constraints(config, result.metrics).items():
                        trial.set_constraint(name, value)
                    trial.set_user_attr("metrics", result.metrics)
                    trial.set_user_attr("details", result.attrs)
                    trial.set_user_attr("cache_hit", result.cache_hit)
                    trial.set_user_attr("seconds", round(result.seconds, 3))
                    study.tell(trial, [result.metrics[n] for n in config.objective_names()])
                    stats.completed += 1
                    stats.cache_hits += int(result.cache_hit)
                    if config.sweep.enabled and not result.cache_hit:
                        stats.derived += record_derived_trials(study, config, ctx, trial.number, knobs=
                                                               trial.user_attrs["knobs"], dists=dists)
                if progress is not None:
                    progress(study, stats, target)
        finally:
            executor.close()
    return stats
