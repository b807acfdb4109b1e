"""Trial evaluation: score one design (accuracy under early exit, hardware, faults) on a study's tasks.

Owns building the evaluation context (:mod:`~dse.evaluation.context`), the per-layer logits
cache (:mod:`~dse.evaluation.cache`), the exit rule (:mod:`~dse.evaluation.exits`), eNVM fault
scoring (:mod:`~dse.evaluation.faults`), scoring one design on one task
(:mod:`~dse.evaluation.score`), dominance-aware early stopping of a staged dev pass
(:mod:`~dse.evaluation.staged`), the multi-task combination (:mod:`~dse.evaluation.multitask`),
the inactive-knob guards (:mod:`~dse.evaluation.guards`), a design's hardware-only bounds before
any model run (:mod:`~dse.evaluation.bounds`) and the study's entry points that accept either
kind of context (:mod:`~dse.evaluation.trial`), and costing a bring-your-own entropy trace
without a model run (:mod:`~dse.evaluation.trace`, ``dse trace``). Within the package the arrows run
context < cache < exits < faults < score < staged, multitask < bounds, trial (no cycle). May import
:mod:`dse.training`, :mod:`dse.compression`, :mod:`dse.modeling`, :mod:`dse.data`,
:mod:`dse.config`, the bottom modules and ``hwmodels``; nothing of Optuna or a study.
"""

from dse.evaluation.bounds import HardwareBounds, hardware_bounds
from dse.evaluation.cache import EVAL_VERSION, layer_logits
from dse.evaluation.context import (
    EvalContext,
    TrainingSource,
    build_task_context,
    check_task_data,
    load_dev_set,
    prepare_for_study,
    study_trial_model,
    trial_model,
)
from dse.evaluation.exits import InvalidDesign, early_exit_points
from dse.evaluation.faults import FAULTS_VERSION, FaultOutcome
from dse.evaluation.multitask import MultiTaskContext
from dse.evaluation.score import DesignScore, SentenceResults, TrialOutcome, score_design
from dse.evaluation.staged import EarlyStopRule, StagedEvaluation
from dse.evaluation.trial import AnyContext, build_context, context_device, evaluate_trial, place_context, sentence_results

__all__ = [
    "EVAL_VERSION",
    "FAULTS_VERSION",
    "AnyContext",
    "DesignScore",
    "EarlyStopRule",
    "EvalContext",
    "FaultOutcome",
    "HardwareBounds",
    "InvalidDesign",
    "MultiTaskContext",
    "SentenceResults",
    "StagedEvaluation",
    "TrainingSource",
    "TrialOutcome",
    "build_context",
    "build_task_context",
    "check_task_data",
    "context_device",
    "early_exit_points",
    "evaluate_trial",
    "hardware_bounds",
    "layer_logits",
    "load_dev_set",
    "place_context",
    "prepare_for_study",
    "score_design",
    "sentence_results",
    "study_trial_model",
    "trial_model",
]
