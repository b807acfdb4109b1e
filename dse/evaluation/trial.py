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
from dse.evaluation.context import EvalContext, build_task_context
from dse.evaluation.multitask import MultiTaskContext, build_multitask_context, evaluate_multitask
from dse.evaluation.score import SentenceResults, TrialOutcome, evaluate_design

__all__ = ["AnyContext", "build_context", "evaluate_trial", "sentence_results"]

AnyContext = EvalContext | MultiTaskContext


def build_context(config: StudyConfig, *, cache_dir: Path | None,
                  baseline_points: float | dict[str, float] | None = None) -> AnyContext:
    """The study's evaluation context: an :class:`EvalContext`, or for a multi-task study a
    :class:`MultiTaskContext` holding one per task.

    ``baseline_points``: the uncompressed model's dev metric when already known (a study
    records it; per task for a multi-task study), which saves the baseline dev pass.
    """
    if config.is_multitask:
        by_task = baseline_points if isinstance(baseline_points, dict) else None
        return build_multitask_context(config, cache_dir=cache_dir, baseline_points=by_task)
    return build_task_context(config, config.task_settings()[0], cache_dir=cache_dir,
                              baseline_points=None if isinstance(baseline_points, dict) else baseline_points)


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
