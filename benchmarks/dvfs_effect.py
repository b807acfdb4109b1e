"""Energy breakdown of a study's chosen design, and the effect of early exit and DVFS on it.

For the picked design (default: the knee of ``results/sst2_minilm``) it scores, on the real dev
set with the same compressed model, EdgeBERT's three cases at the nominal 0.8 V:
  (a) no early exit;
  (b) entropy early exit (latency-unbounded early exit);
  (c) early exit + latency-aware DVFS with the latency target set to (a)'s mean latency,
      the exit layer predicted from layer 1's entropy by a LUT fitted on training sentences.
Last line: ``energy_no_exit_uj=<a> energy_exit_uj=<b> energy_exit_dvfs_uj=<c> target_met=<f>``.

Usage: python benchmarks/dvfs_effect.py [STUDY_DIR] [--pick knee|max-accuracy|min-energy]
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from dse.analysis.results import pareto_table, pick_trial, trials_table
from dse.evaluation import build_context, evaluate_trial
from dse.study.engine import StudyFolder, open_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", nargs="?", default="results/sst2_minilm")
    parser.add_argument("--pick", default="knee", choices=["knee", "max-accuracy", "min-energy"])
    args = parser.parse_args()

    folder = StudyFolder(Path(args.study))
    config = folder.load_config()
    study = open_study(folder, config, create=False)
    number = pick_trial(pareto_table(trials_table(study, config), config), config, args.pick)
    knobs = {**config.knob_values(study.trials[number].user_attrs["knobs"]), "voltage_v": 0.8}
    ctx = build_context(config, cache_dir=folder.cache)

    no_exit = evaluate_trial(ctx, {**knobs, "exit_threshold": 0.0, "dvfs": False})
    target_ms = no_exit.metrics["latency_ms"]
    cases = {
        "(a) no early exit": no_exit,
        "(b) early exit": evaluate_trial(ctx, {**knobs, "dvfs": False}),
        "(c) early exit + DVFS": evaluate_trial(
            ctx, {**knobs, "dvfs": True, "latency_target_ms": target_ms}
        ),
    }
    print(f"machine: {platform.machine()} {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"study {config.name}, {args.pick} design = trial {number}, run at the nominal 0.8 V; knobs: {knobs}")
    print(f"DVFS latency target = (a)'s mean latency = {target_ms:.4f} ms")
    parts = list(no_exit.attrs["energy_breakdown_uj"])
    print(f"{'case':24s} {'acc':>6s} {'exit':>5s} {'lat ms':>8s} {'E µJ':>9s} "
          + " ".join(f"{p:>9s}" for p in parts))
    for name, out in cases.items():
        m, br = out.metrics, out.attrs["energy_breakdown_uj"]
        print(f"{name:24s} {m['accuracy']:6.2f} {m['avg_exit_layer']:5.2f} {m['latency_ms']:8.4f} "
              f"{m['energy_uj']:9.3f} " + " ".join(f"{br[p]:9.3f}" for p in parts))
    a, b, c = (cases[k].metrics["energy_uj"] for k in cases)
    print(f"energy ratios: (a)/(c) = {a / c:.2f}, (b)/(c) = {b / c:.2f}")
    print(f"energy_no_exit_uj={a:.4f} energy_exit_uj={b:.4f} energy_exit_dvfs_uj={c:.4f} "
          f"target_met={cases['(c) early exit + DVFS'].metrics['target_met_fraction']:.3f}")


if __name__ == "__main__":
    main()
