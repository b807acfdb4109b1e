"""Cheap-knob sweep: fill the front around a newly evaluated compression sub-configuration.

Exit thresholds and hardware knobs never need the model again: given the cached per-layer dev
logits of one compression setting, every (threshold, hardware) combination of the search space
is scored at once, the thresholds on the logits and the hardware in one vectorised call of the
hardware model per threshold. The feasible non-dominated results become *derived* trials.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from dse.compression.spec import CompressionSpec
from dse.config import StudyConfig, knobs_for_task
from dse.evaluation.cache import design_arrays
from dse.evaluation.context import EvalContext
from dse.evaluation.exits import early_exit_points, predicted_exit_layers
from dse.evaluation.faults import WeightStorage, fault_outcome
from dse.evaluation.guards import check_activation_width, inert_hardware_knobs
from dse.evaluation.multitask import MultiTaskContext, combine_scores
from dse.evaluation.score import DesignScore, compression_profile, design_metrics, hardware_config
from dse.study.pareto import pareto_mask
from hwmodels import evaluate_configs

__all__ = ["DerivedDesign", "cheap_knob_grid", "sweep_cheap_knobs"]

# Knobs a sweep may vary: everything that is applied to cached logits or to the hardware model.
CHEAP_KNOBS = ("exit_threshold", "vmac_lanes", "vector_size", "sram_kb", "envm_cell", "voltage_v",
               "dvfs", "latency_target_ms", "dvfs_layer1", "sparse_format", "weight_store")


@dataclass(frozen=True)
class DerivedDesign:
    params: dict[str, Any]  # the searched knobs, as the study's distributions hold them
    metrics: dict[str, float]
    attrs: dict[str, Any]


def _values(dist: BaseDistribution, per_knob: int) -> list[Any]:
    """Up to ``per_knob`` values of one distribution, spread over its range, ends included."""
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    assert isinstance(dist, (IntDistribution, FloatDistribution))
    if dist.step is not None:
        count = int(round((dist.high - dist.low) / dist.step)) + 1
        picks = np.unique(np.linspace(0, count - 1, min(count, per_knob)).round().astype(int))
        values = [dist.low + i * dist.step for i in picks]
    elif dist.log:
        values = list(np.geomspace(dist.low, dist.high, per_knob))
    else:
        values = list(np.linspace(dist.low, dist.high, per_knob))
    if isinstance(dist, IntDistribution):
        return sorted({int(round(v)) for v in values})
    return [round(float(v), 12) for v in values]


def cheap_knob_grid(dists: dict[str, BaseDistribution], *, per_knob: int) -> dict[str, list[Any]]:
    """The grid of every searched cheap knob (the study's compression knobs are not swept)."""
    return {name: _values(d, per_knob) for name, d in dists.items() if name in CHEAP_KNOBS}


def sweep_cheap_knobs(ctx: EvalContext | MultiTaskContext, config: StudyConfig, knobs: dict[str, Any],
                      dists: dict[str, BaseDistribution], *, constraints) -> list[DerivedDesign]:  # noqa: ANN001
    """Feasible non-dominated designs sharing ``knobs``' compression, over the cheap-knob grid.

    ``ctx`` is an ``EvalContext``, or a multi-task study's context (then the grid holds the shared
    cheap knobs; per-task thresholds keep the trial's values). ``constraints(metrics) ->
    dict[str, float]`` gives Optuna-style constraint values (<= 0 is feasible). At most
    ``config.sweep.max_designs`` combinations are scored (a seeded sample of the grid when it is
    larger) and at most ``config.sweep.max_derived_trials`` are returned.
    """
    opts = config.sweep
    grid = cheap_knob_grid(dists, per_knob=opts.values_per_knob)
    if not grid:
        return []
    names = list(grid)
    combos = list(itertools.product(*grid.values()))
    if len(combos) > opts.max_designs:
        rng = np.random.default_rng(config.sampler.seed)
        combos = [combos[i] for i in np.sort(rng.choice(len(combos), opts.max_designs, replace=False))]
    points = [{**knobs, **dict(zip(names, combo))} for combo in combos]
    if isinstance(ctx, EvalContext):
        designs = [DerivedDesign({n: p[n] for n in dists}, *design_metrics(ctx, s.points, s.exit_layers, s.hw, s.faults))
                   for p, s in zip(points, _task_scores(ctx, points)) if s is not None]
    else:
        per_task = {t: _task_scores(c, [knobs_for_task(p, t) for p in points]) for t, c in ctx.tasks.items()}
        designs = []
        for i, p in enumerate(points):
            scores = {t: s[i] for t, s in per_task.items()}
            if all(s is not None for s in scores.values()):
                designs.append(DerivedDesign({n: p[n] for n in dists}, *combine_scores(ctx, scores)))
    designs = [d for d in designs if all(v <= 0 for v in constraints(d.metrics).values())]
    if not designs:
        return []
    objectives = np.array([[d.metrics[n] for n in config.objective_names()] for d in designs])
    front = [designs[i] for i in np.flatnonzero(pareto_mask(objectives, config.directions()))]
    if len(front) > opts.max_derived_trials:  # keep an even spread along the first objective
        front.sort(key=lambda d: d.metrics[config.objective_names()[0]])
        keep = np.unique(np.linspace(0, len(front) - 1, opts.max_derived_trials).round().astype(int))
        front = [front[i] for i in keep]
    return front


def _task_scores(ctx: EvalContext, points: list[dict[str, Any]]) -> list[DesignScore | None]:
    """Every design of ``points`` (one compression setting) scored on ``ctx``'s task from its
    cached logits: the thresholds on the logits, the hardware in one vectorised call per
    threshold; None for a design the hardware model rejects."""
    spec = CompressionSpec.from_knobs(points[0])
    arrays, _ = design_arrays(ctx, spec)
    logits = torch.from_numpy(arrays["logits"])
    profile = compression_profile(spec, ctx)
    check_activation_width(int(arrays["activation_bits"]), profile.activation_bits)
    by_threshold: dict[float, list[int]] = {}
    for i, point in enumerate(points):
        by_threshold.setdefault(float(point["exit_threshold"]), []).append(i)

    out: list[DesignScore | None] = [None] * len(points)
    for threshold, rows in by_threshold.items():
        accuracy, exits = early_exit_points(ctx.task, logits, ctx.dev.labels, threshold)
        hardware = [hardware_config(points[i]) for i in rows]
        predicted = predicted_exit_layers(ctx, spec, logits, threshold) if any(h.dvfs for h in hardware) else None
        batch = evaluate_configs(ctx.shape, tokens=ctx.dev.lengths, exit_layers=exits.numpy(),
                                 compressions=[profile] * len(rows), hardwares=hardware,
                                 predicted_exit_layers=predicted)
        inert = inert_hardware_knobs(ctx.shape, ctx.dev.lengths, exits.numpy(), predicted,
                                     [profile] * len(rows), hardware, batch)
        faults: dict[Any, Any] = {}  # per cell and weight storage: faulty logits are cached, exits per threshold
        for k, i in enumerate(rows):
            if not batch.valid[k]:
                continue
            if inert[k]:  # a sampled hardware knob that does nothing here: not a distinct design
                continue
            cell = str(points[i]["envm_cell"])
            storage = WeightStorage.from_knobs(points[i])
            if (cell, storage) not in faults:
                faults[cell, storage] = fault_outcome(ctx, spec, cell, threshold, accuracy, storage)
            out[i] = DesignScore(spec, accuracy, exits, batch.design(k), faults[cell, storage], cache_hit=True)
    return out
