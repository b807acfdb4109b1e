"""The study coordinator: one process owns the Optuna study and runs an ask-and-tell loop.

Storage is an append-only journal in the study folder (or SQLite/PostgreSQL, see
``dse.study.storage``), so killing the coordinator at any moment loses no finished trial; on
resume, trials left RUNNING are failed and re-queued, and evaluations already in the logits
cache are not run again. A kernel lock (flock) allows one coordinator per study folder.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import logging
import os
import platform
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
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

from dse.config import (
    CategoricalParam,
    FloatParam,
    SamplerConfig,
    StorageConfig,
    StudyConfig,
    config_hash,
    load_study_config,
)
from dse.errors import DSEError
from dse.io import write_text_atomic
from dse.study.storage import JOURNAL_NAME, display_url, open_storage, repair_journal, resolve_storage_url
from dse.version import __version__

__all__ = [
    "DASHBOARD_CONSTRAINTS",
    "MAX_RETRIES",
    "MAX_SCREENED_IN_A_ROW",
    "SAMPLERS",
    "STUDY_FORMAT",
    "RunStats",
    "StudyFolder",
    "check_folder",
    "coordinator_lock",
    "count_complete",
    "distributions",
    "hardware_screen",
    "make_sampler",
    "open_study",
    "record_constraints",
    "run_study",
    "sampler_option",
    "sweep_orphans",
]

log = logging.getLogger(__name__)
MAX_RETRIES = 2  # re-queues of a trial that was RUNNING when the coordinator died
TOOL_VERSION = __version__  # recorded in env.json and the study attrs
STUDY_FORMAT = 1  # layout of the study's user attrs and folder; a newer one is refused
SAMPLERS: tuple[str, ...] = get_args(SamplerConfig.model_fields["name"].annotation)
# GPSampler imports these only at its first suggestion: check them before a study starts
_SAMPLER_PACKAGES = {"gp": ("scipy", "torch")}
# Screened designs cost milliseconds, but a study whose every design breaks a hardware
# constraint would ask forever; this many screened in a row stops it with the last reason.
MAX_SCREENED_IN_A_ROW = 500


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
    storage_seal = property(lambda self: self.path / "storage.json")  # where the trials live, sealed

    def load_config(self) -> StudyConfig:
        if not self.config.is_file():
            raise DSEError(f"{self.path} is not a study folder (no config.yaml)")
        config = load_study_config(self.config)  # the guarded loader: one line for any damage
        sealed = self.sealed_hash()
        if sealed is not None and config_hash(config) != sealed:
            raise DSEError(f"{self.config} no longer matches {self.config_sha.name} (edited or damaged); "
                           "restore the folder's definition from a backup")
        self._check_storage(config.storage)
        return config

    def sealed_hash(self) -> str | None:
        """The definition hash in config.sha256 (None: no such file); damage is one line naming it."""
        try:
            text = self.config_sha.read_bytes().decode("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise DSEError(f"{self.config_sha} is unreadable ({exc.__class__.__name__}); "
                           "restore it from a backup") from None
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise DSEError(f"{self.config_sha} is damaged (not a SHA-256 hash); restore it from a backup")
        return text

    def _check_storage(self, storage: StorageConfig) -> None:
        """Refuse a config.yaml whose storage was edited: the folder's hash leaves the storage out
        (so a study can move databases on purpose), and a silent switch would show an empty study."""
        if self.storage_seal.is_file():
            try:
                recorded = StorageConfig.model_validate(json.loads(self.storage_seal.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
                raise DSEError(f"{self.storage_seal} is damaged ({exc.__class__.__name__}); it records where "
                               "this folder's trials live: restore it from a backup") from None
        elif storage.kind != "journal" and self.journal.is_file() and self.journal.stat().st_size:
            recorded = StorageConfig()  # a folder from before storage.json: its trials are in its journal
        elif storage.kind == "journal" and not self.journal.is_file() and (self.path / "study.db").is_file():
            recorded = StorageConfig(kind="sqlite")
        else:
            return
        if recorded != storage:
            raise DSEError(f"{self.config}: storage was changed to "
                           f"{display_url(resolve_storage_url(self.path, storage))}, but this folder's trials are in "
                           f"{display_url(resolve_storage_url(self.path, recorded))}; restore its storage: setting")


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


def check_sampler_available(name: str) -> None:
    """A one-line error when the sampler cannot run here (a package it needs does not import)."""
    for package in _SAMPLER_PACKAGES.get(name, ()):
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise DSEError(f"sampler {name} needs the {package} package, which does not import here "
                           f"({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}); "
                           f"choose another sampler ({', '.join(s for s in SAMPLERS if s != name)})") from None


def sampler_option(base: SamplerConfig, name: str | None = None, seed: int | None = None) -> SamplerConfig:
    """``base`` with the sampler name and/or seed given as options (``--sampler``, ``--seed``)."""
    if name is not None and name not in SAMPLERS:
        raise DSEError(f"unknown sampler {name!r} ({', '.join(SAMPLERS)})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise DSEError(f"sampler seed must be an integer within 0..{2**32 - 1}, got {seed!r}")
    out = base.model_copy(update={k: v for k, v in (("name", name), ("seed", seed)) if v is not None})
    check_sampler_available(out.name)
    return out


def make_sampler(config: StudyConfig, *, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The definition's sampler. ``resumed_at``: the trials the study already holds; a resumed
    study's sampler gets a seed derived from the definition's seed and that count, so that it does
    not draw its first designs again (the same seed restarts the same random stream), and two
    runs resumed at the same point still draw alike."""
    seed = config.sampler.seed
    if resumed_at:
        seed = int(np.random.SeedSequence([seed, resumed_at]).generate_state(1)[0])
    check_sampler_available(config.sampler.name)
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
        stored = folder.sealed_hash()
        assert stored is not None
        digest = config_hash(config)
        if stored != digest:
            _refuse_another_sampler(folder, config, stored)
            raise DSEError(
                f"{folder.path} holds a different study definition (hash {stored[:12]} vs "
                f"{digest[:12]}); use another --results-dir or study name"
            )
    elif not create:
        raise DSEError(f"{folder.path} is not a study folder (no config.sha256)")
    return _with_folder_storage(folder, config)


