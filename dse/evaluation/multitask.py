"""Multi-task co-design: one accelerator serving several GLUE tasks.

Each task has its own prepared model, fine-tuned with the embedding module frozen, so every task
holds the same embedding tables byte for byte: EdgeBERT stores them once in eNVM. Each task also
has its own encoder compression, spans and exit thresholds (``<task>.<knob>`` knobs); the
hardware, the embedding compression and the weight format are one design. A trial scores every
task on its own dev rows and combines them under the study's task mix (each task's share of the
sentences the chip serves):

* ``accuracy``, ``accuracy_drop``, ``energy_uj``, ``latency_ms``, ``avg_exit_layer``,
  ``target_met_fraction``, ``accuracy_under_faults``: mix-weighted means;
* ``worst_accuracy_drop``: the largest drop of any task (what ``max_accuracy_drop_points`` bounds);
* ``p95_latency_ms``: the 95th percentile of the mix of sentences;
* ``memory_mb``: the shared embedding tables once, plus every task's encoder weights;
* ``area_mm2``: the chip's (the largest any task needs);
* ``<task>.<metric>`` for every metric in ``dse.config.TASK_METRICS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dse.compression.apply import embedding_tables
from dse.config import TASK_METRICS, StudyConfig, knobs_for_task
from dse.errors import DSEError
from dse.evaluation.context import EvalContext, build_task_context, check_task_data
from dse.evaluation.score import DesignScore, SentenceResults, TrialOutcome, design_metrics, score_design
from hwmodels import ModelShape

__all__ = ["MEAN_METRICS", "MultiTaskContext", "build_multitask_context", "check_shared_embeddings",
           "combine_scores", "evaluate_multitask", "weighted_percentile"]

# Metrics of a multi-task design that are the mix-weighted mean of the tasks' own.
MEAN_METRICS = ("accuracy", "accuracy_drop", "energy_uj", "latency_ms", "avg_exit_layer", "target_met_fraction",
                "accuracy_under_faults")


@dataclass
class MultiTaskContext:
    """One :class:`EvalContext` per task, and the task mix (shares summing to 1)."""

    tasks: dict[str, EvalContext]
    mix: dict[str, float]
    approximations: dict[str, str]  # task -> what its approximated scores mean (train_from_dev)

    @property
    def baseline_points(self) -> float:
        """Mix-weighted baseline (points): ``accuracy_drop`` = this minus ``accuracy``."""
        return sum(self.mix[t] * c.baseline_points for t, c in self.tasks.items())

    @property
    def baseline_points_by_task(self) -> dict[str, float]:
        return {t: c.baseline_points for t, c in self.tasks.items()}

    @property
    def shape(self) -> ModelShape:
        """The encoder's shape (one backbone for every task; the first task's label count)."""
        return next(iter(self.tasks.values())).shape

    @property
    def prepared_key(self) -> str:
        return ",".join(f"{t}:{c.prepared_key}" for t, c in self.tasks.items())


def check_shared_embeddings(tasks: dict[str, EvalContext]) -> None:
    """Refuse task models whose embedding tables differ: the chip stores one copy."""
    names = list(tasks)
    first = embedding_tables(tasks[names[0]].model)
    for name in names[1:]:
        other = embedding_tables(tasks[name].model)
        for table, module in first.items():
            if table not in other or not torch.equal(module.weight, other[table].weight):
                raise DSEError(f"the fine-tuned models of {names[0]} and {name} differ in {table}: a multi-task "
                               "study needs them fine-tuned from one backbone with frozen embeddings")


def build_multitask_context(config: StudyConfig, *, cache_dir: Path | None,
                            baseline_points: dict[str, float] | None = None,
                            device: torch.device | str | None = None) -> MultiTaskContext:
    """Prepare (or load) every task's model (embeddings frozen) and tokenize its dev rows."""
    settings = config.task_settings()
    check_task_data(config)  # a task without data fails before any other is fine-tuned
    tasks = {t.name: build_task_context(config, t, cache_dir=cache_dir,
                                        baseline_points=(baseline_points or {}).get(t.name), device=device)
             for t in settings}
    check_shared_embeddings(tasks)
    return MultiTaskContext(tasks, {t.name: t.mix for t in settings},
                            {t.name: t.approximation for t in settings if t.approximation})


