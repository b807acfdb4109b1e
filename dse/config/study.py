"""Study definitions: validated pydantic models loaded from YAML (``search_spaces/*.yaml``).

Every name a definition uses is checked against the registries of :mod:`dse.config.knobs`
(knobs, metrics) and :mod:`dse.config.tasks` (GLUE tasks); :func:`config_hash` identifies a
definition (a study folder refuses another one).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from dse.config.knobs import KNOBS, METRICS, TASK_KNOBS, TASK_METRICS
from dse.config.tasks import task_spec
from dse.errors import ConfigError

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:[0-9]+)$"  # a study's device (resolved by dse.modeling.device)

__all__ = [
    "CONFIG_VERSION",
    "Param",
    "CategoricalParam",
    "Constraints",
    "DataConfig",
    "EarlyStoppingConfig",
    "ExecutorConfig",
    "FaultsConfig",
    "FinetuneConfig",
    "FloatParam",
    "IntParam",
    "ModelConfig",
    "Objective",
    "SamplerConfig",
    "StorageConfig",
    "StudyConfig",
    "SweepConfig",
    "TaskEntry",
    "TaskSettings",
    "check_knob_value",
    "config_hash",
    "load_study_config",
    "parse_study_config",
    "read_yaml_file",
]

CONFIG_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Strict):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "FloatParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log scale needs low > 0 and no step")
        _check_step(self.low, self.high, self.step)
        return self


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "IntParam":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log scale needs low > 0 and step 1")
        _check_step(self.low, self.high, self.step)
        return self


def _check_step(low: float, high: float, step: float | None) -> None:
    """Optuna silently narrows a range its step does not divide (to one value if the step is
    larger than the range): refuse it instead, by Optuna's own decimal rule."""
    if step is None:
        return
    if not math.isfinite(step):
        raise ValueError(f"step must be a finite number, got {step}")
    if low == high:
        return
    span = Decimal(str(high)) - Decimal(str(low))
    try:
        remainder = span % Decimal(str(step))
    except InvalidOperation:  # more steps than decimal's precision: Optuna's own check would raise too
        raise ValueError(f"step {step} is too small for the range {low}..{high}") from None
    if remainder != 0:
        raise ValueError(f"step {step} does not divide the range {low}..{high}"
                         + (" (it is larger than the range)" if step > high - low else "")
                         + "; the search would silently skip the top of the range")


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: tuple[float | int | str | bool, ...] = Field(min_length=1)


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class ModelConfig(_Strict):
    name: str = Field(default="all-MiniLM-L6-v2", min_length=1,
                      description="packaged default, a Hugging Face hub name or a local folder")
    max_seq_length: int = Field(default=128, ge=8, le=512)


class DataConfig(_Strict):
    glue_dir: str | None = Field(default=None, description="GLUE folder; else DSE_GLUE_DIR; else the hub")
    dev_subset: int | None = Field(default=None, ge=16, description="seeded dev subset (rows)")
    seed: int = 0
    calibration_rows: int = Field(
        default=256, ge=16,
        description="seeded train rows each design is calibrated on (static activation scales, off-ramp "
                    "re-centring and temperature) and its DVFS exit predictor fitted on; fewer: cheaper trials")


