"""Score one design on one task: GLUE dev accuracy under early exit plus the accelerator model.

Owns the outcome types (:class:`TrialOutcome`, :class:`DesignScore`, :class:`SentenceResults`),
what the hardware model is told of a design (:func:`compression_profile`, :func:`hardware_config`),
the metrics a design records (:func:`design_metrics`) and :func:`score_design` /
:func:`evaluate_design`: logits from the cache, the exit rule, the hardware model, faults.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dse.compression.spec import CompressionSpec
from dse.config import KNOBS
from dse.evaluation.cache import design_arrays, eval_key
from dse.evaluation.context import EvalContext, trained_model
from dse.evaluation.exits import InvalidDesign, early_exit_points, predicted_exit_layers
from dse.evaluation.faults import FaultOutcome, WeightStorage, fault_outcome
from dse.evaluation.guards import check_activation_width, check_hardware_knobs_active
from dse.modeling.span import span_for_hardware
from hwmodels import CompressionProfile, HardwareConfig, HardwareResult, evaluate_hardware

__all__ = ["DesignScore", "SentenceResults", "TrialOutcome", "compression_profile", "design_metrics",
           "evaluate_design", "hardware_config", "score_design"]


@dataclass(frozen=True)
class SentenceResults:
    """Per-dev-sentence figures of one design (not recorded on trials: re-derived on demand)."""

    exit_layers: np.ndarray  # encoder layers executed, 1..num_layers
    latency_ms: np.ndarray
    energy_uj: np.ndarray
    tokens: np.ndarray


@dataclass(frozen=True)
class TrialOutcome:
    metrics: dict[str, float]  # every name in dse.config.METRICS
    attrs: dict[str, Any]  # JSON-serialisable details recorded on the trial
    cache_hit: bool
    seconds: float
    sentences: SentenceResults | None = None
    # stopped early (dse.evaluation.staged): why; ``metrics`` then holds the optimistic bounds
    # and ``attrs["early_stop"]`` the partial figures: not a finished design
    pruned: str | None = None


def compression_profile(spec: CompressionSpec, ctx: EvalContext | None = None, *,
                        trained_info: Mapping[str, Any] | None = None) -> CompressionProfile:
    """What the hardware model needs to know of a trial's compression: the one profile a trial
    is costed with and its exported accelerator file describes.

    With training-time compression (``ctx``, or ``trained_info``: the info of the model
    fine-tuned under ``spec.training``): post-training magnitude pruning of an already sparse
    matrix keeps its zeros, so the sparsity is the larger of the two targets; learned spans
    enter as their mean over heads and layers, shortened by the span knob.
    """
    span = None if spec.attention_span >= 512 else spec.attention_span
    t = spec.training
    if not t.is_noop:
        if trained_info is None:
            if ctx is None:
                raise ValueError("a training-time compression profile needs the evaluation context "
                                 "or the trained model's info")
            trained_info = trained_model(ctx, t).info
        learned = trained_info.get("spans")
        if learned is not None:
            learned_span = span_for_hardware(torch.tensor(learned))
            if learned_span is not None:
                span = learned_span if span is None else min(span, learned_span)
    return CompressionProfile(
        encoder_density=1.0 - max(spec.encoder_pruning, t.train_pruning),
        embedding_density=1.0 - max(spec.embedding_pruning, t.train_embedding_pruning),
        weight_bits=spec.weight_bits,
        weight_exp_bits=spec.weight_exp_bits,
        activation_bits=spec.activation_bits,  # the width the accuracy side simulated (guards)
        attention_span=span,
    )


def hardware_config(knobs: dict[str, Any]) -> HardwareConfig:
    """The accelerator a design's knobs describe (knobs added later default when absent, so that
    knobs recorded before them keep their meaning)."""
    def later(name: str) -> Any:
        return knobs.get(name, KNOBS[name].default)

    return HardwareConfig(
        vmac_lanes=int(knobs["vmac_lanes"]), vector_size=int(knobs["vector_size"]),
        sram_kb=float(knobs["sram_kb"]), envm_cell=str(knobs["envm_cell"]),
        voltage_v=float(knobs["voltage_v"]), dvfs=bool(knobs["dvfs"]),
        latency_target_ms=float(knobs["latency_target_ms"]),
        sparse_format=str(later("sparse_format")), weight_store=str(later("weight_store")),
        dvfs_layer1=str(later("dvfs_layer1")),
    )


def design_metrics(ctx: EvalContext, points: float, exit_layers: torch.Tensor, hw: HardwareResult,
                   faults: FaultOutcome | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """A design's metrics (every name in dse.config.METRICS) and recorded details.

    ``accuracy_under_faults`` is the mean over ``faults``' repeats, else ``points`` (faults off:
    objectives and constraints on it stay defined).
    """
    metrics = {
        "accuracy": points,
        "accuracy_drop": ctx.baseline_points - points,
        "worst_accuracy_drop": ctx.baseline_points - points,
        "energy_uj": float(hw.mean_energy_uj),
        "latency_ms": float(hw.mean_latency_ms),
        "p95_latency_ms": float(hw.p95_latency_ms),
        "area_mm2": float(hw.area_mm2),
        "memory_mb": float(hw.memory_bytes) / 1e6,
        "avg_exit_layer": float(exit_layers.float().mean()),
        "target_met_fraction": float(hw.fraction_target_met),
        "accuracy_under_faults": faults.mean_points if faults is not None else points,
    }
    attrs = {
        "energy_breakdown_uj": {k: float(np.mean(v)) / 1e6 for k, v in hw.energy_breakdown_pj.items()},
        "weights_fit_in_sram": bool(hw.weights_fit_in_sram),
        "exit_layer_histogram": np.bincount(exit_layers.numpy(), minlength=ctx.shape.num_layers + 1)[1:].tolist(),
    }
    if faults is not None:
        attrs["faults"] = faults.details()
    return metrics, attrs


@dataclass(frozen=True)
class DesignScore:
    """One design scored on one task's dev rows: accuracy, exits, hardware, faults."""

    spec: CompressionSpec
    points: float  # the task's main metric (points) under early exit
    exit_layers: torch.Tensor
    hw: HardwareResult
    faults: FaultOutcome | None
    cache_hit: bool

    def sentences(self, ctx: EvalContext) -> SentenceResults:
        return SentenceResults(exit_layers=self.exit_layers.numpy(), latency_ms=np.asarray(self.hw.latency_ns) * 1e-6,
                               energy_uj=np.asarray(self.hw.energy_pj) * 1e-6, tokens=np.asarray(ctx.dev.lengths))

    def attrs(self, ctx: EvalContext) -> dict[str, Any]:
        """What identifies the design's model: its logits cache key and any trained checkpoint."""
        out: dict[str, Any] = {"eval_key": eval_key(ctx, self.spec)}
        if not self.spec.training.is_noop:
            trained = trained_model(ctx, self.spec.training)
            out["trained_key"] = trained.info["key"]
            out["trained_matrix_sparsity"] = trained.info["matrix_sparsity"]
        return out


