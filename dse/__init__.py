"""edgebert-dse: algorithm/hardware co-design of BERT-family models on edge accelerators.

The Python API (:mod:`dse.api`), the same verbs as the ``dse`` command::

    import dse

    study = dse.Study.create("search_spaces/smoke.yaml", results_dir="results")  # or dse.Study.open(folder)
    study.run(n_trials=10)
    analysis = study.analyse()
    study.write_outputs()
    exported = study.export(pick="knee", out="exports/knee")
    dse.evaluate_export(exported)
    dse.deploy(exported)

Heavy parts (torch, transformers, Optuna, Ray) load only when used: ``import dse`` reads no
model and starts nothing. The package layout and what may import what: docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dse.config import StudyConfig, config_hash, load_study_config
from dse.errors import ConfigError, DataError, DSEError, ModelError
from dse.version import __version__

if TYPE_CHECKING:  # pragma: no cover - what the lazy names below resolve to, for type checkers and editors
    from dse.api import (DesignExport, PreparedTask, Progress, Study, config_schema, deploy, evaluate_export,
                         evaluate_trace, prepare)
    from dse.artifacts.hf_export import load_exported_model, score_exported_model

__all__ = [
    "ConfigError",
    "DSEError",
    "DataError",
    "DesignExport",
    "ModelError",
    "PreparedTask",
    "Progress",
    "Study",
    "StudyConfig",
    "__version__",
    "config_hash",
    "config_schema",
    "deploy",
    "evaluate_export",
    "evaluate_trace",
    "load_exported_model",
    "load_study_config",
    "prepare",
    "score_exported_model",
]

_LAZY = {
    **{name: "dse.api" for name in ("DesignExport", "PreparedTask", "Progress", "Study", "config_schema", "deploy",
                                    "evaluate_export", "evaluate_trace", "prepare")},
    "load_exported_model": "dse.artifacts.hf_export",
    "score_exported_model": "dse.artifacts.hf_export",
}


def __getattr__(name: str) -> Any:  # lazy, so ``import dse`` stays free of torch and Optuna
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