def weighted_percentile(values: list[np.ndarray], weights: list[float], q: float) -> float:
    """The ``q``-th percentile of a mixture: sample ``i`` of group ``g`` has weight
    ``weights[g] / len(values[g])`` (inverted CDF: the smallest value whose cumulative weight
    reaches ``q`` percent)."""
    x = np.concatenate([np.asarray(v, dtype=float) for v in values])
    w = np.concatenate([np.full(len(v), wg / len(v)) for v, wg in zip(values, weights)])
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(w[order])
    return float(x[order][min(np.searchsorted(cum, q / 100 * cum[-1] - 1e-12), len(x) - 1)])


def combine_scores(ctx: MultiTaskContext, scores: dict[str, DesignScore]) -> tuple[dict[str, float], dict[str, Any]]:
    """One chip's metrics and recorded details from every task's score of the same design."""
    per = {t: design_metrics(ctx.tasks[t], s.points, s.exit_layers, s.hw, s.faults) for t, s in scores.items()}
    w = ctx.mix
    metrics = {name: sum(w[t] * per[t][0][name] for t in per) for name in MEAN_METRICS}
    metrics["worst_accuracy_drop"] = max(m["accuracy_drop"] for m, _ in per.values())
    metrics["p95_latency_ms"] = weighted_percentile([s.hw.latency_ns * 1e-6 for s in scores.values()],
                                                    [w[t] for t in scores], 95)
    metrics["area_mm2"] = max(s.hw.area_mm2 for s in scores.values())
    embeddings_b = max(s.hw.embedding_storage_bytes for s in scores.values())  # one table, equal for all
    metrics["memory_mb"] = (embeddings_b + sum(s.hw.weight_storage_bytes for s in scores.values())) / 1e6
    for t, (m, _) in per.items():
        metrics.update({f"{t}.{name}": m[name] for name in TASK_METRICS})
    breakdown_keys = next(iter(per.values()))[1]["energy_breakdown_uj"]
    attrs: dict[str, Any] = {
        "energy_breakdown_uj": {k: sum(w[t] * a["energy_breakdown_uj"][k] for t, (_, a) in per.items())
                                for k in breakdown_keys},
        "weights_fit_in_sram": all(a["weights_fit_in_sram"] for _, a in per.values()),
        "exit_layer_histogram": np.sum([a["exit_layer_histogram"] for _, a in per.values()], axis=0).tolist(),
        "memory_breakdown_mb": {"shared_embeddings": embeddings_b / 1e6,
                                **{f"{t}.encoder": s.hw.weight_storage_bytes / 1e6 for t, s in scores.items()}},
        "tasks": {t: {"mix": w[t], **a} for t, (_, a) in per.items()},
    }
    if ctx.approximations:
        attrs["approximations"] = ctx.approximations
    return metrics, attrs


def evaluate_multitask(ctx: MultiTaskContext, knobs: dict[str, Any]) -> TrialOutcome:
    """Metrics of one multi-task design (``knobs``: shared and ``<task>.<knob>`` values)."""
    start = time.perf_counter()
    scores = {t: score_design(c, knobs_for_task(knobs, t)) for t, c in ctx.tasks.items()}
    metrics, attrs = combine_scores(ctx, scores)
    for t, s in scores.items():
        attrs["tasks"][t].update(s.attrs(ctx.tasks[t]))
    parts = [s.sentences(ctx.tasks[t]) for t, s in scores.items()]
    sentences = SentenceResults(*(np.concatenate([getattr(p, f) for p in parts])
                                  for f in ("exit_layers", "latency_ms", "energy_uj", "tokens")))
    return TrialOutcome(metrics, attrs, all(s.cache_hit for s in scores.values()), time.perf_counter() - start,
                        sentences)
