"""Bring-your-own entropy traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwmodels import CompressionProfile, HardwareConfig, ModelShape, evaluate_hardware
from hwmodels import exit_layers_from_entropies, load_entropy_trace


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_load_and_exit_layers(tmp_path: Path, minilm: ModelShape) -> None:
    path = _write(tmp_path, "tokens,entropy_1,entropy_2,entropy_3\n12,0.6,0.1,0.05\n40,0.05,0.3,0.2\n7,0.6,0.5,0.4\n")
    entropies, tokens = load_entropy_trace(path)
    assert entropies.shape == (3, 3) and tokens.tolist() == [12, 40, 7]
    # threshold 0.2: sentence 0 exits at layer 2 (0.1 < 0.2), 1 at layer 1, 2 never -> last layer 3
    assert exit_layers_from_entropies(entropies, 0.2).tolist() == [2, 1, 3]
    # per-layer thresholds [0.01, 0.01, 0.5] -> [3, 3, 3]
    assert exit_layers_from_entropies(entropies, np.array([0.01, 0.01, 0.5])).tolist() == [3, 3, 3]
    r = evaluate_hardware(minilm, tokens=tokens, exit_layers=exit_layers_from_entropies(entropies, 0.2),
                          compression=CompressionProfile(), hardware=HardwareConfig())
    assert np.all(np.isfinite(r.energy_pj))


@pytest.mark.parametrize("text, message", [
    ("tokens,entropy_2\n1,0.1\n", "columns tokens,entropy_1..entropy_L"),
    ("tokens,entropy_1\n", "has no sentences"),
    ("tokens,entropy_1\n0,0.1\n", "tokens must be positive integers"),
    ("tokens,entropy_1\n3,abc\n", "non-numeric"),
])
def test_bad_traces_raise(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_entropy_trace(_write(tmp_path, text))


def test_missing_trace_and_bad_threshold_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_entropy_trace(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="one value per layer"):
        exit_layers_from_entropies(np.zeros((2, 3)), np.zeros(2))