def _refuse_another_sampler(folder: StudyFolder, config: StudyConfig, stored_hash: str) -> None:
    """A folder of this definition run with another sampler or seed: say so (resume keeps its own)."""
    try:
        recorded = folder.load_config().sampler
    except DSEError:
        return
    if recorded != config.sampler and config_hash(config.model_copy(update={"sampler": recorded})) == stored_hash:
        raise DSEError(f"{folder.path} was run with sampler {recorded.name} (seed {recorded.seed}), not "
                       f"{config.sampler.name} (seed {config.sampler.seed}); continue it with the same sampler "
                       f"(dse study resume {folder.path}) or use another --results-dir")


def open_study(folder: StudyFolder, config: StudyConfig, *, create: bool) -> optuna.Study:
    """Create the study folder and study, or reopen them; refuses a folder of another study.

    With ``create=False`` (readers: status, pareto, export, dashboard) nothing is written.
    """
    config = check_folder(folder, config, create=create)
    digest = config_hash(config)
    sampler = make_sampler(config)  # before the folder is written: a sampler that cannot run leaves no trace
    if create and not folder.config_sha.is_file():
        try:
            folder.path.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder.config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
            write_text_atomic(folder.path / "env.json", json.dumps(_environment(), indent=2))
            write_text_atomic(folder.storage_seal, json.dumps(config.storage.model_dump(mode="json")) + "\n")
            write_text_atomic(folder.config_sha, digest + "\n")  # last: marks the folder complete
        except OSError as exc:
            raise DSEError(f"cannot write the results folder {folder.path}: {exc.strerror}") from None
    storage = open_storage(folder.path, config.storage)
    where = display_url(resolve_storage_url(folder.path, config.storage))
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
    if create and (held := len(study.get_trials(deepcopy=False))):
        study.sampler = make_sampler(config, resumed_at=held)
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
    if create and study.metric_names is None:  # also for studies begun before we named them
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use; not the user's concern
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(config.objective_names())
    if create and "config_hash" not in attrs:
        study.set_user_attr("config_hash", digest)
        study.set_user_attr("objectives", config.objective_names())
        study.set_user_attr("tool_version", TOOL_VERSION)
        study.set_user_attr("format_version", STUDY_FORMAT)
        study.set_user_attr("results_dir", home)
        study.set_user_attr("sampler", config.sampler.model_dump(mode="json"))  # also in config.yaml
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


