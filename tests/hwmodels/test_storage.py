"""Sparse weight formats in storage: exact bit counts by hand, the density-only expectation the cost
model uses, and how formats, off-ramp heads and weight bytes reach the hardware model's figures."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import CompressionProfile, HardwareConfig, ModelShape, evaluate_hardware
from hwmodels.accelerator import encoder_matrices
from hwmodels.storage import (SPARSE_FORMATS, expected_padding_per_position, expected_storage_bits,
                              matrix_storage_bits, pointer_bits)


def _small() -> np.ndarray:
    """A 20 x 2 matrix (20 inputs, 2 outputs): column 0 holds rows 0 and 17, column 1 row 19."""
    w = np.zeros((20, 2))
    w[0, 0], w[17, 0], w[19, 1] = 0.5, -1.0, 2.0
    return w


def test_small_matrix_bytes_by_hand() -> None:
    w = _small()
    # 40 positions, 8-bit values, V = 4: a 3-bit bias per 4 positions = 30 bits in every format
    assert matrix_storage_bits(w, "dense", 8, 4) == 40 * 8 + 30                  # 350 bits
    assert matrix_storage_bits(w, "bitmask", 8, 4) == 3 * 8 + 40 + 30            # 94 bits
    # relative index, 4-bit: column 0 gaps 0 and 16 (16 zeros: one padding entry), column 1 gap 19
    # (one padding entry): 3 + 2 = 5 entries of 8 + 4 bits; 3 column pointers of ceil(log2 41) = 6 bits
    assert pointer_bits(20, 2) == 6
    assert matrix_storage_bits(w, "relative_index", 8, 4) == 5 * 12 + 3 * 6 + 30  # 108 bits = 13.5 bytes


@pytest.mark.parametrize(("row", "pads"), [(15, 0), (16, 1), (31, 1), (32, 2), (47, 2), (48, 3)])
def test_padding_zeros_when_a_gap_exceeds_the_index(row: int, pads: int) -> None:
    w = np.zeros((64, 1))
    w[row, 0] = 1.0
    bits = matrix_storage_bits(w, "relative_index", 8, 16)
    assert bits == (1 + pads) * 12 + 2 * pointer_bits(64, 1) + 64 * 3 / 16


def test_unknown_format_and_shape_refused() -> None:
    with pytest.raises(ValueError, match="unknown sparse format"):
        matrix_storage_bits(_small(), "csr", 8, 4)
    with pytest.raises(ValueError, match="2-D"):
        matrix_storage_bits(np.zeros(4), "dense", 8, 4)


@pytest.mark.parametrize("density", [0.02, 0.1, 0.3, 0.7, 1.0])
def test_expectation_matches_random_patterns(density: float) -> None:
    rng = np.random.default_rng(0)
    m, n1 = 384, 384
    w = rng.standard_normal((m, n1)) * (rng.random((m, n1)) < density)
    achieved = float(np.mean(w != 0))
    for k, fmt in enumerate(SPARSE_FORMATS):
        exact = matrix_storage_bits(w, fmt, 8, 16)
        expected = float(expected_storage_bits(k, m, n1, achieved, 8, 16)[0] + expected_storage_bits(k, m, n1, achieved, 8, 16)[1])
        assert expected == pytest.approx(exact, rel=0.01), fmt


def test_padding_expectation_by_hand() -> None:
    assert expected_padding_per_position(1.0, 384) == 0.0
    # a column of 32 rows: only a non-zero at rows 16..31 can need a padding entry (one, when the 16
    # rows before it are zeros): 16 rows x d x r
    d = 0.25
    r = (1 - d) ** 16
    assert expected_padding_per_position(d, 32) * 32 == pytest.approx(d * 16 * r)
    # brute force over every pattern of a 20-row column (exact expectation)
    rng = np.random.default_rng(1)
    samples = rng.random((200_000, 20)) < 0.05
    pads = []
    for col in samples[:20_000]:
        rows = np.flatnonzero(col)
        pads.append(int(np.sum((np.diff(np.concatenate([[-1], rows])) - 1) // 16)))
    assert expected_padding_per_position(0.05, 20) * 20 == pytest.approx(np.mean(pads), abs=0.01)


def test_relative_index_wins_where_index_bits_cost_less_than_a_mask_bit() -> None:
    # bitmask d*n + 1 against relative index about d*(n + 4): the crossover is near d*4 = 1
    sparse = [expected_storage_bits(k, 384, 1536, 0.1, 8, 16)[0].item() for k in range(3)]
    sparse[1] += 384 * 1536  # the bitmask's mask bits
    assert sparse[2] < sparse[1] < sparse[0]
    dense_ish = [expected_storage_bits(k, 384, 1536, 0.5, 8, 16)[0].item() for k in range(3)]
    dense_ish[1] += 384 * 1536
    assert dense_ish[1] < dense_ish[2]


def _weights(shape: ModelShape, fmt: str, density: float) -> float:
    hw = evaluate_hardware(shape, tokens=np.array([16]), exit_layers=np.array([1]),
                           compression=CompressionProfile(encoder_density=density),
                           hardware=HardwareConfig(sparse_format=fmt))
    return hw.weight_storage_bytes


def test_memory_follows_the_format(minilm: ModelShape) -> None:
    n = minilm.unique_encoder_weights
    dense_rest = (minilm.offramp_weights + minilm.projection_weights) * 8 / 8
    bias = n * 3 / 16 / 8
    assert _weights(minilm, "dense", 0.1) == pytest.approx(n * 8 / 8 + bias + dense_rest)
    assert _weights(minilm, "bitmask", 0.1) == pytest.approx(n * (0.1 * 8 + 1) / 8 + bias + dense_rest)
    relative = sum(expected_storage_bits(2, m, n1, 0.1, 8, 16)[0].item() for m, n1 in encoder_matrices(minilm))
    assert _weights(minilm, "relative_index", 0.1) == pytest.approx(relative * minilm.num_layers / 8 + dense_rest)
    # at 90 % sparsity the encoder weights take 17 % fewer bytes with the relative index
    assert _weights(minilm, "relative_index", 0.1) - dense_rest < 0.85 * (_weights(minilm, "bitmask", 0.1) - dense_rest)


def test_formats_change_energy_of_streamed_weights(minilm: ModelShape) -> None:
    def energy(fmt: str) -> float:
        return evaluate_hardware(minilm, tokens=np.array([32]), exit_layers=np.array([6]),
                                 compression=CompressionProfile(encoder_density=0.1),
                                 hardware=HardwareConfig(sparse_format=fmt)).energy_breakdown_pj["dram"][0]
    assert energy("relative_index") < energy("bitmask") < energy("dense")


def test_offramp_head_shape_sets_its_storage(minilm: ModelShape) -> None:
    h, c, layers = minilm.hidden_size, minilm.num_labels, minilm.num_layers
    assert minilm.offramp_weights == layers * (h * h + h * c)
    linear = ModelShape(**{**minilm.__dict__, "offramp_head": "linear"})
    shared = ModelShape(**{**minilm.__dict__, "offramp_shared": True})
    assert linear.offramp_weights == layers * h * c
    assert shared.offramp_weights == h * h + h * c
    saved = _weights(minilm, "bitmask", 1.0) - _weights(linear, "bitmask", 1.0)
    assert saved == layers * h * h * 8 / 8  # 8-bit dense off-ramp weights
    # a classifier-only head also skips the pooler's matmul and tanh on every layer
    t = {s: evaluate_hardware(s, tokens=np.array([16]), exit_layers=np.array([3]), compression=CompressionProfile(),
                              hardware=HardwareConfig(sram_kb=16384.0)).latency_ns[0] for s in (minilm, linear)}
    assert t[linear] < t[minilm]
    with pytest.raises(ValueError, match="offramp_shared must be a bool"):
        ModelShape(**{**minilm.__dict__, "offramp_shared": 1})
