"""EdgeBERT's headline ratios on a finished single-task study (issue #18), each against its baseline.

For the best design within ``--max-drop`` points (default 1.0) of the reference accuracy (lowest
mean energy per sentence; ``--by`` picks another metric), re-scored from scratch on the study's dev
rows with the study's own model and caches:

* accuracy_drop: reference points minus the design's accuracy. The reference is the study's
  baseline, the fine-tuned model's final layer without early exit (``--reference-points``
  overrides it, e.g. with the best plain fine-tune of the same model on the same data);
* latency_x: the baseline design's mean latency over the design's. The baseline is the same
  fine-tuned model uncompressed (no pruning, training-time knobs off, AdaptivFloat<16,5> weights and
  16-bit activations, the widest the datapath models; weights stored dense; no span limit; no early
  exit) on the same accelerator (the design's lanes, SRAM, eNVM cell and weight store) at the
  nominal 0.8 V without DVFS;
* memory_x: the model's fp32 parameter bytes (backbone and off-ramps) over the design's memory_mb;
* energy_vs_no_exit_x: EdgeBERT's (a)/(c): the design without early exit and without DVFS at
  0.8 V, over the design;
* energy_vs_unbounded_exit_x: EdgeBERT's (b)/(c): the design with early exit but without DVFS
  at 0.8 V (latency-unbounded early exit), over the design;
* target_met: the design's fraction of sentences meeting its per-sentence latency target.
A guarded hardware knob that a baseline makes inert (e.g. ``dvfs_layer1`` once DVFS is off) takes
its default there: the same design.
Last line: ``accuracy_drop=... latency_x=... memory_x=... energy_vs_no_exit_x=...
energy_vs_unbounded_exit_x=... target_met=...``.

Usage: python benchmarks/edgebert_ratios.py [STUDY_DIR] [--max-drop 1.0] [--by energy_uj]
       [--reference-points P]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dse.config import KNOBS, METRICS
from dse.errors import DSEError
from dse.evaluation import build_context, evaluate_trial
from dse.evaluation.guards import GUARDED_HARDWARE_KNOBS, InactiveKnob
from dse.study.engine import StudyFolder, open_study

# the uncompressed model on the design's accelerator (see the module docstring)
BASELINE = {"encoder_pruning": 0.0, "embedding_pruning": 0.0, "weight_bits": 16, "weight_exp_bits": 5,
            "weight_format": "paper2020", "activation_bits": 16, "attention_span": 512, "exit_threshold": 0.0,
            "pruning_method": "none", "train_pruning": 0.0, "train_embedding_pruning": 0.0, "span_init": 0.0,
            "distillation": False, "train_epochs": KNOBS["train_epochs"].default, "sparse_format": "dense",
            "voltage_v": 0.8, "dvfs": False, "dvfs_layer1": "nominal"}
NO_DVFS = {"voltage_v": 0.8, "dvfs": False, "dvfs_layer1": "nominal"}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1)


def evaluate(ctx: Any, knobs: dict[str, Any]) -> Any:
    """``evaluate_trial``; a guarded hardware knob the case makes inert takes its default."""
    for _ in GUARDED_HARDWARE_KNOBS:
        try:
            return evaluate_trial(ctx, knobs)
        except InactiveKnob as exc:
            knob = next((k for k in GUARDED_HARDWARE_KNOBS if str(exc).startswith(f"{k}=")), None)
            if knob is None:
                raise
            knobs = {**knobs, knob: KNOBS[knob].default}
    return evaluate_trial(ctx, knobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default="results/edgebert_sst2")
    parser.add_argument("--max-drop", type=float, default=1.0, help="accuracy budget in points")
    parser.add_argument("--by", default="energy_uj", choices=sorted(METRICS), help="what 'best' means")
    parser.add_argument("--reference-points", type=float, default=None,
                        help="accuracy the drop counts from (default: the study's fine-tuned baseline)")
    args = parser.parse_args()

    path = Path(args.study)
    folder = StudyFolder(path)
    try:
        config = folder.load_config()
        if config.is_multitask:
            fail("the ratios are defined for a single-task study")
        study = open_study(folder, config, create=False)
    except DSEError as exc:
        fail(str(exc))
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.user_attrs.get("metrics")]
    if not trials:
        fail(f"{path} has no completed trials")

    ctx = build_context(config, cache_dir=folder.cache)
    reference = ctx.baseline_points if args.reference_points is None else args.reference_points
    within = [t for t in trials if reference - t.user_attrs["metrics"]["accuracy"] <= args.max_drop + 1e-9]
    if not within:
        best = max(t.user_attrs["metrics"]["accuracy"] for t in trials)
        fail(f"no design within {args.max_drop:g} points of {reference:.2f} (best accuracy {best:.2f})")
    sign = 1.0 if METRICS[args.by] == "minimize" else -1.0
    chosen = min(within, key=lambda t: sign * t.user_attrs["metrics"][args.by])
    knobs = config.knob_values(chosen.user_attrs["knobs"])

    design = evaluate(ctx, knobs)
    cases = {
        "baseline (uncompressed, no exit, 0.8 V)": evaluate(ctx, {**knobs, **BASELINE}),
        "(a) design, no early exit, 0.8 V": evaluate(ctx, {**knobs, **NO_DVFS, "exit_threshold": 0.0}),
        "(b) design, early exit, no DVFS, 0.8 V": evaluate(ctx, {**knobs, **NO_DVFS}),
        "(c) design": design,
    }
    params = sum(p.numel() for p in ctx.model.parameters())
    backbone = sum(p.numel() for p in ctx.model.backbone.parameters())
    fp32_mb = 4.0 * params / 1e6

    print(f"machine: {platform.machine()} {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"study {config.name}: {len(trials)} completed trials, {len(within)} within {args.max_drop:g} points of "
          f"{reference:.2f}; best by {args.by} = trial {chosen.number}")
    print(f"knobs: {knobs}")
    print(f"fp32 parameters: {params:,} ({fp32_mb:.1f} MB; backbone alone {4.0 * backbone / 1e6:.1f} MB)")
    print(f"{'case':42s} {'acc':>6s} {'exit':>5s} {'lat ms':>8s} {'E µJ':>9s} {'mem MB':>8s} {'area':>7s} {'met':>5s}")
    for name, out in cases.items():
        m = out.metrics
        print(f"{name:42s} {m['accuracy']:6.2f} {m['avg_exit_layer']:5.2f} {m['latency_ms']:8.4f} "
              f"{m['energy_uj']:9.3f} {m['memory_mb']:8.3f} {m['area_mm2']:7.3f} {m['target_met_fraction']:5.3f}")
    d = design.metrics
    hist = design.attrs.get("exit_layer_histogram")
    if hist is not None:
        print(f"design exit-layer histogram (layers 1..{len(hist)}): {hist}")
    breakdown = design.attrs.get("energy_breakdown_uj", {})
    print("design energy (µJ): " + ", ".join(f"{k} {v:.3f}" for k, v in breakdown.items()))

    base, no_exit, unbounded = (cases[k].metrics for k in list(cases)[:3])
    ratios = {
        "accuracy_drop": reference - d["accuracy"],
        "latency_x": base["latency_ms"] / d["latency_ms"],
        "memory_x": fp32_mb / d["memory_mb"],
        "energy_vs_no_exit_x": no_exit["energy_uj"] / d["energy_uj"],
        "energy_vs_unbounded_exit_x": unbounded["energy_uj"] / d["energy_uj"],
        "target_met": d["target_met_fraction"],
    }
    targets = {"accuracy_drop": ("<=", 1.0), "latency_x": (">=", 2.4), "memory_x": (">=", 13.4),
               "energy_vs_no_exit_x": (">=", 7.0), "energy_vs_unbounded_exit_x": (">=", 2.5),
               "target_met": (">=", 0.99)}
    for name, value in ratios.items():
        op, goal = targets[name]
        ok = value <= goal if op == "<=" else value >= goal
        print(f"{name:28s} {value:9.3f}   EdgeBERT target {op} {goal:g}: {'met' if ok else 'not met'}")
    assert all(np.isfinite(v) for v in ratios.values())
    print(" ".join(f"{k}={v:.4f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
