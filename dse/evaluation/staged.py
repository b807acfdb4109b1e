"""Dominance-aware early stopping: score a design's dev rows in stages, stop when it cannot matter.

After each stage (a seeded random fraction of the dev rows) the design's most optimistic metrics
are bounded (:func:`optimistic_metrics`):

* accuracy: the one-sided Clopper-Pearson upper bound on the stage's exit accuracy. Clopper-Pearson
  (scipy's ``binomtest(...).proportion_ci(method="exact")``) rather than Wilson because its
  coverage is never below the nominal level, whatever the accuracy and the stage size (Wilson's
  dips below it near 0 and 1, where a good classifier sits): a wrongly stopped trial is a design
  lost, a late stop only costs a little model time. The bound is for the rows' accuracy rate and
  is used as is for the full dev set's accuracy, which it over-states (the seen rows count in it
  exactly): conservative again;
* latency, energy and the mean exit layer: the seen sentences exactly (their exit layers are
  known), every unseen sentence exiting after layer 1 (its least, as ``dse.evaluation.bounds``);
* area and memory: exact.

Metrics with no bound here (p95 latency, target-met fraction) count as their best possible value.
The stage stops the trial (:meth:`EarlyStopRule.stop_reason`) when these bounds break the
accuracy-drop or latency constraint, or are dominated by the feasible front the study has found
so far; the study records it as PRUNED, never as a finished design. Otherwise the full pass runs,
and it reuses the rows the stages scored (``dse.evaluation.cache``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dse.compression.spec import CompressionSpec
from dse.config import StudyConfig, task_spec
from dse.evaluation.cache import dvfs_train_entropy, has_layer_logits, partial_layer_logits
from dse.evaluation.context import EvalContext
from dse.evaluation.exits import InvalidDesign, exit_predictor
from dse.evaluation.score import TrialOutcome, compression_profile, hardware_config
from dse.modeling.early_exit import entropy, simulate_early_exit
from dse.modeling.inference import predictions
from hwmodels import evaluate_hardware

__all__ = ["STAGE_ORDER_SEED", "EarlyStopRule", "StagedEvaluation", "accuracy_upper_bound",
           "optimistic_metrics", "stage_rows"]

STAGE_ORDER_SEED = 0  # the dev rows' order for stages: fixed, so stages of any trial share rows


def accuracy_upper_bound(correct: int, rows: int, confidence: float) -> float:
    """One-sided Clopper-Pearson upper bound (a fraction) on an accuracy with ``correct`` of ``rows``."""
    from scipy.stats import binomtest

    return float(binomtest(correct, rows, alternative="less").proportion_ci(confidence, method="exact").high)


def stage_rows(n_rows: int, fraction: float) -> np.ndarray:
    """The dev rows (indices) a stage scores: a seeded random prefix of ``ceil(fraction * n_rows)``."""
    order = np.random.default_rng(STAGE_ORDER_SEED).permutation(n_rows)
    return order[:max(1, math.ceil(fraction * n_rows))]


def optimistic_metrics(ctx: EvalContext, knobs: dict[str, Any], rows: np.ndarray, confidence: float
                       ) -> tuple[dict[str, float], dict[str, Any]]:
    """A design's most optimistic metrics after scoring dev ``rows`` (see the module), and the
    partial figures a stopped trial records."""
    spec = CompressionSpec.from_knobs(knobs)
    threshold = float(knobs["exit_threshold"])
    logits = partial_layer_logits(ctx, spec, rows)
    exit_logits, exits = simulate_early_exit(logits, threshold)
    correct = int((predictions(exit_logits) == np.asarray(ctx.dev.labels)[rows]).sum())
    upper = 100 * accuracy_upper_bound(correct, len(rows), confidence)

    profile, hardware = compression_profile(spec, ctx), hardware_config(knobs)
    lengths = np.asarray(ctx.dev.lengths)
    predicted = (exit_predictor(dvfs_train_entropy(ctx, spec), threshold).predict(entropy(logits[0]).numpy())
                 if hardware.dvfs else None)  # the design's own table, as the full evaluation fits it
    seen = evaluate_hardware(ctx.shape, tokens=lengths[rows], exit_layers=exits.numpy(), compression=profile,
                             hardware=hardware, predicted_exit_layers=predicted)
    if not seen.valid:
        raise InvalidDesign(seen.invalid_reason or "invalid hardware design")
    unseen_rows = np.setdiff1d(np.arange(len(lengths)), rows)
    latency_ns, energy_pj = float(np.sum(seen.latency_ns)), float(np.sum(seen.energy_pj))
    if len(unseen_rows):
        tokens = lengths[unseen_rows]
        least = evaluate_hardware(ctx.shape, tokens=tokens, exit_layers=np.ones_like(tokens),
                                  compression=profile, hardware=hardware)
        latency_ns += float(np.sum(least.latency_ns))
        energy_pj += float(np.sum(least.energy_pj))
    n = len(lengths)
    metrics = {
        "accuracy": upper, "accuracy_drop": ctx.baseline_points - upper,
        "worst_accuracy_drop": ctx.baseline_points - upper, "accuracy_under_faults": upper,
        "latency_ms": latency_ns / n * 1e-6, "energy_uj": energy_pj / n * 1e-6,
        "area_mm2": float(seen.area_mm2), "memory_mb": float(seen.memory_bytes) / 1e6,
        "avg_exit_layer": (float(exits.sum()) + len(unseen_rows)) / n,
        "p95_latency_ms": -math.inf, "target_met_fraction": math.inf,  # unbounded here: their best
    }
    figures = {"rows": len(rows), "dev_rows": n, "correct": correct,
               "accuracy_observed": 100 * correct / len(rows), "accuracy_upper": upper, "confidence": confidence,
               "optimistic": {k: v for k, v in metrics.items() if math.isfinite(v)}}
    return metrics, figures


@dataclass
class EarlyStopRule:
    """When a partly scored design stops: its optimistic metrics are infeasible or dominated.

    ``front`` holds the study's feasible non-dominated objective values so far (``front_trials``
    their trial numbers); the coordinator updates it as trials finish, and a Ray task takes a
    copy of it when submitted.
    """

    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    max_accuracy_drop_points: float | None = None
    latency_target_ms: float | None = None
    front: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    front_trials: list[int] = field(default_factory=list)

    @classmethod
    def for_study(cls, config: StudyConfig) -> "EarlyStopRule":
        c = config.constraints
        return cls(tuple(config.objective_names()), tuple(config.directions()), c.max_accuracy_drop_points,
                   c.latency_target_ms, np.zeros((0, len(config.objectives))))

    def stop_reason(self, optimistic: dict[str, float]) -> str | None:
        """Why a design with these most optimistic metrics cannot matter; None if it may."""
        if self.max_accuracy_drop_points is not None \
                and optimistic["worst_accuracy_drop"] > self.max_accuracy_drop_points:
            return (f"infeasible: accuracy drop >= {optimistic['worst_accuracy_drop']:.2f} points "
                    f"> max_accuracy_drop_points {self.max_accuracy_drop_points:g}")
        if self.latency_target_ms is not None and optimistic["latency_ms"] > self.latency_target_ms:
            return f"infeasible: latency_ms >= {optimistic['latency_ms']:.4g} > latency_target_ms {self.latency_target_ms:g}"
        if not len(self.front):
            return None
        signs = np.array([-1.0 if d == "maximize" else 1.0 for d in self.directions])
        mine = np.array([optimistic[n] for n in self.objectives]) * signs
        loss = self.front * signs
        dominated = np.all(loss <= mine, axis=1) & np.any(loss < mine, axis=1)
        if dominated.any():
            return f"dominated by the feasible front (trial {self.front_trials[int(np.flatnonzero(dominated)[0])]})"
        return None


@dataclass
class StagedEvaluation:
    """An evaluation function (``(ctx, knobs) -> TrialOutcome``) that scores in stages and stops
    early by ``rule``; designs it does not apply to (multi-task, faults on, a main metric other
    than accuracy, logits already cached) go straight to ``full``."""

    full: Callable[[Any, dict[str, Any]], TrialOutcome]
    rule: EarlyStopRule
    stages: tuple[float, ...] = (0.25, 0.5)
    confidence: float = 0.95
    # whether a setting's full logits are at hand (then no stage saves anything); benchmarks that
    # keep every logits in memory but count dev passes per run give their own
    is_cached: Callable[[Any, CompressionSpec], bool] = has_layer_logits

    def applies(self, ctx: Any) -> bool:
        return (isinstance(ctx, EvalContext) and not ctx.faults.enabled
                and task_spec(ctx.task).main_metric == "accuracy")

    def __call__(self, ctx: Any, knobs: dict[str, Any]) -> TrialOutcome:
        if not self.applies(ctx) or self.is_cached(ctx, CompressionSpec.from_knobs(knobs)):
            return self.full(ctx, knobs)  # a cached setting costs no model run: nothing to save
        start = time.perf_counter()
        for fraction in self.stages:
            rows = stage_rows(len(ctx.dev), fraction)
            if len(rows) >= len(ctx.dev):
                break
            optimistic, figures = optimistic_metrics(ctx, knobs, rows, self.confidence)
            reason = self.rule.stop_reason(optimistic)
            if reason is not None:
                figures["stage"] = fraction
                return TrialOutcome({k: v for k, v in optimistic.items() if math.isfinite(v)},
                                    {"early_stop": figures}, cache_hit=False,
                                    seconds=time.perf_counter() - start, pruned=f"stage {fraction:g}: {reason}")
        outcome = self.full(ctx, knobs)
        return TrialOutcome(outcome.metrics, {**outcome.attrs, "stages_passed": list(self.stages)}, outcome.cache_hit,
                            time.perf_counter() - start, outcome.sentences)
