"""Bring-your-own entropy traces: per-sentence off-ramp entropies drive the same cost model.

CSV format: header ``tokens,entropy_1,...,entropy_L`` then one row per sentence.
Exit rule (EdgeBERT / DeeBERT): a sentence exits after the first layer i with H_i < T_i, else at L.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def load_entropy_trace(csv_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(entropies [n_sentences, n_layers] float, tokens [n_sentences] int)`` from a CSV."""
    path = Path(csv_path)
    if not path.is_file():
        raise ValueError(f"entropy trace {path} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"entropy trace {path} is empty")
    header = [h.strip() for h in rows[0]]
    n_layers = len(header) - 1
    expected = ["tokens"] + [f"entropy_{i}" for i in range(1, n_layers + 1)]
    if n_layers < 1 or header != expected:
        raise ValueError(f"entropy trace {path} must have columns tokens,entropy_1..entropy_L; got {','.join(header)}")
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if not body:
        raise ValueError(f"entropy trace {path} has no sentences")
    try:
        data = np.array([[float(cell) for cell in r] for r in body])
    except ValueError as exc:
        raise ValueError(f"entropy trace {path} has a non-numeric cell: {exc}") from None
    if data.shape[1] != n_layers + 1:
        raise ValueError(f"entropy trace {path} has rows with the wrong number of columns")
    tokens = data[:, 0]
    if np.any(tokens < 1) or np.any(tokens != np.round(tokens)):
        raise ValueError(f"entropy trace {path}: tokens must be positive integers")
    entropies = data[:, 1:]
    if np.any(~np.isfinite(entropies)) or np.any(entropies < 0):
        raise ValueError(f"entropy trace {path}: entropies must be finite and >= 0")
    return entropies, tokens.astype(int)


def exit_layers_from_entropies(entropies: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """1-based exit layer per sentence: first layer with entropy < threshold, else the last layer.

    ``threshold`` is a scalar or a per-layer vector of length L.
    """
    h = np.asarray(entropies, dtype=float)
    if h.ndim != 2 or h.shape[1] == 0:
        raise ValueError("entropies must be a 2-D [n_sentences, n_layers] array")
    t = np.asarray(threshold, dtype=float)
    if t.ndim > 1 or (t.ndim == 1 and t.size != h.shape[1]):
        raise ValueError(f"threshold must be a scalar or have one value per layer ({h.shape[1]})")
    below = h < t
    return np.where(below.any(axis=1), np.argmax(below, axis=1) + 1, h.shape[1]).astype(int)
