"""The study coordinator: one process owns the Optuna study and runs an ask-and-tell loop.

Storage is an append-only journal in the study folder, so killing the coordinator at any
moment loses no finished trial; on resume, trials left RUNNING are failed and re-queued.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
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
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from dse.config import CategoricalParam, FloatParam, StudyConfig, config_hash, parse_study_config
from dse.errors import DSEError

__all__ = [
    "RunStats",
    "StudyFolder",
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
TOOL_VERSION = "0.1.0"


@dataclass(frozen=True)
class StudyFolder:
    """Layout of ``results/<study>/``."""

    path: Path

    config = property(lambda self: self.path / "config.yaml")
    config_sha = property(lambda self: self.path / "config.sha256")
    journal = property(lambda self: self.path / "study.journal")
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


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _environment() -> dict[str, str]:
    import torch
    import transformers

    return {
        "tool": TOOL_VERSION, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "optuna": optuna.__version__,
        "machine": platform.machine(), "platform": platform.platform(),
    }


def open_study(folder: StudyFolder, config: StudyConfig, *, create: bool) -> optuna.Study:
    """Create the study folder and study, or reopen them; refuses a folder of another study."""
    digest = config_hash(config)
    if folder.config_sha.is_file():
        stored = folder.config_sha.read_text().strip()
        if stored != digest:
            raise DSEError(
                f"{folder.path} holds a different study definition (hash {stored[:12]} vs "
                f"{digest[:12]}); use another --results-dir or study name"
            )
    elif not create:
        raise DSEError(f"{folder.path} is not a study folder (no config.sha256)")
    else:
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            _write_atomic(folder.config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
            _write_atomic(folder.path / "env.json", json.dumps(_environment(), indent=2))
            _write_atomic(folder.config_sha, digest + "\n")
        except OSError as exc:
            raise DSEError(f"cannot write the results folder {folder.path}: {exc.strerror}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(folder.journal)))
    study = optuna.create_study(
        storage=storage, sampler=make_sampler(config), study_name=config.name,
        directions=config.directions(), load_if_exists=True,
    )
    if study.user_attrs.get("config_hash") not in (None, digest):
        raise DSEError(f"{folder.journal} belongs to another study definition")
    if "config_hash" not in study.user_attrs:
        study.set_user_attr("config_hash", digest)
        study.set_user_attr("objectives", config.objective_names())
        study.set_user_attr("tool_version", TOOL_VERSION)
    return study


@contextmanager
def coordinator_lock(folder: StudyFolder) -> Iterator[None]:
    """One coordinator per study; the kernel drops the lock when a killed process exits."""
    folder.path.mkdir(parents=True, exist_ok=True)
    with open(folder.lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise DSEError(
                f"study {folder.path} is already running (coordinator pid {fh.read().strip() or '?'})"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
        "accuracy_drop": (metrics["accuracy_drop"], c.max_accuracy_drop_points),
        "latency": (metrics["latency_ms"], c.latency_target_ms),
        "area": (metrics["area_mm2"], c.max_area_mm2),
        "memory": (metrics["memory_mb"], c.max_memory_mb),
    }
    return {k: float(v - limit) for k, (v, limit) in limits.items() if limit is not None}


def count_complete(study: optuna.Study) -> int:
    return sum(
        1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get("derived")
    )


@dataclass
class RunStats:
    completed: int = 0
    failed: int = 0
    cache_hits: int = 0
    started: float = 0.0


def run_study(
    folder: StudyFolder,
    config: StudyConfig,
    *,
    n_trials: int | None = None,
    executor_kind: str | None = None,
    ray_address: str | None = None,
    progress: Any = None,
) -> RunStats:
    """Run (or continue) the study until ``n_trials`` trials have completed."""
    from dse.evaluate import build_context
    from dse.study.executors import make_executor

    target = n_trials or config.n_trials
    with coordinator_lock(folder):
        study = open_study(folder, config, create=True)
        swept = sweep_orphans(study)
        if swept:
            log.warning("resumed: %d unfinished trial(s) failed and re-queued", swept)
        stats = RunStats(completed=count_complete(study), started=time.perf_counter())
        if stats.completed >= target:
            return stats
        ctx = build_context(config, cache_dir=folder.cache)
        study.set_user_attr("baseline_points", ctx.baseline_points)
        study.set_user_attr("prepared_key", ctx.prepared_key)
        executor = make_executor(
            executor_kind or config.executor.kind, ctx,
            address=ray_address or config.executor.ray_address,
            cpus_per_trial=config.executor.cpus_per_trial,
        )
        dists = distributions(config)
        running: dict[int, optuna.Trial] = {}
        max_failures = max(10, target)
        try:
            while stats.completed < target:
                while (stats.completed + len(running) < target
                       and len(running) < config.executor.max_in_flight):
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
                if progress is not None:
                    progress(study, stats, target)
        finally:
            executor.close()
    return stats