def hardware_screen(config: StudyConfig, bounds: Any) -> tuple[str | None, dict[str, float]]:
    """Why a design cannot be feasible whatever its model does (None if it may be), and the
    constraints it breaks at its hardware-only ``bounds`` (a ``dse.evaluation.HardwareBounds``),
    named and signed as :func:`_constraints` records them."""
    if bounds.invalid_reason is not None:
        return f"hardware screen: {bounds.invalid_reason}", {}
    c = config.constraints
    checks = (("area", "area_mm2", bounds.area_mm2, c.max_area_mm2, "max_area_mm2"),
              ("memory", "memory_mb", bounds.memory_mb, c.max_memory_mb, "max_memory_mb"),
              ("latency", "latency_ms >=", bounds.min_latency_ms, c.latency_target_ms, "latency_target_ms"))
    broken = {name: (what, value, limit, key) for name, what, value, limit, key in checks
              if limit is not None and value > limit}
    if not broken:
        return None, {}
    parts = [f"{what} {value:.4g} > {key} {limit:g}" + (" (every sentence exiting at layer 1)"
                                                          if name == "latency" else "")
             for name, (what, value, limit, key) in broken.items()]
    return "hardware screen: " + "; ".join(parts), {n: float(v - lim) for n, (_, v, lim, _) in broken.items()}


# optuna-dashboard 0.21 reads feasibility only from this legacy trial system attr (a list of
# values); Optuna reads it back as constraints "0", "1", ... beside the named ones
DASHBOARD_CONSTRAINTS = "constraints"


def record_constraints(trial: optuna.Trial, constraints: dict[str, float]) -> None:
    """Named constraints (Optuna), and the same values where optuna-dashboard looks."""
    for name, value in constraints.items():
        trial.set_constraint(name, value)
    trial.storage.set_trial_system_attr(trial._trial_id, DASHBOARD_CONSTRAINTS, [float(v) for v in constraints.values()])


def count_complete(study: optuna.Study) -> int:
    return sum(
        1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not t.user_attrs.get("derived")
    )


