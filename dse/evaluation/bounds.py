"""Hardware-only bounds of a design: what the hardware model alone decides, before any model run.

Area and memory do not depend on what the model outputs, and a sentence takes least time when
it exits after layer 1 (layers 2.. only add time, whatever voltage DVFS picks for them), so the
mean latency with every dev sentence exiting there is a lower bound on the design's latency. A
design that breaks a hardware constraint of its study even at these bounds, or that has no valid
eNVM array, cannot become feasible: the study screens it out without running the model
(``dse.study.engine``). A guarded hardware knob that is inert whatever the model outputs
(``dvfs_layer1`` without DVFS; ``weight_store: dram`` where the weights do not fit in SRAM even at
their smallest) raises :class:`~dse.evaluation.guards.InactiveKnob` here, before the model runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dse.compression.spec import CompressionSpec, TrainingSpec
from dse.config import knobs_for_task
from dse.evaluation.context import EvalContext
from dse.evaluation.guards import InactiveKnob
from dse.evaluation.multitask import MultiTaskContext
from dse.evaluation.score import compression_profile, hardware_config
from hwmodels import CompressionProfile, HardwareConfig, HardwareResult, evaluate_hardware

__all__ = ["HardwareBounds", "hardware_bounds", "optimistic_profile"]


@dataclass(frozen=True)
class HardwareBounds:
    """What the hardware model decides of a design before its model runs."""

    area_mm2: float  # exact: as the full evaluation records it
    memory_mb: float  # exact
    min_latency_ms: float  # lower bound of latency_ms: every dev sentence exits after layer 1
    invalid_reason: str | None  # the hardware model rejects the design (no valid eNVM array)

    def as_dict(self) -> dict[str, Any]:
        return {"area_mm2": self.area_mm2, "memory_mb": self.memory_mb, "min_latency_ms": self.min_latency_ms}


def optimistic_profile(spec: CompressionSpec) -> CompressionProfile:
    """:func:`~dse.evaluation.score.compression_profile` without the trained model.

    Densities and bit widths follow from the knobs alone; a learned attention span is only known
    after the compression-aware fine-tune, so it is taken as short as it can be (0: the cheapest
    attention), which keeps the latency a lower bound.
    """
    t = spec.training
    profile = compression_profile(replace(spec, training=TrainingSpec()))  # the post-training knobs alone
    if t.is_noop:
        return profile
    return profile.model_copy(update={
        "encoder_density": min(profile.encoder_density, 1.0 - t.train_pruning),
        "embedding_density": min(profile.embedding_density, 1.0 - t.train_embedding_pruning),
        "attention_span": 0 if t.span_init > 0 else profile.attention_span,
    })


def _task_bounds(ctx: EvalContext, knobs: dict[str, Any]) -> HardwareResult:
    tokens = np.asarray(ctx.dev.lengths)
    profile = optimistic_profile(CompressionSpec.from_knobs(knobs))
    hardware = hardware_config(knobs)
    if hardware.dvfs_layer1 != "nominal" and not hardware.dvfs:
        raise InactiveKnob(f"dvfs_layer1={hardware.dvfs_layer1} changed no figure of this design against "
                           "dvfs_layer1=nominal (DVFS is off)")

    def bounds(hw: HardwareConfig) -> HardwareResult:
        return evaluate_hardware(ctx.shape, tokens=tokens, exit_layers=np.ones_like(tokens), compression=profile,
                                 hardware=hw)

    if hardware.weight_store == "dram" and not bounds(hardware.model_copy(update={"weight_store": "sram"})).weights_fit_in_sram:
        # the optimistic profile is the smallest the weights can be: they never fit, so SRAM streams them too
        raise InactiveKnob("weight_store=dram changed no figure of this design against weight_store=sram "
                           "(the weights do not fit in SRAM)")
    return bounds(hardware)


def hardware_bounds(ctx: EvalContext | MultiTaskContext, knobs: dict[str, Any]) -> HardwareBounds:
    """A design's hardware-only bounds on ``ctx``'s dev rows; never runs a model.

    A multi-task design combines its tasks as the full evaluation does
    (:func:`~dse.evaluation.multitask.combine_scores`): the largest area, the shared embedding
    tables once plus every task's encoder weights, the mix-weighted mean latency.
    """
    if isinstance(ctx, EvalContext):
        hw = _task_bounds(ctx, knobs)
        return HardwareBounds(float(hw.area_mm2), float(hw.memory_bytes) / 1e6, float(hw.mean_latency_ms),
                              None if hw.valid else hw.invalid_reason or "invalid hardware design")
    per = {t: _task_bounds(c, knobs_for_task(knobs, t)) for t, c in ctx.tasks.items()}
    memory_b = max(h.embedding_storage_bytes for h in per.values()) + sum(h.weight_storage_bytes for h in per.values())
    invalid = next((h.invalid_reason or "invalid hardware design" for h in per.values() if not h.valid), None)
    return HardwareBounds(max(float(h.area_mm2) for h in per.values()), float(memory_b) / 1e6,
                          float(sum(ctx.mix[t] * h.mean_latency_ms for t, h in per.items())), invalid)
