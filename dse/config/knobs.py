"""The knob and metric registries: every name a study definition may search, fix or optimise.

Owns: :data:`KNOBS` (each knob's legal range, default and whether it needs the model again),
:data:`METRICS` (what a trial produces, with the better direction), the multi-task scoping
(:data:`TASK_KNOBS`, :data:`TASK_METRICS`, ``<task>.<knob>`` names). Imports nothing from ``dse``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["KNOBS", "METRICS", "TASK_KNOBS", "TASK_METRICS", "Knob", "knob_of", "knobs_for_task"]


class Knob(BaseModel):
    """A searchable knob: its legal range, default and which part of a trial it affects."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["float", "int", "categorical"]
    default: bool | int | float | str | None  # bool first: pydantic would coerce False to 0.0
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    affects_accuracy: bool  # False: the knob never needs the model again (cheap knob)
    help: str


# The knobs a study may search. Legal ranges guard against meaningless studies (bounds that
# no hardware or algorithm supports); a search space may narrow them but never widen them.
KNOBS: dict[str, Knob] = {
    "encoder_pruning": Knob(kind="float", default=0.0, low=0.0, high=0.99, affects_accuracy=True,
                            help="fraction of encoder matmul weights pruned by magnitude"),
    "embedding_pruning": Knob(kind="float", default=0.0, low=0.0, high=0.99, affects_accuracy=True,
                              help="fraction of word/position/type embedding entries pruned"),
    "weight_bits": Knob(kind="int", default=8, low=4, high=16, affects_accuracy=True,
                        help="AdaptivFloat total bits of the weights"),
    "weight_exp_bits": Knob(kind="int", default=3, low=1, high=5, affects_accuracy=True,
                            help="AdaptivFloat exponent bits of the weights"),
    "weight_format": Knob(kind="categorical", default="paper2020", choices=("paper2020", "ref2022", "edgebert_hw"),
                          affects_accuracy=True,
                          help="AdaptivFloat variant: 2020 paper, 2022 reference, or the accelerator's <8,3> format"),
    "activation_bits": Knob(kind="int", default=8, low=4, high=16, affects_accuracy=True,
                            help="AdaptivFloat bits of encoder linear-layer inputs: simulated on the accuracy "
                                 "side and charged by the hardware model"),
    "attention_span": Knob(kind="int", default=512, low=1, high=512, affects_accuracy=True,
                           help="hard attention span in tokens (every head, every layer)"),
    "exit_threshold": Knob(kind="float", default=0.0, low=0.0, high=5.0, affects_accuracy=True,
                           help="entropy early-exit threshold (nats; ln C is the maximum)"),
    "vmac_lanes": Knob(kind="int", default=16, low=1, high=256, affects_accuracy=False,
                       help="number of vector-MAC lanes"),
    "vector_size": Knob(kind="int", default=16, low=1, high=64, affects_accuracy=False,
                        help="MACs per lane per cycle"),
    "sram_kb": Knob(kind="float", default=64.0, low=1.0, high=65536.0, affects_accuracy=False,
                    help="on-chip SRAM buffer capacity (KiB)"),
    "envm_cell": Knob(kind="categorical", default="rram_mlc2",
                      choices=("sram", "rram_slc", "rram_mlc2", "rram_mlc3", "stt_mram", "pcm",
                               "fefet", "fefet_mlc2"),
                      affects_accuracy=False, help="embedded NVM cell storing the embeddings"),
    "voltage_v": Knob(kind="float", default=0.8, low=0.5, high=0.8, affects_accuracy=False,
                      help="supply voltage (V); the clock follows the V/f curve (with DVFS: layer 1's)"),
    "dvfs": Knob(kind="categorical", default=False, choices=(False, True), affects_accuracy=False,
                 help="latency-aware per-sentence DVFS from the predicted exit layer"),
    "latency_target_ms": Knob(kind="float", default=1.0, low=0.001, high=1000.0, affects_accuracy=False,
                              help="per-sentence latency target that DVFS aims for (ms)"),
    "dvfs_layer1": Knob(kind="categorical", default="nominal", choices=("nominal", "previous", "min"),
                        affects_accuracy=False,
                        help="DVFS: layer 1's voltage (nominal = voltage_v; previous = the rail the previous "
                             "sentence left; min = the 0.50 V grid floor)"),
    "sparse_format": Knob(kind="categorical", default="bitmask", choices=("dense", "bitmask", "relative_index"),
                          affects_accuracy=False,
                          help="encoder weights in storage: dense, bitmask (one mask bit per weight) or "
                               "EIE-style 4-bit relative index"),
    "weight_store": Knob(kind="categorical", default="sram", choices=("sram", "envm", "dram"),
                         affects_accuracy=False,
                         help="where the weights live: SRAM buffer (DRAM when they do not fit), the eNVM "
                              "array beside the embeddings, or DRAM"),
    # Training-time compression (dse.training): a trial whose values differ from these defaults
    # uses a model fine-tuned under them, trained once per distinct setting and cached.
    "pruning_method": Knob(kind="categorical", default="none", choices=("none", "magnitude", "movement"),
                           affects_accuracy=True,
                           help="pruning during a compression-aware fine-tune (none: post-training only)"),
    "train_pruning": Knob(kind="float", default=0.0, low=0.0, high=0.99, affects_accuracy=True,
                          help="encoder matmul sparsity reached during the fine-tune (cubic schedule)"),
    "train_embedding_pruning": Knob(kind="float", default=0.0, low=0.0, high=0.99, affects_accuracy=True,
                                    help="word/position/type table sparsity reached during the fine-tune"),
    "span_init": Knob(kind="float", default=0.0, low=0.0, high=512.0, affects_accuracy=True,
                      help="initial adaptive attention span in tokens, learned per head (0 = off)"),
    "distillation": Knob(kind="categorical", default=False, choices=(False, True), affects_accuracy=True,
                         help="distil from the prepared (unpruned) model during the fine-tune"),
    "train_epochs": Knob(kind="float", default=1.0, low=0.01, high=50.0, affects_accuracy=True,
                         help="epochs of the compression-aware fine-tune"),
}