class FinetuneConfig(_Strict):
    """Off-ramp fine-tuning: stage 1 trains the backbone and the final classifier (``joint``: and
    every off-ramp, PABEE-weighted), stage 2 the earlier off-ramps on cached, standardised features.

    The ``offramp_*`` design settings are preparation-level: each setting is fine-tuned once and
    cached (they are part of the prepared model's key); the defaults are EdgeBERT's design
    (docs/compression.md, "Off-ramps", has what each setting measured).
    """

    train_subset: int | None = Field(default=8000, ge=32, description="seeded train rows; null = all")
    min_words: int = Field(default=0, ge=0, description="drop train rows with fewer words")
    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=1e-4, gt=0)
    max_train_seq_length: int = Field(default=64, ge=8, le=512)
    offramp_train_subset: int | None = Field(
        default=4000, ge=32, description="rows whose pooled features train the off-ramps; null = all"
    )
    offramp_epochs: int = Field(default=20, ge=1, description="stage-2 AdamW epochs of pooler off-ramps "
                                "(a linear off-ramp is solved to convergence)")
    offramp_learning_rate: float = Field(default=1e-3, gt=0, description="stage-2 AdamW learning rate of "
                                         "pooler off-ramps (decays linearly to 0)")
    seed: int = 0
    freeze_embeddings: bool = Field(default=False, description="keep the embedding module (tables, LayerNorm) "
                                    "fixed; multi-task studies always do, so their tasks share one table")
    offramp_pooling: Literal["cls", "mean"] = Field(
        default="cls", description="every off-ramp's input: the [CLS] vector (EdgeBERT) or the mean of the "
        "token vectors (what all-MiniLM-L6-v2 was trained for)")
    offramp_head: Literal["pooler", "linear"] = Field(
        default="pooler", description="pooler: Linear(H, H) + tanh before the classifier (EdgeBERT); "
        "linear: the classifier only (no H x H weights per off-ramp)")
    offramp_training: Literal["two_stage", "joint"] = Field(
        default="two_stage", description="two_stage: backbone and final classifier first, then the off-ramps "
        "on frozen features (DeeBERT/EdgeBERT); joint: every off-ramp's loss, weighted by depth (PABEE), "
        "in the backbone's fine-tune, then the same stage 2 from the jointly trained off-ramps")
    offramp_distillation: float = Field(
        default=0.0, ge=0.0, le=1.0, description="weight of self-distillation from the final layer's soft "
        "labels (temperature 2) in the off-ramps' stage-2 loss; the rest is the task loss (0 = off)")


class Objective(_Strict):
    name: str  # a METRICS name, or <task>.<TASK_METRICS name> in a multi-task study
    direction: Literal["maximize", "minimize"] | None = None

    @model_validator(mode="after")
    def _check(self) -> "Objective":
        metric = self.name.split(".", 1)[1] if "." in self.name else self.name
        if metric not in METRICS or ("." in self.name and metric not in TASK_METRICS):
            raise ValueError(f"unknown objective {self.name!r}; known: {', '.join(METRICS)}, "
                             f"or <task>.<metric> with a metric of {', '.join(TASK_METRICS)}")
        if self.direction is None:
            object.__setattr__(self, "direction", METRICS[metric])
        return self


class Constraints(_Strict):
    """Feasibility limits; a trial is feasible when it meets every limit that is set."""

    max_accuracy_drop_points: float | None = Field(default=None, ge=0)
    latency_target_ms: float | None = Field(default=None, gt=0, description="mean latency bound")
    max_area_mm2: float | None = Field(default=None, gt=0)
    max_memory_mb: float | None = Field(default=None, gt=0)
    min_accuracy_under_faults_points: float | None = Field(default=None, ge=0, le=100)


class SweepConfig(_Strict):
    """Cheap-knob sweep after each new compression setting (see dse.study.sweep): derived trials."""

    enabled: bool = True
    values_per_knob: int = Field(default=8, ge=2, le=64, description="grid points per numeric knob")
    max_designs: int = Field(default=2000, ge=1, description="combinations scored per sweep")
    max_derived_trials: int = Field(default=10, ge=1, description="designs recorded per sweep")


