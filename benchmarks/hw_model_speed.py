"""Throughput of the vectorised hardware model: (sentence, design) points evaluated per second.

Evaluates a random sweep of designs (half with latency-aware DVFS) on a MiniLM-shaped model over a
synthetic workload.  The last printed line is ``points_per_second=<n>``.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from hwmodels import ENVM_CELLS, DesignBatch, ModelShape, evaluate_hardware_batch

N_DESIGNS = 2_000
N_SENTENCES = 256
REPEATS = 3


def random_designs(rng: np.random.Generator, n: int) -> DesignBatch:
    dvfs_on = rng.random(n) < 0.5
    return DesignBatch(
        vmac_lanes=rng.choice([4, 8, 16, 32], n), vector_size=rng.choice([8, 16, 32], n),
        sram_kb=rng.choice([32.0, 64.0, 256.0, 1024.0, 4096.0], n),
        envm_cell_index=rng.integers(0, len(ENVM_CELLS), n), voltage_v=rng.choice([0.5, 0.6, 0.7, 0.8], n),
        dvfs=dvfs_on, latency_target_ms=np.where(dvfs_on, rng.uniform(1.0, 20.0, n), np.nan),
        node_nm=np.full(n, 12.0), zero_skipping=rng.random(n) < 0.3, double_buffered=rng.random(n) < 0.8,
        encoder_density=rng.uniform(0.1, 1.0, n), embedding_density=rng.uniform(0.1, 1.0, n),
        weight_bits=rng.integers(4, 17, n), weight_exp_bits=rng.integers(1, 4, n),
        activation_bits=rng.integers(4, 17, n),
        attention_span=np.where(rng.random(n) < 0.5, np.inf, rng.integers(16, 129, n)))


def main() -> None:
    rng = np.random.default_rng(0)
    shape = ModelShape(num_layers=6, hidden_size=384, intermediate_size=1536, num_heads=12, embedding_size=384,
                       vocab_size=30522, max_positions=512, type_vocab_size=2, num_labels=2, shared_layers=False)
    tokens = rng.integers(8, 129, N_SENTENCES)
    exits = rng.integers(1, shape.num_layers + 1, N_SENTENCES)
    predicted = np.clip(exits + rng.integers(-1, 2, N_SENTENCES), 1, shape.num_layers)
    designs = random_designs(rng, N_DESIGNS)
    evaluate_hardware_batch(shape, tokens=tokens[:8], exit_layers=exits[:8], designs=random_designs(rng, 4))  # warm-up
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = evaluate_hardware_batch(shape, tokens=tokens, exit_layers=exits, designs=designs,
                                         predicted_exit_layers=predicted)
        best = min(best, time.perf_counter() - start)
    points = N_DESIGNS * N_SENTENCES
    assert np.all(np.isfinite(result.energy_pj)) and np.all(np.isfinite(result.latency_ns))
    print(f"machine: {platform.machine()} {platform.processor() or platform.platform()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print(f"designs: {N_DESIGNS} (half with DVFS), sentences: {N_SENTENCES}, points: {points}")
    print(f"best of {REPEATS}: {best:.3f} s")
    print(f"points_per_second={int(points / best)}")


if __name__ == "__main__":
    main()
