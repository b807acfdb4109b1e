"""Trial evaluation cost: our cached evaluator vs the naive batch-size-1 early-exit loop.

On trials sampled from the default SST-2/MiniLM search space (seeded), measures:
  * a cheap trial (only thresholds / hardware knobs change): logits come from the cache;
  * a model trial (pruning / quantization / span change), timed exactly as a study times it: the
    ``seconds`` of ``evaluate_trial`` (compress + guards + one batched dev pass + exit rule +
    hardware model + DVFS + faults), on knobs drawn from the study's own search space, as a ratio
    of one batched dev pass of the uncompressed model;
  * the naive evaluator that EdgeBERT's and DeeBERT's scripts use: compress, then real early exit
    at batch size 1 for every dev sentence, for every trial;
  * the batched dev pass against the FLOPs it needs and this CPU's measured peak matmul rate.

Run: python benchmarks/eval_throughput.py [--config search_spaces/sst2_minilm.yaml]
Last line: cheap_trial_ms=<a> naive_trial_ms=<n> model_trial_ratio=<b> flop_ratio=<c>
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.config import load_study_config
from dse.evaluation import build_context, evaluate_trial
from dse.modeling.batching import iter_batches
from dse.modeling.inference import dev_layer_logits
from dse.study.engine import distributions


def sample_knobs(config, n: int, seed: int) -> list[dict]:  # noqa: ANN001
    """n knob settings drawn from the study's search space (random sampler, seeded)."""
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = distributions(config)
    out = []
    for _ in range(n):
        trial = study.ask(fixed_distributions=dists)
        out.append(config.knob_values(trial.params))
        study.tell(trial, 0.0)
    return out


def dev_pass_flops(ctx) -> float:  # noqa: ANN001
    """2 x MACs of every encoder layer and off-ramp for the dev rows at their real lengths."""
    shape = ctx.shape
    macs = sum(shape.num_layers * shape.encoder_macs_per_layer(int(n)) for n in ctx.dev.lengths)
    macs += len(ctx.dev) * shape.num_layers * (shape.hidden_size * shape.hidden_size
                                               + shape.hidden_size * shape.num_labels)
    return 2.0 * macs


def peak_flops(size: int = 1024, repeats: int = 20) -> float:
    """Best sustained fp32 matmul rate on this CPU (FLOP/s), all threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - t))
    return best


def timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def naive_trial(ctx, knobs: dict) -> float:  # noqa: ANN001
    """Seconds for one trial the naive way: compress, then batch-size-1 early exit per sentence."""
    start = time.perf_counter()
    model, _ = compress(ctx.model, CompressionSpec.from_knobs(knobs))
    correct = 0
    for batch in iter_batches(ctx.dev, batch_size=1, pad_id=ctx.pad_id):
        logits, _ = model.early_exit_forward(batch.input_ids, batch.attention_mask, batch.token_type_ids,
                                             threshold=float(knobs["exit_threshold"]))
        correct += int(logits.argmax(-1).item() == int(batch.labels.item()))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("search_spaces/sst2_minilm.yaml"))
    parser.add_argument("--model-trials", type=int, default=5, help="trials that change the model")
    parser.add_argument("--cheap-trials", type=int, default=200, help="threshold/hardware-only trials")
    parser.add_argument("--naive-trials", type=int, default=2, help="trials run the naive way")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = load_study_config(args.config)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = build_context(config, cache_dir=Path(tmp))
        print(f"study {config.name}: {len(ctx.dev)} dev sentences, baseline {ctx.baseline_points:.2f} points")

        dev_pass = min(timed(lambda: dev_layer_logits(ctx.model, ctx.dev, pad_id=ctx.pad_id)) for _ in range(2))
        flops = dev_pass_flops(ctx)
        peak = peak_flops()
        flop_ratio = dev_pass / (flops / peak)
        print(f"batched dev pass: {dev_pass * 1e3:.0f} ms for {flops / 1e9:.1f} GFLOP "
              f"= {flops / dev_pass / 1e9:.1f} GFLOP/s; peak matmul {peak / 1e9:.1f} GFLOP/s; "
              f"ratio {flop_ratio:.2f}x the FLOP-bound time")

        # the study's code path: evaluate_trial's own seconds, as recorded on a study's trials
        model_seconds, trials = [], []
        for knobs in sample_knobs(config, 4 * args.model_trials, args.seed):
            if len(model_seconds) == args.model_trials:
                break
            try:
                outcome = evaluate_trial(ctx, knobs)
            except ValueError:  # a design the hardware model rejects (a study fails it too)
                continue
            if not outcome.cache_hit:  # a new compression sub-configuration: a model trial
                model_seconds.append(outcome.seconds)
                trials.append(knobs)
        model_ratio = statistics.median(model_seconds) / dev_pass
        print(f"model trial (evaluate_trial, as a study runs it): median {statistics.median(model_seconds) * 1e3:.0f} ms "
              f"over {len(trials)} trials = {model_ratio:.2f}x one batched dev pass")

        cheap = sample_knobs(config, args.cheap_trials, args.seed + 1)
        base = CompressionSpec.from_knobs(trials[0])
        cheap = [{**k, **base.as_dict()} for k in cheap]  # same compression, new thresholds/hardware
        evaluate_trial(ctx, cheap[0])  # warm
        cheap_ms = []
        for knobs in cheap:
            try:
                cheap_ms.append(timed(lambda k=knobs: evaluate_trial(ctx, k)) * 1e3)
            except ValueError:  # an invalid hardware design still costs its check
                pass
        cheap_trial_ms = statistics.median(cheap_ms)
        print(f"cheap trial (thresholds/hardware only): median {cheap_trial_ms:.2f} ms, "
              f"p95 {np.percentile(cheap_ms, 95):.2f} ms over {len(cheap_ms)} trials")

        naive = [naive_trial(ctx, knobs) for knobs in trials[: args.naive_trials]]
        naive_trial_ms = statistics.median(naive) * 1e3
        print(f"naive trial (compress + batch-size-1 real early exit): median {naive_trial_ms:.0f} ms "
              f"over {len(naive)} trials; ours is {naive_trial_ms / cheap_trial_ms:.0f}x faster on a cheap "
              f"trial and {naive_trial_ms / (statistics.median(model_seconds) * 1e3):.1f}x on a model trial")
    print(f"cheap_trial_ms={cheap_trial_ms:.2f} naive_trial_ms={naive_trial_ms:.0f} "
          f"model_trial_ratio={model_ratio:.2f} flop_ratio={flop_ratio:.2f}")


if __name__ == "__main__":
    main()