class EarlyStoppingConfig(_Strict):
    """Dominance-aware early stopping of a trial's dev pass (see dse.evaluation.staged).

    The dev rows are scored in stages (seeded random fractions, then all of them); after each
    stage a one-sided Clopper-Pearson bound on the accuracy, with the hardware figures bounded
    by every unseen sentence exiting after layer 1, gives the design's most optimistic metrics.
    When even those break the accuracy-drop or latency constraint, or are dominated by the
    feasible front found so far, the trial is recorded as PRUNED with its reason and partial
    figures. Applies to single-task studies whose main metric is accuracy, with faults off.
    """

    enabled: bool = False  # off until benchmarks/search_efficiency.py measures it on the real model
    stages: tuple[float, ...] = Field(default=(0.25, 0.5), min_length=1,
                                      description="fractions of the dev rows scored before the full pass")
    confidence: float = Field(default=0.95, ge=0.5, lt=1.0,
                              description="one-sided confidence of the accuracy bound")

    @model_validator(mode="after")
    def _check(self) -> "EarlyStoppingConfig":
        if any(not 0.0 < f < 1.0 for f in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ValueError("stages must be increasing fractions strictly between 0 and 1 "
                             "(the full pass follows the last)")
        return self


class FaultsConfig(_Strict):
    """eNVM fault injection into the stored embedding tables (dse.compression.envm_faults)."""

    enabled: bool = False
    repeats: int = Field(default=3, ge=1, le=100, description="faulty dev passes per setting (seeds)")
    seed: int = Field(default=0, ge=0)
    error_rate_scale: float = Field(default=1.0, ge=0, description="multiplies every cell's error probability")
    cell_error_prob: dict[str, float] = Field(default_factory=dict,
                                              description="envm_cell -> adjacent-level error probability override")

    @model_validator(mode="after")
    def _check(self) -> "FaultsConfig":
        cells = KNOBS["envm_cell"].choices or ()
        for cell, prob in self.cell_error_prob.items():
            if cell not in cells:
                raise ValueError(f"cell_error_prob: unknown eNVM cell {cell!r}; known: {', '.join(cells)}")
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"cell_error_prob: {cell} must be a probability in [0, 1], got {prob}")
        return self


class TaskEntry(_Strict):
    """One task of a multi-task study: its share of the sentences the chip serves, its own data."""

    name: str
    mix: float = Field(default=1.0, gt=0, description="relative share of served sentences (normalised)")
    dev_subset: int | None = Field(default=None, ge=16, description="seeded dev subset; null = data.dev_subset")
    train_from_dev: float | None = Field(
        default=None, gt=0, lt=1, description="no train split offline (QNLI, MNLI): fine-tune on this "
        "seeded fraction of the dev rows and score on the rest (an approximation, marked in outputs)")
    finetune: FinetuneConfig | None = Field(default=None, description="null: the study's finetune")

    @model_validator(mode="after")
    def _check(self) -> "TaskEntry":
        try:
            object.__setattr__(self, "name", task_spec(self.name).name)  # canonical: "SST-2" -> "sst2"
        except Exception as exc:  # DataError -> validation error with the same text
            raise ValueError(str(exc)) from None
        return self


@dataclass(frozen=True)
class TaskSettings:
    """One task of a study, resolved: what preparing and scoring it needs."""

    name: str  # canonical GLUE task name
    mix: float  # share of the served sentences, summing to 1 over the study's tasks
    finetune: FinetuneConfig
    dev_subset: int | None
    train_from_dev: float | None

    @property
    def approximation(self) -> str | None:
        """What an approximated task's scores mean, for outputs; None when it has a real train split."""
        if self.train_from_dev is None:
            return None
        return (f"{self.name}: no train split offline; fine-tuned on {self.train_from_dev:.0%} of the dev rows "
                f"(seeded), scored on the other {1 - self.train_from_dev:.0%}: not the official dev figure")


class SamplerConfig(_Strict):
    name: Literal["tpe", "nsga2", "random", "gp"] = "tpe"
    seed: int = Field(default=0, ge=0, lt=2**32)  # numpy's seed range: the samplers' generators


class ExecutorConfig(_Strict):
    kind: Literal["inline", "ray"] = "inline"
    max_in_flight: int = Field(default=1, ge=1)
    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0, description="GPUs per Ray trial, fractional allowed "
                                  "(0.25: four trials share one); each trial runs on the GPU Ray assigns it")
    max_retries: int = Field(default=2, ge=0, le=10, description="re-runs of a crashed or transiently failed evaluation")
    ray_address: str | None = None

    @model_validator(mode="after")
    def _gpus(self) -> "ExecutorConfig":
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError(f"gpus_per_trial={self.gpus_per_trial:g}: above 1 it must be a whole number")
        return self