# Metrics a trial produces, with the direction that is better.
METRICS: dict[str, Literal["maximize", "minimize"]] = {
    "accuracy": "maximize",  # the task's main metric, in points (0-100)
    "accuracy_drop": "minimize",  # points below the fine-tuned baseline (multi-task: mix-weighted mean)
    "worst_accuracy_drop": "minimize",  # the largest drop over a multi-task study's tasks (= accuracy_drop)
    "energy_uj": "minimize",  # mean energy per sentence (µJ)
    "latency_ms": "minimize",  # mean latency per sentence (ms)
    "p95_latency_ms": "minimize",
    "area_mm2": "minimize",
    "memory_mb": "minimize",  # compressed weights + embeddings (MB)
    "avg_exit_layer": "minimize",
    "target_met_fraction": "maximize",  # sentences meeting latency_target_ms (DVFS)
    # mean accuracy (points) with eNVM faults in the stored embeddings; = accuracy when faults are off
    "accuracy_under_faults": "maximize",
}

# Multi-task studies: knobs each task may set for itself (``<task>.<knob>`` in search_space or
# fixed). The rest is one chip and one shared embedding table: hardware, the embedding
# compression, and the AdaptivFloat weight format of the datapath and of that table.
TASK_KNOBS = ("encoder_pruning", "attention_span", "exit_threshold", "activation_bits", "pruning_method",
              "train_pruning", "span_init", "distillation", "train_epochs")
# Per-task metrics a multi-task trial records as ``<task>.<metric>`` (objectives may name them).
TASK_METRICS = ("accuracy", "accuracy_drop", "energy_uj", "latency_ms", "avg_exit_layer",
                "accuracy_under_faults")


def knob_of(name: str) -> Knob:
    """The knob behind a knob name or a multi-task study's ``<task>.<knob>``."""
    return KNOBS[name.split(".", 1)[-1]]


def knobs_for_task(knobs: dict[str, Any], task: str) -> dict[str, Any]:
    """A multi-task trial's knobs as one task sees them: shared knobs, with ``<task>.<knob>``
    values in place of their shared ones (other tasks' scoped knobs dropped)."""
    out = {k: v for k, v in knobs.items() if "." not in k}
    prefix = f"{task}."
    out.update({k[len(prefix):]: v for k, v in knobs.items() if k.startswith(prefix)})
    return out
