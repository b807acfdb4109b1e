"""The study coordinator's own time per trial as a study grows (issue #19 item 4).

A study whose trials are all served from the logits cache: one compression setting (the first
trial runs the model of a tiny random-weight BERT once, every later one is a cache hit) and
cheap knobs searched (exit threshold, hardware), so a trial's evaluation is the exit rule and the
hardware model on cached logits. The study runs in a journal-storage folder through the real
engine (``dse.study.engine.run_study``) with the Python API's progress callback, to the largest
size; at each size the coordinator's time per trial is the wall time between two finished
trials minus that trial's evaluation (ask, hardware screening, tell, storage writes, the sweep,
progress), averaged over the ``--window`` trials before that size. The final outputs
(trials.csv, pareto.csv, hypervolume.csv, plots) are written once at the end, as ``dse study run``
does, and timed apart.

The last printed line is ``coordinator_ms_per_trial_at_100=<x> at_500=<y> at_2000=<z>``
(one ``at_<n>`` per size). ``--profile`` adds a cProfile of the coordinator over the last window.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BertConfig, BertModel

import dse
from dse.config import parse_study_config
from dse.evaluation import EvalContext, TrialOutcome, evaluate_trial
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from hwmodels import ModelShape

SPACE = {
    "exit_threshold": {"type": "float", "low": 0.0, "high": 0.7, "step": 0.01},
    "voltage_v": {"type": "float", "low": 0.5, "high": 0.8, "step": 0.05},
    "vmac_lanes": {"type": "categorical", "choices": [4, 8, 16]},
    "sram_kb": {"type": "categorical", "choices": [64, 128, 256, 512]},
    "envm_cell": {"type": "categorical", "choices": ["rram_slc", "rram_mlc2", "pcm"]},
}


def _context(cache_dir: Path, rows: int) -> EvalContext:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=200, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=128)
    model = EarlyExitModel(BertModel(cfg), num_labels=2).eval()
    rng = np.random.default_rng(0)
    ids = [[1, *rng.integers(3, 200, int(n)).tolist(), 2] for n in rng.integers(10, 60, rows)]
    dev = EncodedSet(ids, [[0] * len(r) for r in ids], rng.integers(0, 2, rows))
    return EvalContext(task="sst2", model=model, prepared_key="coordinator-bench", dev=dev, pad_id=0,
                       shape=ModelShape.from_hf_config(cfg, num_labels=2), baseline_points=50.0,
                       cache_dir=cache_dir)


def coordinator_ms_per_trial(sizes: list[int], *, window: int = 50, sampler: str = "tpe", rows: int = 256,
                             profile: bool = False) -> dict[int, float]:
    """Print the measurement and return the coordinator's wall ms per trial at each size."""
    args = argparse.Namespace(window=window, sampler=sampler, rows=rows, profile=profile)
    sizes = sorted(sizes)
    total = sizes[-1]

    config = parse_study_config({"name": "coordinator-cost", "search_space": SPACE, "n_trials": total,
                                 "sampler": {"name": args.sampler, "seed": 0}}, source="benchmark")
    eval_s: dict[int, float] = {}
    eval_cpu: dict[int, float] = {}
    stamps: list[float] = []
    cpu_stamps: list[float] = []
    profiler = cProfile.Profile()

    def timed(ctx: Any, knobs: dict[str, Any]) -> TrialOutcome:
        start, cpu = time.perf_counter(), time.process_time()
        if args.profile:
            profiler.disable()
        try:
            return evaluate_trial(ctx, knobs)
        finally:
            if args.profile and len(stamps) >= total - args.window:
                profiler.enable()
            eval_cpu[len(eval_cpu)] = time.process_time() - cpu
            eval_s[len(eval_s)] = time.perf_counter() - start

    def progress(p: dse.Progress) -> None:
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        if args.profile and len(stamps) == total - args.window:
            profiler.enable()

    with tempfile.TemporaryDirectory() as tmp:
        study = dse.Study.create(config, results_dir=tmp)
        ctx = _context(study.folder.cache, args.rows)
        from dse.study.engine import run_study  # the API's run with the benchmark's timed evaluation
        from dse.api import _progress_callback

        start, cpu_start = time.perf_counter(), time.process_time()
        stats = run_study(study.folder, config, context=ctx, evaluate=timed, progress=_progress_callback(progress))
        run_s = time.perf_counter() - start
        profiler.disable()
        write_start = time.perf_counter()
        study.write_outputs()
        write_s = time.perf_counter() - write_start

    # progress fires once per finished trial (completed, failed, early-stopped); evaluations
    # line up with it one to one (screened trials make no call of either)
    n = min(len(stamps), len(eval_s))
    gaps = np.diff(np.array([start, *stamps[:n]]))
    coordinator = gaps - np.array([eval_s[i] for i in range(n)])
    # CPU time too: on a shared machine the wall time also counts waiting for a core
    coordinator_cpu = np.diff(np.array([cpu_start, *cpu_stamps[:n]])) - np.array([eval_cpu[i] for i in range(n)])
    print(f"sampler={args.sampler} trials={stats.completed} screened={stats.screened} cache_hits={stats.cache_hits} "
          f"derived={stats.derived} run_s={run_s:.1f} evaluation_s={sum(eval_s.values()):.1f}")
    figures = {}
    for size in sizes:
        window = coordinator[max(0, min(size, n) - args.window):min(size, n)]
        figures[size] = 1000 * float(window.mean())
        cpu = 1000 * float(coordinator_cpu[max(0, min(size, n) - args.window):min(size, n)].mean())
        print(f"  trials {max(1, size - args.window + 1)}..{size}: coordinator {figures[size]:.1f} ms/trial wall, "
              f"{cpu:.1f} ms/trial CPU (wall median {1000 * float(np.median(window)):.1f}; evaluation "
              f"{1000 * np.mean([eval_s[i] for i in range(max(0, size - args.window), min(size, n))]):.1f} ms/trial)")
    print(f"final outputs (trials.csv, pareto.csv, hypervolume.csv, plots) written once: {write_s:.1f} s "
          f"= {1000 * write_s / max(n, 1):.1f} ms/trial over {n} trials")
    if args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,500,2000", help="study sizes (trials) to report, comma-separated")
    ap.add_argument("--window", type=int, default=50, help="trials averaged before each size")
    ap.add_argument("--sampler", default="tpe", choices=["tpe", "nsga2", "random", "gp"])
    ap.add_argument("--rows", type=int, default=256, help="dev rows of the tiny model")
    ap.add_argument("--profile", action="store_true", help="cProfile the coordinator over the last window")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    figures = coordinator_ms_per_trial(sizes, window=args.window, sampler=args.sampler, rows=args.rows,
                                       profile=args.profile)
    print("coordinator_ms_per_trial_" + " ".join(f"at_{s}={figures[s]:.1f}" for s in sizes))


if __name__ == "__main__":
    main()