class StorageConfig(_Strict):
    """Where the trials live: a journal file in the study folder (default), SQLite or PostgreSQL."""

    kind: Literal["journal", "sqlite", "postgresql"] = "journal"
    url: str | None = Field(default=None, description="SQLAlchemy URL; sqlite default: <folder>/study.db")

    @model_validator(mode="after")
    def _check(self) -> "StorageConfig":
        schemes = {"journal": None, "sqlite": ("sqlite:",), "postgresql": ("postgresql:", "postgresql+")}
        prefixes = schemes[self.kind]
        if prefixes is None and self.url is not None:
            raise ValueError("a journal storage takes no url (it is <folder>/study.journal)")
        if self.kind == "postgresql" and self.url is None:
            raise ValueError("postgresql storage needs a url (postgresql+psycopg2://user@host:port/db)")
        if prefixes is not None and self.url is not None and not self.url.startswith(prefixes):
            raise ValueError(f"{self.kind} storage url must start with {' or '.join(prefixes)}")
        return self


class StudyConfig(_Strict):
    version: int = CONFIG_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    task: str = "sst2"
    tasks: tuple[TaskEntry, ...] | None = Field(default=None, min_length=2,
                                                description="a multi-task study: one chip serves these")
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    objectives: tuple[Objective, ...] = Field(
        default=(Objective(name="accuracy"), Objective(name="energy_uj"),
                 Objective(name="latency_ms")),
        min_length=1,
    )
    constraints: Constraints = Constraints()
    sampler: SamplerConfig = SamplerConfig()
    sweep: SweepConfig = SweepConfig()
    faults: FaultsConfig = FaultsConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    executor: ExecutorConfig = ExecutorConfig()
    storage: StorageConfig = StorageConfig()
    device: str = Field(default="auto", pattern=DEVICE_PATTERN,
                        description="where torch runs: auto (CUDA when available), cpu, cuda or cuda:N")
    n_trials: int = Field(default=40, ge=1, strict=True)  # strict: `true` is not 1
    search_space: dict[str, Param] = Field(min_length=1)
    fixed: dict[str, float | int | str] = Field(default_factory=dict)
    # Hypervolume reference point, objective -> value in the objective's own units; fixed here so
    # hypervolumes compare across runs and resumes (None: derived from the data, and said so).
    hypervolume_reference: dict[str, float] | None = None

    @model_validator(mode="after")
    def _check(self) -> "StudyConfig":
        if self.version != CONFIG_VERSION:
            raise ValueError(f"version {self.version} is not supported (this tool reads {CONFIG_VERSION})")
        try:
            task_spec(self.task)
        except Exception as exc:  # DataError -> validation error with the same text
            raise ValueError(str(exc)) from None
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError("objectives are listed twice")
        task_names = self._check_tasks()
        for name in names:
            if "." in name and name.split(".", 1)[0] not in task_names:
                raise ValueError(f"objective {name!r}: {name.split('.', 1)[0]!r} is not a task of this study"
                                 + ("" if task_names else " (per-task objectives need a multi-task study)"))
        for name, param in self.search_space.items():
            _check_knob(self._knob_name(name, task_names, "search_space"), param)
        for name, value in self.fixed.items():
            knob = self._knob_name(name, task_names, "fixed")
            if knob not in KNOBS:
                raise ValueError(f"fixed: unknown knob {name!r}; known: {', '.join(KNOBS)}")
            if name in self.search_space:
                raise ValueError(f"knob {name!r} is both searched and fixed")
            _check_value(knob, value)
        chosen = set(self.search_space) | set(self.fixed)
        for name in chosen:
            if "." in name and name.split(".", 1)[1] in chosen:
                raise ValueError(f"knob {name.split('.', 1)[1]!r} is set for every task and also as {name!r}")
        bits, exp_bits = self._extent("weight_bits", min), self._extent("weight_exp_bits", max)
        if exp_bits >= bits:
            raise ValueError(f"weight_exp_bits can reach {exp_bits} but weight_bits can be as low as "
                             f"{bits}: AdaptivFloat needs exp bits < total bits (one sign bit)")
        self._check_formats()
        self._check_degenerate_knobs(task_names)
        if self.hypervolume_reference is not None:
            _check_reference(self.hypervolume_reference, names)
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if self.tasks is not None:  # a multi-task study has no single task (and must reload without one)
            data.pop("task", None)
        return data

    def _check_tasks(self) -> list[str]:
        """A multi-task study's task names (canonical); [] for a single-task study."""
        if self.tasks is None:
            return []
        if "task" in self.model_fields_set:
            raise ValueError("give either task (one task) or tasks (a multi-task study), not both")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: {', '.join(sorted({n for n in names if names.count(n) > 1}))} listed twice")
        return names

    @staticmethod
    def _knob_name(name: str, task_names: list[str], where: str) -> str:
        """The knob behind a search_space/fixed key: ``knob`` or, in a multi-task study, ``<task>.<knob>``."""
        if "." not in name:
            return name
        if not task_names:
            raise ValueError(f"{where}: {name!r}: only a multi-task study (tasks:) scopes knobs to a task")
        task, knob = name.split(".", 1)
        if task not in task_names:
            raise ValueError(f"{where}: {name!r}: {task!r} is not a task of this study ({', '.join(task_names)})")
        if knob not in TASK_KNOBS:
            raise ValueError(f"{where}: {name!r}: {knob!r} cannot differ between tasks (one chip, one shared "
                             f"embedding table); per-task knobs: {', '.join(TASK_KNOBS)}")
        return knob

    @property
    def is_multitask(self) -> bool:
        return self.tasks is not None

    def task_settings(self) -> list[TaskSettings]:
        """Every task of the study, resolved (a single-task study has one, with mix 1)."""
        if self.tasks is None:
            return [TaskSettings(task_spec(self.task).name, 1.0, self.finetune, self.data.dev_subset, None)]
        total = sum(t.mix for t in self.tasks)
        return [TaskSettings(t.name, t.mix / total,
                             (t.finetune or self.finetune).model_copy(update={"freeze_embeddings": True}),
                             t.dev_subset if t.dev_subset is not None else self.data.dev_subset, t.train_from_dev)
                for t in self.tasks]

    def _values(self, knob: str) -> list[Any]:
        """Every value ``knob`` can take in this study, shared or per task: a searched int or
        categorical knob each of its values, a searched float knob its ends, else fixed or default."""
        scoped = [f"{t.name}.{knob}" for t in self.tasks or ()]
        names = scoped if scoped and all(n in self.search_space or n in self.fixed for n in scoped) \
            else [knob, *scoped]
        out: list[Any] = []
        for name in names:
            param = self.search_space.get(name)
            if isinstance(param, CategoricalParam):
                out.extend(param.choices)
            elif isinstance(param, IntParam):
                out.extend(range(param.low, param.high + 1, param.step))
            elif isinstance(param, FloatParam):
                out.extend((param.low, param.high))
            elif name in self.fixed or name == knob:
                out.append(self.fixed.get(name, KNOBS[knob].default))
        return out

    def _check_formats(self) -> None:
        """Every weight and activation format the study can sample must exist in AdaptivFloat
        (``dse.compression.adaptivfloat``), or its trials would fail at run time."""
        exps, variants = self._values("weight_exp_bits"), self._values("weight_format")
        for bits, exp, variant in itertools.product(self._values("weight_bits"), exps, variants):
            problem = _adaptivfloat_problem(int(bits), int(exp), str(variant))
            if problem:
                raise ValueError(f"weight_format {variant!r} with weight_bits={bits}, weight_exp_bits={exp} "
                                 f"can be sampled: {problem}")
        for bits, exp, variant in itertools.product(self._values("activation_bits"), exps, variants):
            # activations use the weights' variant and exponent width, at most bits - 1 (compression.apply)
            problem = bits and _adaptivfloat_problem(int(bits), min(int(exp), int(bits) - 1), str(variant))
            if problem:
                raise ValueError(f"activation_bits={bits} with weight_format {variant!r}, weight_exp_bits={exp} "
                                 f"can be sampled: {problem}")

    def _check_degenerate_knobs(self, task_names: list[str]) -> None:
        """Knobs that would run but mean nothing: refused rather than searched in vain."""
        for t in task_names or [self.task]:
            if not task_spec(t).is_regression:
                continue
            name = f"{t}.exit_threshold" if f"{t}.exit_threshold" in self.search_space | self.fixed \
                else "exit_threshold"
            if name in self.search_space or float(self.fixed.get(name, 0.0)) > 0:
                raise ValueError(f"{name}: {task_spec(t).name} is a regression task: its one output has entropy 0, "
                                 "so any threshold > 0 exits every sentence at layer 1; leave exit_threshold 0")
        if max(self._values("train_embedding_pruning")) > 0 and min(self._values("train_epochs")) <= 1:
            raise ValueError("train_embedding_pruning > 0 with train_epochs <= 1 can be sampled: the tables are "
                             "pruned at each epoch's end, so one epoch prunes after its last step and the model "
                             "never adapts; use train_epochs > 1")

    def _extent(self, name: str, pick: Any) -> Any:
        """The lowest or highest value a numeric knob can take in this study."""
        param = self.search_space.get(name)
        if param is None:
            return self.fixed.get(name, KNOBS[name].default)
        if isinstance(param, CategoricalParam):
            return pick(param.choices)
        return pick(param.low, param.high)

    def knob_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every knob's value for a trial: sampled, else fixed, else the default."""
        values = {name: knob.default for name, knob in KNOBS.items()}
        values.update(self.fixed)
        values.update(params)
        for knob in TASK_KNOBS if self.tasks else ():  # set for every task: no shared value left
            if all(f"{t.name}.{knob}" in values for t in self.tasks):
                del values[knob]
        return values

    def objective_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    def directions(self) -> list[str]:
        return [str(o.direction) for o in self.objectives]


