"""Cost and gain of the Ray executor against the in-process one.

* overhead: a no-op evaluation (returns a fixed outcome) run one trial at a time through the
  Ray executor and through the inline executor; the difference per trial is Ray's overhead
  (task submission, scheduling, result transfer), after the workers are warm.
* speedup: a CPU-bound batch of real evaluations (``evaluate_trial``: compression, knob guards,
  the dev pass of a random-weight BERT on synthetic rows, the hardware model) with 1 and with 2
  trials in flight on a local Ray, 1 CPU and 1 torch thread per trial.

The last printed line is ``overhead_ms=<x> speedup_2_workers=<y>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import numpy as np
import torch
from transformers import BertConfig, BertModel

from dse.config import KNOBS
from dse.evaluation import EvalContext, TrialOutcome, evaluate_trial
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from dse.study.executors import InlineExecutor, RayExecutor
from hwmodels import ModelShape


def _context(hidden: int, layers: int, rows: int) -> EvalContext:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=2000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=4 * hidden, max_position_embeddings=128)
    model = EarlyExitModel(BertModel(cfg), num_labels=2).eval()
    rng = np.random.default_rng(0)
    ids = [[1, *rng.integers(3, 2000, int(n)).tolist(), 2] for n in rng.integers(20, 100, rows)]
    dev = EncodedSet(ids, [[0] * len(r) for r in ids], rng.integers(0, 2, rows))
    return EvalContext(task="sst2", model=model, prepared_key="bench", dev=dev, pad_id=0,
                       shape=ModelShape.from_hf_config(cfg, num_labels=2), baseline_points=50.0, cache_dir=None)


NOOP = TrialOutcome(metrics={}, attrs={}, cache_hit=True, seconds=0.0)


def noop(ctx: EvalContext, knobs: dict[str, Any]) -> TrialOutcome:
    return NOOP


def _knobs(i: int) -> dict[str, Any]:
    values = {name: knob.default for name, knob in KNOBS.items()}
    values["encoder_pruning"] = round(0.05 + 0.9 * (i % 97) / 97, 4)  # a new model evaluation each time
    return values


def _drive(executor: Any, n: int, in_flight: int, knobs: Any = _knobs) -> float:
    """Seconds to push ``n`` trials through with at most ``in_flight`` at once."""
    start = time.perf_counter()
    submitted = done = 0
    while done < n:
        while submitted < n and submitted - done < in_flight:
            executor.submit(submitted, knobs(submitted))
            submitted += 1
        _, result = executor.wait_one()
        if isinstance(result, BaseException):
            raise result
        done += 1
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noop-trials", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4, help="CPU-bound trials per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="alternating 1- and 2-worker measurements")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--rows", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ctx = _context(args.hidden, args.layers, args.rows)

    inline = InlineExecutor(ctx, evaluate=noop)
    inline_s = _drive(inline, args.noop_trials, 1)
    t0 = time.perf_counter()
    ray_ex = RayExecutor(ctx, evaluate=noop, cpus_per_trial=1)
    print(f"local Ray started in {time.perf_counter() - t0:.1f} s ({ray_ex.capacity} CPUs)")
    try:
        _drive(ray_ex, 4, 2)  # warm both workers (imports, context fetch)
        ray_s = _drive(ray_ex, args.noop_trials, 1)
        overhead_ms = (ray_s - inline_s) / args.noop_trials * 1e3
        print(f"no-op trial: inline {inline_s / args.noop_trials * 1e3:.3f} ms, "
              f"Ray {ray_s / args.noop_trials * 1e3:.2f} ms")
        ray_ex.close()
        ray_ex = RayExecutor(ctx, evaluate=evaluate_trial, cpus_per_trial=1)
        _drive(ray_ex, 2, 2, knobs=lambda i: _knobs(1000 + i))  # warm both workers on real work
        one = two = 0.0
        for r in range(args.repeats):  # alternate, so a busy moment of a shared machine hits both
            base = 10 * args.batch * r
            one += _drive(ray_ex, args.batch, 1, knobs=lambda i, b=base: _knobs(b + i))
            two += _drive(ray_ex, args.batch, 2, knobs=lambda i, b=base: _knobs(b + args.batch + i))
    finally:
        ray_ex.close()
    inline_eval = InlineExecutor(ctx)
    inline_one = _drive(inline_eval, 2, 1, knobs=lambda i: _knobs(200 + i)) / 2
    print(f"CPU-bound batches of {args.batch} x {args.repeats}: 1 worker {one:.1f} s, 2 workers {two:.1f} s "
          f"(inline {inline_one:.2f} s per trial); machine {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"overhead_ms={overhead_ms:.2f} speedup_2_workers={one / two:.2f}")


if __name__ == "__main__":
    main()