def score_design(ctx: EvalContext, knobs: dict[str, Any]) -> DesignScore:
    """Score one design on ``ctx``'s task (``knobs``: every knob's value, as that task sees them)."""
    spec = CompressionSpec.from_knobs(knobs)
    arrays, hit = design_arrays(ctx, spec)
    logits = torch.from_numpy(arrays["logits"])
    points, exit_layers = early_exit_points(ctx.task, logits, ctx.dev.labels, float(knobs["exit_threshold"]))

    profile = compression_profile(spec, ctx)
    check_activation_width(int(arrays["activation_bits"]), profile.activation_bits)
    hardware = hardware_config(knobs)
    predicted = (predicted_exit_layers(ctx, spec, logits, float(knobs["exit_threshold"]))
                 if hardware.dvfs else None)
    hw = evaluate_hardware(
        ctx.shape, tokens=ctx.dev.lengths, exit_layers=exit_layers.numpy(),
        compression=profile, hardware=hardware, predicted_exit_layers=predicted,
    )
    if not hw.valid:
        raise InvalidDesign(hw.invalid_reason or "invalid hardware design")
    check_hardware_knobs_active(ctx.shape, ctx.dev.lengths, exit_layers.numpy(), predicted, profile, hardware, hw)
    faults = fault_outcome(ctx, spec, str(knobs["envm_cell"]), float(knobs["exit_threshold"]), points,
                           WeightStorage.from_knobs(knobs))
    return DesignScore(spec, points, exit_layers, hw, faults, hit)


def evaluate_design(ctx: EvalContext, knobs: dict[str, Any]) -> TrialOutcome:
    """Metrics of one design point on ``ctx``'s task given every knob's value (see
    ``StudyConfig.knob_values``); a multi-task study's trials go through
    :func:`dse.evaluation.multitask.evaluate_multitask` instead."""
    start = time.perf_counter()
    score = score_design(ctx, knobs)
    metrics, attrs = design_metrics(ctx, score.points, score.exit_layers, score.hw, score.faults)
    attrs.update(score.attrs(ctx))
    return TrialOutcome(metrics, attrs, score.cache_hit, time.perf_counter() - start, score.sentences(ctx))