def _adaptivfloat_problem(total_bits: int, exp_bits: int, variant: str) -> str | None:
    """Why ``AdaptivFloatFormat(total_bits, exp_bits, variant)`` would refuse to exist (None if it
    exists); its rules, here because the definition cannot import dse.compression (a test checks
    them against the implementation)."""
    if not 4 <= total_bits <= 16:
        return f"AdaptivFloat needs 4..16 bits, not {total_bits}"
    if not 1 <= exp_bits <= 5 or exp_bits >= total_bits:
        return f"AdaptivFloat<{total_bits},{exp_bits}> needs 1..5 exponent bits, fewer than its {total_bits} bits"
    if variant == "ref2022" and exp_bits < 2:
        return "ref2022 needs weight_exp_bits >= 2"
    if variant == "edgebert_hw" and (total_bits, exp_bits) != (8, 3):
        return "edgebert_hw is the accelerator's AdaptivFloat<8,3> only"
    return None


def _check_reference(reference: dict[str, float], objectives: list[str]) -> None:
    if set(reference) != set(objectives):
        missing = [n for n in objectives if n not in reference]
        extra = [n for n in reference if n not in objectives]
        what = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                           f"not objectives: {', '.join(extra)}" if extra else "") if part)
        raise ValueError(f"hypervolume_reference must give exactly the objectives "
                         f"({', '.join(objectives)}): {what}")
    for name, value in reference.items():
        if not math.isfinite(value):
            raise ValueError(f"hypervolume_reference: {name} must be a finite number, got {value!r}")


