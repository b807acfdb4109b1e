"""Data layer: GLUE task registry and loaders (local GLUE folder or Hugging Face hub)."""

from dse.data.glue import TASKS, TaskSpec, available_splits, load_glue, load_task_split, resolve_glue_dir, task_spec

__all__ = ["TASKS", "TaskSpec", "available_splits", "load_glue", "load_task_split", "resolve_glue_dir", "task_spec"]
