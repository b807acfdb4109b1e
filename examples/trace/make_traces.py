"""Write the example's synthetic entropy traces (seeded): albert12_trace.csv and albert12_fit_trace.csv.

Not measured on a model: each sentence gets a difficulty d in [0, 1], and its off-ramp entropy
(nats, binary task: at most ln 2) falls with depth, slower for harder sentences, plus noise.
Run from anywhere: ``python examples/trace/make_traces.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LAYERS = 12


def trace(n_sentences: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.0, 1.0, n_sentences)
    tokens = rng.integers(8, 64, n_sentences)
    layer = np.arange(LAYERS)
    decay = np.exp(-layer[None, :] / (1.0 + 10.0 * difficulty[:, None]))
    noise = rng.normal(0.0, 0.03, (n_sentences, LAYERS))
    entropy = np.clip(math.log(2) * (0.35 + 0.65 * difficulty[:, None]) * decay + noise, 0.001, math.log(2))
    header = ",".join(["tokens"] + [f"entropy_{i}" for i in range(1, LAYERS + 1)])
    rows = [",".join([str(t)] + [f"{h:.4f}" for h in row]) for t, row in zip(tokens, entropy)]
    return "\n".join([header, *rows]) + "\n"


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    (here / "albert12_trace.csv").write_text(trace(48, seed=1))
    (here / "albert12_fit_trace.csv").write_text(trace(32, seed=2))
