"""edgebert-dse: algorithm/hardware co-design of BERT-family models on edge accelerators.

Heavy parts (torch, transformers, Ray) load only when used: import from the submodules,
e.g. ``dse.study.engine.run_study`` or ``dse.evaluate.evaluate_trial``.
"""

from dse.config import StudyConfig, load_study_config
from dse.errors import ConfigError, DataError, DSEError, ModelError

__all__ = ["ConfigError", "DSEError", "DataError", "ModelError", "StudyConfig", "load_study_config"]
__version__ = "0.1.0"