def record_derived_trials(study: optuna.Study, config: StudyConfig, ctx: Any, source: int, *,
                          knobs: dict[str, Any], dists: dict[str, BaseDistribution],
                          seen: set[tuple] | None = None) -> list[Any]:
    """Add the cheap-knob sweep's designs around trial ``source`` as derived trials (returned).

    ``seen``: the parameter sets of the study's complete trials, kept by the caller (and
    updated here); None reads them from the storage."""
    from dse.study.sweep import sweep_cheap_knobs

    try:
        designs = sweep_cheap_knobs(ctx, config, knobs, dists, constraints=lambda m: _constraints(config, m))
    except Exception as exc:  # the sweep only adds designs; its failure must not stop the study
        log.warning("cheap-knob sweep after trial %d failed: %s", source, exc)
        return []
    if seen is None:
        seen = {tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    designs = [d for d in designs if tuple(sorted(d.params.items())) not in seen]
    for d in designs:
        seen.add(tuple(sorted(d.params.items())))
        study.add_trial(optuna.trial.create_trial(
            params=d.params, distributions=dists,
            values=[d.metrics[n] for n in config.objective_names()],
            constraints=_constraints(config, d.metrics),
            system_attrs={DASHBOARD_CONSTRAINTS: list(_constraints(config, d.metrics).values())},
            user_attrs={"derived": True, "derived_from": source, "knobs": config.knob_values(d.params),
                        "metrics": d.metrics, "details": d.attrs, "cache_hit": True},
        ))
    return designs


@dataclass
class RunStats:
    completed: int = 0
    failed: int = 0
    cache_hits: int = 0
    derived: int = 0  # trials added by the cheap-knob sweep (not counted in the budget)
    screened: int = 0  # designs the hardware model ruled out before their model ran (PRUNED)
    early_stopped: int = 0  # designs stopped after part of their dev pass (PRUNED)
    pareto_size: int = 0  # feasible non-dominated complete trials (derived ones included)
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
    device: str | None = None,
) -> RunStats:
    """Run (or continue) the study until ``n_trials`` trials have completed.

    ``evaluate(ctx, knobs) -> TrialOutcome`` replaces ``dse.evaluation.evaluate_trial`` and
    ``context`` a built ``EvalContext`` (for tests and benchmarks of the engine itself); a
    ``StagedEvaluation`` given as ``evaluate`` has its rule's front kept up to date.
    ``device`` overrides the definition's ``device`` (where torch runs is not part of the study).
    """
    from dse.evaluation import (EarlyStopRule, StagedEvaluation, build_context, context_device, evaluate_trial,
                                hardware_bounds)
    from dse.modeling.device import resolve_device
    from dse.study.executors import check_executor, make_executor
    from dse.study.pareto import FrontTracker, feasible

    target = n_trials or config.n_trials
    ex = config.executor
    kind = executor_kind or ex.kind
    torch_device = resolve_device(device or config.device)  # a CUDA request without CUDA: one line, now
    check_executor(kind, address=ray_address or ex.ray_address, gpus_per_trial=ex.gpus_per_trial)
    check_folder(folder, config, create=True)  # before the lock: a refused run leaves no trace
    if context is None and not folder.config_sha.is_file():
        from dse.evaluation.context import check_paths, check_task_data

        # a wrong model or GLUE path, or a damaged GLUE file, must not leave a folder that
        # refuses the corrected definition: check them (read every task's rows once) first
        check_paths(config)
        check_task_data(config)
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
        ctx = context if context is not None else build_context(config, cache_dir=folder.cache.resolve(),
                                                                device=torch_device)
        study.set_user_attr("baseline_points", ctx.baseline_points)
        if context is None:
            study.set_user_attr("device", str(context_device(ctx)))
        study.set_user_attr("prepared_key", ctx.prepared_key)
        if config.is_multitask:
            study.set_user_attr("baseline_points_by_task", ctx.baseline_points_by_task)
            study.set_user_attr("approximations", ctx.approximations)
        # the feasible front so far, kept incrementally (progress, early stopping), and the
        # parameter sets already complete (the sweep's duplicates): read from storage once
        front = FrontTracker(config.directions())
        seen: set[tuple] = set()
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            seen.add(tuple(sorted(t.params.items())))
            if feasible(t):
                front.add(t.values, t.number)
        stats.pareto_size = len(front)
        evaluate = evaluate or evaluate_trial
        staged: StagedEvaluation | None = evaluate if isinstance(evaluate, StagedEvaluation) else None
        if staged is not None:
            staged.rule.front, staged.rule.front_trials = front.values, list(front.numbers)
        elif config.early_stopping.enabled:
            es = config.early_stopping
            staged = StagedEvaluation(evaluate, EarlyStopRule.for_study(config), es.stages, es.confidence)
            staged.rule.front, staged.rule.front_trials = front.values, list(front.numbers)
            evaluate = staged
        executor = make_executor(
            kind, ctx, address=ray_address or ex.ray_address,
            cpus_per_trial=ex.cpus_per_trial, gpus_per_trial=ex.gpus_per_trial,
            max_retries=ex.max_retries, evaluate=evaluate,
        )

        def add_to_front(values: list[float], number: int) -> None:
            if front.add(values, number):
                stats.pareto_size = len(front)
                if staged is not None:  # a new array: a Ray task already submitted keeps its copy
                    staged.rule.front, staged.rule.front_trials = front.values, list(front.numbers)

        # inline evaluates one at a time: asking ahead would only hide results from the sampler
        in_flight = 1 if kind == "inline" else max_in_flight or ex.max_in_flight
        dists = distributions(config)
        running: dict[int, optuna.Trial] = {}
        knobs_of: dict[int, dict[str, Any]] = {}  # not read back from the trial: a storage round trip
        max_failures = max(10, target)
        screened_in_a_row = stopped_in_a_row = 0
        try:
            while stats.completed < target:
                screen_failure: tuple[int, BaseException] | None = None
                while (stats.completed + len(running) < target
                       and len(running) < in_flight):
                    trial = study.ask(fixed_distributions=dists)
                    knobs = config.knob_values(trial.params)
                    trial.set_user_attr("knobs", knobs)
                    running[trial.number] = trial
                    knobs_of[trial.number] = knobs
                    try:  # hardware first: a design that cannot be feasible never runs its model
                        bounds = hardware_bounds(ctx, knobs)
                    except Exception as exc:  # knobs the hardware model refuses: the trial fails below
                        screen_failure = (trial.number, exc)
                        break
                    trial.set_user_attr("hardware_bounds", bounds.as_dict())
                    reason, broken = hardware_screen(config, bounds)
                    if reason is None:
                        screened_in_a_row = 0
                        executor.submit(trial.number, knobs)
                        continue
                    # PRUNED, not COMPLETE: without a model run there are no objective values to
                    # record; the broken constraints (at their bounds) tell TPE it is infeasible
                    running.pop(trial.number)
                    knobs_of.pop(trial.number)
                    record_constraints(trial, broken)
                    trial.set_user_attr("screened", reason)
                    study.tell(trial, state=TrialState.PRUNED)
                    stats.screened += 1
                    screened_in_a_row += 1
                    if screened_in_a_row >= MAX_SCREENED_IN_A_ROW:
                        raise DSEError(f"the hardware model ruled out the last {screened_in_a_row} designs "
                                       f"sampled ({reason}); loosen the constraints or the search space")
                number, result = screen_failure or executor.wait_one()
                trial = running.pop(number)
                trial_knobs = knobs_of.pop(number)
                if isinstance(result, BaseException):
                    reason = f"{result.__class__.__name__}: {result}".splitlines()[0][:300]
                    trial.set_user_attr("fail_reason", reason)
                    study.tell(trial, state=TrialState.FAIL)
                    stats.failed += 1
                    log.warning("trial %d failed: %s", number, reason)
                    if stats.failed >= max_failures:
                        raise DSEError(f"{stats.failed} trials failed; last: {reason}")
                elif result.pruned is not None:
                    # stopped after part of its dev pass: PRUNED with why and the partial figures;
                    # constraints its optimistic bounds already break tell the sampler it is infeasible
                    broken = {k: v for k, v in _constraints(config, result.metrics).items() if v > 0}
                    if broken:
                        record_constraints(trial, broken)
                    trial.set_user_attr("early_stopped", result.pruned)
                    trial.set_user_attr("partial", result.attrs.get("early_stop", {}))
                    trial.set_user_attr("seconds", round(result.seconds, 3))
                    study.tell(trial, state=TrialState.PRUNED)
                    stats.early_stopped += 1
                    stopped_in_a_row += 1
                    if stopped_in_a_row >= MAX_SCREENED_IN_A_ROW:
                        raise DSEError(f"the last {stopped_in_a_row} designs evaluated were stopped before "
                                       f"their full dev pass ({result.pruned}); loosen the constraints or the "
                                       "search space")
                else:
                    constraints = _constraints(config, result.metrics)
                    record_constraints(trial, constraints)
                    trial.set_user_attr("metrics", result.metrics)
                    trial.set_user_attr("details", result.attrs)
                    trial.set_user_attr("cache_hit", result.cache_hit)
                    trial.set_user_attr("seconds", round(result.seconds, 3))
                    values = [result.metrics[n] for n in config.objective_names()]
                    study.tell(trial, values)
                    stats.completed += 1
                    stats.cache_hits += int(result.cache_hit)
                    stopped_in_a_row = 0
                    seen.add(tuple(sorted(trial.params.items())))
                    if all(v <= 0 for v in constraints.values()):
                        add_to_front(values, trial.number)
                    if config.sweep.enabled and not result.cache_hit:
                        derived = record_derived_trials(study, config, ctx, trial.number,
                                                        knobs=trial_knobs, dists=dists, seen=seen)
                        stats.derived += len(derived)
                        for d in derived:  # feasible by construction
                            add_to_front([d.metrics[n] for n in config.objective_names()], trial.number)
                if progress is not None:
                    progress(study, stats, target)
        finally:
            executor.close()
    return stats
