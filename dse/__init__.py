"""edgebert-dse: algorithm/hardware co-design of BERT-family models on edge accelerators.

Heavy parts (torch, transformers, Ray) load only when used: import from the submodules,
e.g. ``dse.study.engine.run_study`` or ``dse.evaluate.evaluate_trial``.
"""

from dse.config import StudyConfig, load_study_config
from dse.errors import ConfigError, DataError, DSEError, ModelError

__all__ = ["ConfigError", "DSEError", "DataError", "ModelError", "StudyConfig", "load_exported_model",
           "load_study_config", "score_exported_model"]
__version__ = "0.1.0"

_LAZY = {"load_exported_model": "dse.hf_export", "score_exported_model": "dse.hf_export"}


def __getattr__(name: str):  # noqa: ANN202 - lazy, so ``import dse`` stays free of torch
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dse' has no attribute {name!r}")
