"""A design's accuracy with eNVM faults in its stored embedding tables (faults on in the study),
and in its weight matrices when they live in the eNVM array too (``weight_store: envm``).

Owns :class:`FaultOutcome`, the faulty per-layer dev logits of each repeat (cached beside the
clean ones, keyed by :func:`fault_cache_key`) and :func:`fault_outcome`; the fault model itself
is :mod:`dse.compression.envm_faults`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torch import nn

from dse.compression.apply import compress, embedding_tables, encoder_linears, weight_format
from dse.compression.envm_faults import bits_per_cell, cell_error_prob, inject_table_faults, inject_weight_faults
from dse.compression.spec import CompressionSpec
from dse.evaluation.cache import cached_arrays, eval_key
from dse.evaluation.context import EvalContext, trial_model
from dse.evaluation.exits import early_exit_points
from dse.modeling.inference import dev_layer_logits

__all__ = ["FAULTS_VERSION", "FaultOutcome", "WeightStorage", "envm_weights", "fault_cache_key", "fault_outcome",
           "faulty_layer_logits"]

FAULTS_VERSION = 1  # bump when the fault model (dse.compression.envm_faults) changes


@dataclass(frozen=True)
class WeightStorage:
    """Where a design keeps its weight matrices, as far as faults go: in the eNVM array (then they
    take faults too) and whether sparse (only non-zero values stored)."""

    in_envm: bool = False
    sparse: bool = True

    @classmethod
    def from_knobs(cls, knobs: dict[str, Any]) -> "WeightStorage":
        return cls(in_envm=knobs.get("weight_store", "sram") == "envm",
                   sparse=knobs.get("sparse_format", "bitmask") != "dense")


def envm_weights(model: nn.Module) -> dict[str, nn.Module]:
    """The weight matrices the hardware model places in the eNVM array with the embeddings under
    ``weight_store: envm``: every encoder matmul and every off-ramp linear."""
    out: dict[str, nn.Module] = dict(encoder_linears(model))
    for name, module in model.off_ramps.named_modules(prefix="off_ramps"):
        if isinstance(module, nn.Linear):
            out[name] = module
    return out


@dataclass(frozen=True)
class FaultOutcome:
    """Accuracy of one design with eNVM faults in its stored embedding tables, per repeat."""

    cell: str  # the eNVM cell type the embedding tables are stored in
    points: np.ndarray  # the task's main metric (points) of each faulty dev pass
    faulty_cells: np.ndarray  # cells that took an adjacent-level error, per pass
    error_prob: float  # per cell, after error_rate_scale
    cache_hit: bool

    @property
    def mean_points(self) -> float:
        # equal repeats (an error-free cell) give exactly the clean accuracy, not a rounded mean
        return float(self.points[0]) if np.all(self.points == self.points[0]) else float(self.points.mean())

    def details(self) -> dict[str, Any]:
        return {"cell": self.cell, "error_prob": self.error_prob, "repeats": len(self.points),
                "accuracy_mean": self.mean_points, "accuracy_std": float(self.points.std()),
                "accuracy_per_repeat": [float(p) for p in self.points],
                "faulty_cells_mean": float(self.faulty_cells.mean()),
                "faulty_cells": [int(n) for n in self.faulty_cells], "cache_hit": self.cache_hit}


def fault_cache_key(ctx: EvalContext, spec: CompressionSpec, cell: str, error_prob: float,
                    weights: WeightStorage = WeightStorage()) -> str:
    f = ctx.faults
    record: dict[str, Any] = {"v": FAULTS_VERSION, "eval": eval_key(ctx, spec), "cell": cell,
                              "bits_per_cell": bits_per_cell(cell), "error_prob": error_prob, "repeats": f.repeats,
                              "seed": f.seed, "scale": f.error_rate_scale}
    if weights.in_envm:  # only then: keys of embedding-only faults stay what they were
        record["weights"] = {"sparse": weights.sparse}
    blob = json.dumps(record, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def faulty_layer_logits(ctx: EvalContext, spec: CompressionSpec, cell: str, error_prob: float,
                        weights: WeightStorage = WeightStorage()) -> tuple[torch.Tensor, np.ndarray, bool]:
    """Per-layer dev logits ``[repeats, layers, rows, labels]`` of the compressed model with its
    embedding tables (and, with ``weights.in_envm``, its weight matrices) stored in ``cell`` and
    corrupted (seeds ``[faults.seed, repeat]`` for the tables, ``[faults.seed, repeat, 1]`` for the
    weights, so the tables take the same faults either way), the faulty cells of each repeat, and
    whether they came from the cache (memory or disk)."""
    def compute() -> dict[str, np.ndarray]:
        compressed, _ = compress(trial_model(ctx, spec.training), spec, calibration=ctx.dvfs_rows, pad_id=ctx.pad_id)
        tables: dict[str, nn.Module] = dict(embedding_tables(compressed))
        matrices = envm_weights(compressed) if weights.in_envm else {}
        clean = {id(m): m.weight.detach().clone() for m in [*tables.values(), *matrices.values()]}
        fmt = weight_format(spec)
        runs, counts = [], []
        for r in range(ctx.faults.repeats):
            with torch.no_grad():
                for m in [*tables.values(), *matrices.values()]:
                    m.weight.copy_(clean[id(m)])
            count = inject_table_faults(tables, fmt, cell=cell, error_prob=error_prob, seed=[ctx.faults.seed, r])
            if matrices:
                count += inject_weight_faults(matrices, fmt, cell=cell, error_prob=error_prob,
                                              seed=[ctx.faults.seed, r, 1], nonzero_only=weights.sparse)
            counts.append(count)
            runs.append(dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id))
        return {"logits": torch.stack(runs).numpy(), "faulty_cells": np.asarray(counts, dtype=np.int64)}

    key = fault_cache_key(ctx, spec, cell, error_prob, weights)
    arrays, hit = cached_arrays(ctx, f"faults-{key}", compute)
    return torch.from_numpy(arrays["logits"]), arrays["faulty_cells"], hit


def fault_outcome(ctx: EvalContext, spec: CompressionSpec, cell: str, threshold: float,
                  clean_points: float, weights: WeightStorage = WeightStorage()) -> FaultOutcome | None:
    """Accuracy under eNVM faults of one design (None when the study has faults off).

    An error-free cell (probability 0 after scaling) needs no model run: every repeat scores
    ``clean_points``.
    """
    f = ctx.faults
    if not f.enabled:
        return None
    prob = cell_error_prob(cell, scale=f.error_rate_scale, overrides=f.cell_error_prob)
    if prob == 0.0:
        return FaultOutcome(cell, np.full(f.repeats, clean_points), np.zeros(f.repeats, dtype=np.int64), 0.0, True)
    logits, cells, hit = faulty_layer_logits(ctx, spec, cell, prob, weights)
    points = np.array([early_exit_points(ctx.task, run, ctx.dev.labels, threshold)[0] for run in logits])
    return FaultOutcome(cell, points, cells, prob, hit)
