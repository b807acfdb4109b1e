"""A study's entry points into evaluation: one context, one trial, whatever the number of tasks.

:func:`build_context` gives an :class:`~dse.evaluation.context.EvalContext` for a single-task
study, or a :class:`~dse.evaluation.multitask.MultiTaskContext` for a multi-task one;
:func:`evaluate_trial` and :func:`sentence_results` accept either. This is the only module that
knows both kinds, so the single-task scorer and the multi-task combination do not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dse.config import StudyConfig
import torch

from dse.evaluation.context import EvalContext, build_task_context, place_task_context
from dse.evaluation.multitask import MultiTaskContext, build_multitask_context, evaluate_multitask
from dse.evaluation.score import SentenceResults, TrialOutcome, evaluate_design

__all__ = ["AnyContext", "build_context", "context_device", "evaluate_trial", "place_context", "sentence_results"]

AnyContext = EvalContext | MultiTaskContext


def build_context(config: StudyConfig, *, cache_dir: Path | None,
                  baseline_points: float | dict[str, float] | None = None,
                  device: torch.device | str | None = None) -> AnyContext:
    """The study's evaluation context: an :class:`EvalContext`, or for a multi-task study a
    :class:`MultiTaskContext` holding one per task.

    ``baseline_points``: the uncompressed model's dev metric when already known (a study
    records it; per task for a multi-task study), which saves the baseline dev pass.
    ``device``: where its models run (None: the study's ``device`` setting).
    """
    if config.is_multitask:
        by_task = baseline_points if isinstance(baseline_points, dict) else None
        return build_multitask_context(config, cache_dir=cache_dir, baseline_points=by_task, device=device)
    return build_task_context(config, config.task_settings()[0], cache_dir=cache_dir,
                              baseline_points=None if isinstance(baseline_points, dict) else baseline_points,
                              device=device)


def _task_contexts(ctx: AnyContext) -> list[EvalContext]:
    return list(ctx.tasks.values()) if isinstance(ctx, MultiTaskContext) else [ctx]


def place_context(ctx: AnyContext, device: torch.device | str) -> None:
    """Move every model ``ctx`` holds to ``device``, in place (a Ray worker puts the study's
    context on the GPU it was assigned; the coordinator ships it from the CPU)."""
    for task_ctx in _task_contexts(ctx):
        place_task_context(task_ctx, torch.device(device))


def context_device(ctx: AnyContext) -> torch.device:
    """Where ``ctx``'s models are (the first task's, for a multi-task context)."""
    from dse.modeling.device import model_device

    return model_device(_task_contexts(ctx)[0].model)


def evaluate_trial(ctx: AnyContext, knobs: dict[str, Any]) -> TrialOutcome:
    """Metrics of one design point given every knob's value (see ``StudyConfig.knob_values``);
    ``ctx`` is an :class:`EvalContext` or a multi-task study's :class:`MultiTaskContext`."""
    if isinstance(ctx, MultiTaskContext):
        return evaluate_multitask(ctx, knobs)
    return evaluate_design(ctx, knobs)


def sentence_results(ctx: AnyContext, knobs: dict[str, Any]) -> SentenceResults:
    """Every dev sentence's exit layer, latency and energy for one design.

    Uses the per-layer logits cache, so a design a study already scored needs no model run.
    """
    outcome = evaluate_trial(ctx, knobs)
    assert outcome.sentences is not None  # evaluate_trial always fills it
    return outcome.sentences
