"""The Python API: one :class:`Study` a user holds, whose methods are the CLI's verbs.

::

    import dse

    study = dse.Study.create("search_spaces/smoke.yaml", results_dir="results")  # or dse.Study.open("results/smoke")
    study.run(n_trials=10, executor="ray")         # on an opened study: resume
    analysis = study.analyse()                     # trials, front, hypervolume history (DataFrames), picks
    study.write_outputs()                          # trials.csv, pareto.csv, hypervolume.csv, plots/
    exported = study.export(pick="knee", out="exports/knee")
    dse.evaluate_export(exported)                  # re-scored from scratch: the trial's metrics
    dse.deploy(exported)                           # fp32 + int8 ONNX, measured

Every ``dse`` command is a thin call of this module (``dse/cli.py`` only parses and prints).
Heavy packages (torch, transformers, Optuna, Ray) load inside the calls that need them, so
``import dse`` stays light. Errors a user can fix are :class:`~dse.errors.DSEError` (one line).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dse.config import StudyConfig, TaskSettings, config_hash, load_study_config
from dse.errors import DSEError

if TYPE_CHECKING:  # pragma: no cover - types only: the modules behind them are heavy
    from wsgiref.simple_server import WSGIServer

    import optuna

    from dse.analysis.outputs import StudyOutputs
    from dse.analysis.results import StudyAnalysis
    from dse.artifacts.deploy import DeployReport
    from dse.evaluation import AnyContext
    from dse.study.engine import RunStats, StudyFolder
    from dse.training.prepare import PreparedModel

__all__ = [
    "DesignExport",
    "PreparedTask",
    "Progress",
    "Study",
    "check_definition_paths",
    "check_pick",
    "config_hash",
    "config_schema",
    "deploy",
    "evaluate_export",
    "evaluate_trace",
    "load_study_config",
    "prepare",
]

PathLike = str | os.PathLike[str]


def check_pick(pick: str) -> str:
    """The canonical form of a pick (``max-accuracy`` -> ``best:accuracy``); a ``DSEError`` if unknown.

    Picks: ``knee``, ``max-accuracy``, ``min-energy``, ``max-hv-contribution`` and ``best:<metric>``
    (the best Pareto design for any one metric)."""
    from dse.analysis.results import check_pick as check

    return check(pick)


@dataclass(frozen=True)
class Progress:
    """Where a running study stands; given to ``Study.run(progress=...)`` after every finished trial."""

    completed: int  # complete trials counted in the budget (derived trials are not)
    target: int
    failed: int  # failed this run
    cache_hits: int  # this run's trials whose logits came from the cache
    derived: int  # designs the cheap-knob sweep added this run
    pareto_size: int  # feasible non-dominated complete trials so far
    trials_per_minute: float  # this run's completed trials per minute
    early_stopped: int = 0  # this run's trials stopped after part of their dev pass (PRUNED)


@dataclass(frozen=True)
class DesignExport:
    """A design exported by :meth:`Study.export`: its folder (usable wherever a path is) and trial."""

    path: Path  # the folder: design.json, model/, accelerator.json (a multi-task design: per task)
    trial: int
    pick: str | None = None  # the pick that chose it; None when given by trial number

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class PreparedTask:
    """One task of a study, prepared: its settings and its fine-tuned early-exit model."""

    task: TaskSettings
    prepared: PreparedModel


def _definition(definition: PathLike | StudyConfig) -> StudyConfig:
    return definition if isinstance(definition, StudyConfig) else load_study_config(definition)


class Study:
    """A study folder (``<results_dir>/<name>/``) and its definition.

    Get one with :meth:`create` (from a study definition; nothing is written before
    :meth:`run`) or :meth:`open` (an existing folder). Readers (:meth:`analyse`,
    :meth:`status`, :meth:`export`, ...) never write the storage; :meth:`run` is the only writer,
    one process at a time (a kernel lock on the folder refuses a second one).
    """

    def __init__(self, folder: StudyFolder, config: StudyConfig) -> None:
        self._folder = folder
        self._config = config

    @classmethod
    def create(cls, definition: PathLike | StudyConfig, *, results_dir: PathLike = "results",
               storage: str | None = None, sampler: str | None = None, seed: int | None = None) -> Study:
        """A study of ``definition`` (a YAML file or a :class:`~dse.config.StudyConfig`) in
        ``results_dir/<name>``; :meth:`run` continues it if that folder holds the same definition.

        ``storage``: ``journal`` (default), ``sqlite``, ``sqlite:///PATH`` or
        ``postgresql+psycopg2://USER@HOST:PORT/DB`` (overrides the definition's).
        ``sampler`` (``tpe``, ``nsga2``, ``gp``, ``random``) and ``seed`` override the definition's
        sampler; the folder records the choice, and a folder run with another one is refused.
        """
        from dse.study.engine import StudyFolder, sampler_option

        config = _definition(definition)
        if sampler is not None or seed is not None:
            config = config.model_copy(update={"sampler": sampler_option(config.sampler, sampler, seed)})
        if storage is not None:
            from dse.study.storage import storage_option

            config = config.model_copy(update={"storage": storage_option(storage)})
        return cls(StudyFolder(Path(results_dir) / config.name), config)

    @classmethod
    def open(cls, path: PathLike) -> Study:
        """The study in an existing folder (its recorded definition)."""
        from dse.study.engine import StudyFolder

        folder = StudyFolder(Path(path))
        return cls(folder, folder.load_config())

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def path(self) -> Path:
        """The study folder."""
        return self._folder.path

    @property
    def config(self) -> StudyConfig:
        """The study definition."""
        return self._config

    @property
    def folder(self) -> StudyFolder:
        """The folder layout (config, journal, caches, plots)."""
        return self._folder

    def __repr__(self) -> str:
        return f"Study({self.name!r}, path={str(self.path)!r})"

    def optuna_study(self) -> optuna.Study:
        """The underlying Optuna study, opened read-only (the study must have run)."""
        from dse.study.engine import open_study

        return open_study(self._folder, self._config, create=False)

    def run(self, *, n_trials: int | None = None, executor: Literal["inline", "ray"] | None = None,
            ray_address: str | None = None, max_in_flight: int | None = None,
            progress: Callable[[Progress], None] | None = None, context: AnyContext | None = None,
            device: str | None = None) -> RunStats:
        """Run the study, or continue it, until ``n_trials`` trials (default: the definition's
        ``n_trials``) have completed; a killed or stopped run resumes where it stopped.

        ``executor``, ``ray_address``, ``max_in_flight``: override the definition's executor.
        ``progress``: called after every finished trial. ``context``: an evaluation context built
        beforehand (:func:`dse.evaluation.build_context`), instead of the study's own.
        ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` in place of the definition's ``device``.
        """
        from dse.study.engine import run_study

        callback = None
        if progress is not None:
            callback = _progress_callback(progress)
        return run_study(self._folder, self._config, n_trials=n_trials, executor_kind=executor,
                         ray_address=ray_address, max_in_flight=max_in_flight, progress=callback,
                         context=context, device=device)

    def status(self) -> dict[str, Any]:
        """Trial counts by state, target and completed trials, the Pareto size, the baselines and
        the hypervolume with its reference (what ``dse study status`` prints; JSON-ready)."""
        from dse.analysis.outputs import study_status

        return study_status(self.optuna_study(), self._config)

    def analyse(self) -> StudyAnalysis:
        """Every trial, the feasible Pareto front and the hypervolume history as DataFrames, the
        hypervolume and its reference point, the baselines; ``.picks()`` gives the named picks."""
        from dse.analysis.results import analyse_study

        return analyse_study(self.optuna_study(), self._config)

    def write_outputs(self) -> StudyOutputs:
        """Rebuild ``trials.csv``, ``pareto.csv``, ``hypervolume.csv`` and ``plots/`` in the study folder."""
        from dse.analysis.outputs import write_study_outputs

        return write_study_outputs(self.analyse(), self._folder)

    def pick(self, pick: str) -> int:
        """The trial number a named pick chooses among the feasible Pareto designs
        (``knee``, ``max-accuracy``, ``min-energy``, ``max-hv-contribution``, ``best:<metric>``)."""
        check_pick(pick)
        return self._pick(self.optuna_study(), pick)

    def _pick(self, study: optuna.Study, pick: str) -> int:
        from dse.analysis.results import pareto_table, pick_trial, study_reference, trials_table

        trials = trials_table(study, self._config)
        return pick_trial(pareto_table(trials, self._config), self._config, pick,
                          reference=study_reference(trials, self._config)[0])

    def export(self, *, pick: str | None = None, trial: int | None = None,
               out: PathLike | None = None, force: bool = False) -> DesignExport:
        """Write one design (exactly one of ``pick`` or ``trial``) into the folder ``out``
        (default ``<study>/exports/<pick or trial-N>``): design.json, model/ (Hugging Face),
        accelerator.json. A non-empty ``out`` that is not an export of the same design is
        refused unless ``force`` (a ``model/`` we did not write is never replaced)."""
        from dse.analysis.results import pick_label
        from dse.artifacts.export import export_design

        if (pick is None) == (trial is None):
            raise DSEError("give exactly one of pick or trial")
        study = self.optuna_study()
        if trial is None:
            assert pick is not None
            trial = self._pick(study, pick)
        name = pick_label(pick) if pick is not None else f"trial-{trial}"
        target = Path(out) if out is not None else self.path / "exports" / name
        path = export_design(study, self._config, trial, target, cache_dir=self._folder.cache, force=force)
        return DesignExport(Path(path), trial, pick)

    def report(self, *, out: PathLike | None = None, design: str = "knee") -> Path:
        """Write the self-contained HTML report (default ``<study>/report.html``); ``design``: the
        pick whose exit layers and per-sentence latencies it shows."""
        from dse.analysis.report import write_report

        return write_report(self._folder, Path(out) if out is not None else None, design=design)

    def dashboard(self, *, host: str = "127.0.0.1", port: int = 8080, allow_writes: bool = False) -> WSGIServer:
        """optuna-dashboard on the study's storage, bound but not yet serving (call
        ``serve_forever()``); read-only unless ``allow_writes`` (never while the study runs)."""
        from dse.analysis.dashboard import make_dashboard_server

        return make_dashboard_server(self._folder, host=host, port=port, allow_writes=allow_writes)


def _progress_callback(progress: Callable[[Progress], None]) -> Callable[..., None]:
    """The engine's ``progress(study, stats, target)`` as :class:`Progress` values."""
    def update(study: optuna.Study, stats: RunStats, target: int) -> None:  # noqa: ARG001
        # the engine keeps the front size incrementally: re-reading every trial here made a
        # study's coordinator time grow with its size
        rate = stats.completed / max(time.perf_counter() - stats.started, 1e-9) * 60
        progress(Progress(completed=stats.completed, target=target, failed=stats.failed,
                          cache_hits=stats.cache_hits, derived=stats.derived, pareto_size=stats.pareto_size,
                          trials_per_minute=rate, early_stopped=stats.early_stopped))

    return update


def _export_folder(export: PathLike) -> Path:
    return Path(os.fspath(export))


def evaluate_export(export: PathLike, *, model: bool = False) -> dict[str, float]:
    """Re-score an exported design from scratch on the same dev rows; its metrics.

    ``export``: an export folder (or its design.json, or a :class:`DesignExport`): the design is
    rebuilt from its study definition and scored like a trial (every metric of the trial).
    With ``model=True`` the exported Hugging Face model itself is scored (``export``'s
    ``model/``, or a model folder): ``accuracy``, ``avg_exit_layer`` and ``dev_rows``.
    """
    path = _export_folder(export)
    if model:
        from dse.artifacts.export import MODEL_DIR
        from dse.artifacts.hf_export import score_exported_model

        folder = path.parent if path.is_file() else path
        if not (folder / "config.json").is_file():  # an export folder (or its design.json)
            folder = folder / MODEL_DIR
        score = score_exported_model(folder)
        return {"accuracy": score.accuracy, "avg_exit_layer": score.avg_exit_layer,
                "dev_rows": int(len(score.exit_layers))}
    from dse.artifacts.export import load_design

    data, config = load_design(path)  # a bad export is one line before torch is imported
    from dse.evaluation import build_context, evaluate_trial

    ctx = build_context(config, cache_dir=None)
    return evaluate_trial(ctx, config.knob_values({**data["compression"], **data["hardware"]})).metrics


def deploy(export: PathLike, *, threads: int | None = None, max_rows: int | None = None,
           glue_dir: PathLike | None = None, format: str = "onnx",  # noqa: A002
           lengths: list[int] | None = None) -> DeployReport:
    """Write ``<export>/deploy/`` (fp32 and int8 early-exit deployables, deploy.json) and measure
    size, accuracy, agreement with the trial and per-sentence latency on this CPU (the first
    ``max_rows`` of the trial's dev rows). ``format``: ``"onnx"`` (onnxruntime; latency at 1, 2
    and 4 threads, or ``threads`` alone), ``"litert"`` (the ``litert`` extra; signatures at each of
    ``lengths`` tokens, default 32 and the export's ``max_seq_length``) or
    ``"torchscript"`` (legacy; ``threads`` torch threads)."""
    from dse.artifacts.deploy_request import check_deploy_request

    folder = _export_folder(export)
    check_deploy_request(folder, format=format, lengths=lengths, max_rows=max_rows)  # before torch is imported
    from dse.artifacts.deploy import deploy_export

    return deploy_export(folder, threads=threads, max_rows=max_rows,
                         glue_dir=None if glue_dir is None else os.fspath(glue_dir), format=format, lengths=lengths)


def prepare(definition: PathLike | StudyConfig, *, progress: Callable[[PreparedTask], None] | None = None,
            device: str | None = None) -> list[PreparedTask]:
    """Fine-tune (or load from the cache) every task's early-exit model of a study definition.

    Every task's data is loaded first, so a missing one fails before any fine-tune starts;
    ``progress`` is called as each task is ready. ``device``: in place of the definition's ``device``.
    """
    from dse.evaluation import check_task_data, prepare_for_study
    from dse.modeling.device import resolve_device

    config = _definition(definition)
    torch_device = resolve_device(device or config.device)
    check_task_data(config)
    out = []
    for task in config.task_settings():
        out.append(PreparedTask(task, prepare_for_study(config, task, torch_device)))
        if progress is not None:
            progress(out[-1])
    return out


def evaluate_trace(csv_path: PathLike, *, profile: PathLike | None = None, **options: Any) -> dict[str, Any]:
    """Drive the hardware model with an external per-sentence entropy trace (CSV with columns
    ``tokens,entropy_1..entropy_L``): exits, energy, latency, area of its scored sentences.

    ``profile``: a YAML or JSON file of trace options; ``options`` (any field of
    :class:`dse.config.trace.TraceOptions`: ``threshold`` (nats, one or one per layer), ``model``
    (a model or a ``config.json`` file), ``num_labels``, the off-ramp design the trace came from
    (``offramp_head``: ``pooler``/``linear``; ``offramp_pooling``: ``cls``/``mean``), the compression profile
    (``encoder_density``, ``embedding_density``, ``weight_bits``, ``weight_exp_bits``,
    ``activation_bits``, ``attention_span``), the accelerator (``vmac_lanes``, ``vector_size``,
    ``sram_kb``, ``envm_cell``, ``voltage_v``, ``latency_target_ms``: DVFS on), and where the DVFS
    predictor is fitted (``fit_fraction`` and ``fit_seed`` of held-out rows, or ``fit_trace``))
    override the profile's values. The predictor is never fitted on a scored row.
    """
    from dse.config.trace import load_trace_options

    checked = load_trace_options(profile, **options)  # cheap, one line each, before torch is imported
    from dse.evaluation.trace import evaluate_trace as evaluate

    return evaluate(Path(csv_path), checked)


def check_definition_paths(config: StudyConfig) -> None:
    """Raise :class:`DSEError` (one line) unless ``config``'s model and GLUE folder exist."""
    from dse.evaluation.context import check_paths

    check_paths(config)


def config_schema() -> dict[str, Any]:
    """The JSON schema of a study definition (see :mod:`dse.config.schema`)."""
    from dse.config.schema import study_schema

    return study_schema()
