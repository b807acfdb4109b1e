"""The study definition and its vocabulary: the lowest domain layer, read by every other package.

Owns the registries of the names a definition may use (:mod:`dse.config.knobs`: knobs and
metrics; :mod:`dse.config.tasks`: GLUE tasks), the validated definition itself
(:mod:`dse.config.study`: pydantic models, YAML loading, :func:`config_hash`), its JSON schema
(:mod:`dse.config.schema`, ``dse config schema``) and the options of ``dse trace``
(:mod:`dse.config.trace`, imported on demand: it validates with ``hwmodels``' configs). May import
only the bottom modules (:mod:`dse.errors`, :mod:`dse.io`, :mod:`dse.version`) and ``hwmodels``;
no torch, no Optuna.
"""

from dse.config.knobs import KNOBS, METRICS, TASK_KNOBS, TASK_METRICS, Knob, knob_of, knobs_for_task
from dse.config.study import (
    CONFIG_VERSION,
    CategoricalParam,
    Constraints,
    DataConfig,
    EarlyStoppingConfig,
    ExecutorConfig,
    FaultsConfig,
    FinetuneConfig,
    FloatParam,
    IntParam,
    ModelConfig,
    Objective,
    Param,
    SamplerConfig,
    StorageConfig,
    StudyConfig,
    SweepConfig,
    TaskEntry,
    TaskSettings,
    check_knob_value,
    config_hash,
    load_study_config,
    parse_study_config,
)
from dse.config.tasks import TASKS, TaskSpec, task_spec

__all__ = [
    "CONFIG_VERSION",
    "KNOBS",
    "METRICS",
    "TASKS",
    "TASK_KNOBS",
    "TASK_METRICS",
    "CategoricalParam",
    "Constraints",
    "DataConfig",
    "EarlyStoppingConfig",
    "ExecutorConfig",
    "FaultsConfig",
    "FinetuneConfig",
    "FloatParam",
    "IntParam",
    "Knob",
    "ModelConfig",
    "Objective",
    "Param",
    "SamplerConfig",
    "StorageConfig",
    "StudyConfig",
    "SweepConfig",
    "TaskEntry",
    "TaskSettings",
    "TaskSpec",
    "check_knob_value",
    "config_hash",
    "knob_of",
    "knobs_for_task",
    "load_study_config",
    "parse_study_config",
    "task_spec",
]
