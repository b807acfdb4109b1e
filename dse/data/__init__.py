"""GLUE rows and GLUE metrics: what a task's train and dev splits hold, and how a prediction scores.

Owns the loaders (a local GLUE folder or the Hugging Face hub, :mod:`dse.data.glue`) and the
task metrics in plain numpy (:mod:`dse.data.metrics`). The task registry itself (names,
labels, main metric) is :mod:`dse.config.tasks`. May import :mod:`dse.config` and the bottom
modules (:mod:`dse.errors`, :mod:`dse.io`, :mod:`dse.version`); never a model, torch, or a study.
"""

from dse.data.glue import available_splits, load_glue, load_task_split, resolve_glue_dir

__all__ = ["available_splits", "load_glue", "load_task_split", "resolve_glue_dir"]