def _check_value(name: str, value: Any) -> None:
    knob = KNOBS[name]
    if knob.kind == "categorical":
        if value not in knob.choices:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(str, knob.choices))}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if knob.kind == "int" and not float(value).is_integer():
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if not knob.low <= value <= knob.high:
        raise ValueError(f"{name}: {value} is outside the legal range [{knob.low}, {knob.high}]")


def check_knob_value(name: str, value: Any) -> None:
    """Raise ``ValueError`` (one line) unless ``value`` is legal for the knob ``name``
    (a ``<task>.<knob>`` name is checked as its knob)."""
    knob = name.split(".", 1)[-1]
    if knob not in KNOBS:
        raise ValueError(f"unknown knob {name!r}")
    _check_value(knob, value)


def _check_knob(name: str, param: FloatParam | IntParam | CategoricalParam) -> None:
    if name not in KNOBS:
        raise ValueError(f"search_space: unknown knob {name!r}; known: {', '.join(KNOBS)}")
    knob = KNOBS[name]
    if isinstance(param, CategoricalParam):
        for choice in param.choices:
            _check_value(name, choice)
            # 0 == False in Python: choices of a true/false knob must be true/false (not 0, 1), and
            # only there (fixed values are numbers already, so the check is on choices alone)
            is_bool_knob = knob.kind == "categorical" and any(isinstance(c, bool) for c in knob.choices)
            if knob.kind == "categorical" and isinstance(choice, bool) != is_bool_knob:
                raise ValueError(f"search_space: {name}: {choice!r} is not one of "
                                 f"{', '.join(map(str, knob.choices))}")
        return
    if knob.kind == "categorical":
        raise ValueError(f"search_space: {name} is categorical; use type: categorical")
    if knob.kind == "int" and isinstance(param, FloatParam):
        raise ValueError(f"search_space: {name} takes integers; use type: int")
    _check_value(name, param.low)
    _check_value(name, param.high)


def config_hash(config: StudyConfig) -> str:
    """SHA-256 of the canonical JSON of the resolved definition."""
    data = config.model_dump(mode="json")
    if data.get("hypervolume_reference") is None:  # unset: keep the hashes of older studies
        data.pop("hypervolume_reference", None)
    data.pop("storage", None)  # where trials live is not what the study is
    data.pop("device", None)  # nor where they run (the prepared model's key records a CUDA fine-tune)
    if data.get("sweep") == SweepConfig().model_dump(mode="json"):  # keep older studies' hashes
        data.pop("sweep")
    if data.get("faults") == FaultsConfig().model_dump(mode="json"):  # keep older studies' hashes
        data.pop("faults")
    if data.get("early_stopping") == EarlyStoppingConfig().model_dump(mode="json"):  # likewise
        data.pop("early_stopping")
    if data["constraints"].get("min_accuracy_under_faults_points") is None:  # likewise
        data["constraints"].pop("min_accuracy_under_faults_points", None)
    if data.get("tasks") is None:  # likewise
        data.pop("tasks", None)
    if data["data"].get("calibration_rows") == DataConfig.model_fields["calibration_rows"].default:  # likewise
        data["data"].pop("calibration_rows")
    if not data["finetune"].get("freeze_embeddings"):  # likewise
        data["finetune"].pop("freeze_embeddings", None)
    _drop_offramp_defaults(data["finetune"])
    for task in data.get("tasks") or ():
        if task.get("finetune"):
            _drop_offramp_defaults(task["finetune"])
    for key, default in (("gpus_per_trial", 0.0), ("max_retries", 2)):  # keep older studies' hashes
        if data["executor"].get(key) == default:
            data["executor"].pop(key)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_OFFRAMP_DEFAULTS = {name: FinetuneConfig.model_fields[name].default
                     for name in ("offramp_pooling", "offramp_head", "offramp_training", "offramp_distillation")}


def _drop_offramp_defaults(finetune: dict[str, Any]) -> None:
    """Off-ramp design settings at their defaults leave a definition's hash as it was before they existed."""
    for name, default in _OFFRAMP_DEFAULTS.items():
        if finetune.get(name) == default:
            finetune.pop(name)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    # repr for keys that are not plain text (a newline in a key must not break the one-line error)
    where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"]
                     if not str(p).startswith("function-after"))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


def parse_study_config(data: Any, *, source: str) -> StudyConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a study definition must be a YAML mapping")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_first_error(exc)}") from None


MAX_DEFINITION_BYTES = 1_000_000  # a definition is a few KB; a huge file is a mistake, not a study
MAX_YAML_DEPTH = 32  # ours nest 4 deep; PyYAML recurses per level and would overflow the stack


class _DefinitionLoader(yaml.SafeLoader):
    """safe_load that also refuses duplicate keys (YAML lets the last one win silently) and
    nesting deeper than :data:`MAX_YAML_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path, *, what: str = "a study definition") -> Any:
    """The parsed YAML (or JSON) of ``path``, read safely (no tags, no duplicate keys, bounded size
    and depth); every problem is one ``ConfigError`` line naming the file. ``what`` names the file's
    role in the size message."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_DEFINITION_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for {what} "
                              f"(at most {MAX_DEFINITION_BYTES})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    try:
        return yaml.load(text, Loader=_DefinitionLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study definition; every problem is one ``ConfigError`` line."""
    return parse_study_config(read_yaml_file(path), source=str(path))
