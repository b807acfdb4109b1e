"""eNVM fault injection: cell packing, Gray-coded adjacent-level errors, and the code helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dse.compression.adaptivfloat import AdaptivFloatFormat, exponent_bias, quantize
from dse.compression.envm_faults import (CELL_ERROR_PROB, bits_per_cell, cell_error_prob, inject_code_faults,
                                         inject_table_faults, inject_weight_faults, levels_per_cell)
from hwmodels.envm import ENVM_CELLS, envm_cell

AF8 = AdaptivFloatFormat(8, 3)


@pytest.mark.parametrize(("cell", "levels"), [("sram", 2), ("rram_slc", 2), ("stt_mram", 2), ("pcm", 2),
                                              ("fefet", 2), ("rram_mlc2", 4), ("fefet_mlc2", 4), ("rram_mlc3", 8)])
def test_levels_per_cell_type(cell: str, levels: int) -> None:
    assert levels_per_cell(cell) == levels


def test_error_probabilities_and_scale() -> None:
    assert cell_error_prob("sram") == 0.0 and cell_error_prob("rram_mlc2") == 1e-8
    assert cell_error_prob("rram_mlc3") == math.sqrt(1.5e-4 * 6.3e-3)  # 9.721e-4, bit for bit as before
    assert cell_error_prob("fefet_mlc2") == 1e-8  # assumption: ReRAM MLC2's figure
    assert cell_error_prob("rram_mlc3", scale=100) == pytest.approx(0.09721, rel=1e-3)
    assert cell_error_prob("rram_mlc3", scale=1e6) == 1.0  # capped
    assert cell_error_prob("rram_mlc3", overrides={"rram_mlc3": 6.3e-3}) == 6.3e-3


def test_error_probabilities_are_the_hardware_cell_table() -> None:
    # one number, one place: fault injection applies the hardware model's adjacent_level_error_prob
    assert set(CELL_ERROR_PROB) == set(ENVM_CELLS)
    for cell in ENVM_CELLS:
        assert cell_error_prob(cell) == envm_cell(cell).adjacent_level_error_prob
    low, high = envm_cell("rram_mlc3").adjacent_level_error_prob_range
    assert low < CELL_ERROR_PROB["rram_mlc3"] < high


def test_cell_without_probability_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CELL_ERROR_PROB, "fefet_mlc2", float("nan"))
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        cell_error_prob("fefet_mlc2")


def test_zero_error_leaves_codes_unchanged() -> None:
    codes = np.arange(256, dtype=np.int64)
    out, faulty = inject_code_faults(codes, code_bits=8, cell_bits=3, error_prob=0.0, rng=np.random.default_rng(0))
    assert faulty == 0 and np.array_equal(out, codes)


def test_certain_error_on_one_bit_cells_flips_every_bit() -> None:
    codes = np.array([0, 0b1010_0101, 255], dtype=np.int64)
    out, faulty = inject_code_faults(codes, code_bits=8, cell_bits=1, error_prob=1.0, rng=np.random.default_rng(0))
    assert faulty == 24 and out.tolist() == [255, 0b0101_1010, 0]


def test_adjacent_level_error_flips_one_bit_per_cell() -> None:
    # 2 codes x 6 bits = 12 bits = 4 three-bit cells; every cell faulty, each flips one Gray bit
    codes = np.array([0b101_110, 0b011_000], dtype=np.int64)
    out, faulty = inject_code_faults(codes, code_bits=6, cell_bits=3, error_prob=1.0, rng=np.random.default_rng(1))
    diff = out ^ codes
    assert faulty == 4
    for cell in range(4):
        bits = (int(diff[cell // 2]) >> (3 * (cell % 2))) & 0b111
        assert bin(bits).count("1") == 1
    # level 0 (Gray 000) has one neighbour, level 1 (Gray 001): always the lowest bit
    assert int(diff[1]) & 0b111 == 0b001


def test_padding_bits_of_the_last_cell_touch_no_code() -> None:
    codes = np.array([0b1111], dtype=np.int64)  # 4 bits in two 3-bit cells, 2 padding bits
    out, faulty = inject_code_faults(codes, code_bits=4, cell_bits=3, error_prob=1.0, rng=np.random.default_rng(0))
    assert faulty == 2 and 0 <= int(out[0]) < 16


def test_seeded_faults_are_reproducible() -> None:
    codes = np.arange(4096, dtype=np.int64) % 256
    a, na = inject_code_faults(codes, code_bits=8, cell_bits=3, error_prob=0.05, rng=np.random.default_rng(7))
    b, nb = inject_code_faults(codes, code_bits=8, cell_bits=3, error_prob=0.05, rng=np.random.default_rng(7))
    c, _ = inject_code_faults(codes, code_bits=8, cell_bits=3, error_prob=0.05, rng=np.random.default_rng(8))
    assert na == nb and np.array_equal(a, b) and not np.array_equal(a, c)


def test_fault_count_follows_the_binomial_expectation() -> None:
    n_cells, p = 30_000 * 8 // 2, 0.01  # 30,000 8-bit codes in 2-bit cells
    codes = np.zeros(30_000, dtype=np.int64)
    counts = [inject_code_faults(codes, code_bits=8, cell_bits=2, error_prob=p, rng=np.random.default_rng(s))[1]
              for s in range(20)]
    sigma = math.sqrt(n_cells * p * (1 - p))  # 34.4 around 1,200
    assert abs(np.mean(counts) - n_cells * p) < 4 * sigma / math.sqrt(20)
    # a zero-initialised 2-bit cell is at level 0: each fault sets exactly one bit
    out, faulty = inject_code_faults(codes, code_bits=8, cell_bits=2, error_prob=p, rng=np.random.default_rng(0))
    assert sum(bin(int(v)).count("1") for v in out) == faulty


def test_table_faults_keep_values_representable_and_zero_error_is_identity() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(64, 16)
    emb.weight.data = quantize(emb.weight.data, AF8)
    clean = emb.weight.detach().clone()
    assert inject_table_faults({"t": emb}, AF8, cell="rram_mlc3", error_prob=0.0, seed=0) == 0
    assert torch.equal(emb.weight, clean)
    faulty = inject_table_faults({"t": emb}, AF8, cell="rram_mlc3", error_prob=0.2, seed=0)
    n_cells = -(-64 * 16 * 8 // 3)  # 2,731
    assert 0.15 * n_cells < faulty < 0.25 * n_cells
    assert not torch.equal(emb.weight, clean)
    bias = exponent_bias(clean, AF8)
    assert torch.equal(quantize(emb.weight, AF8, bias=bias), emb.weight)
    assert bits_per_cell("rram_mlc3") == 3


def test_weight_faults_hit_stored_values_only_and_shared_matrices_once() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(32, 32)
    w = quantize(lin.weight.data, AF8)
    w[:, ::2] = 0.0  # half the weights pruned
    lin.weight.data = w
    clean = lin.weight.detach().clone()
    # stored sparse: only the 512 non-zero codes sit in cells; a pruned weight stays zero
    faulty = inject_weight_faults({"a": lin, "b": lin}, AF8, cell="rram_mlc3", error_prob=0.3, seed=0, nonzero_only=True)
    n_cells = -(-512 * 8 // 3)  # 1,366: the shared matrix counted once
    assert 0.25 * n_cells < faulty < 0.35 * n_cells
    assert torch.all(lin.weight[:, ::2] == 0) and not torch.equal(lin.weight, clean)
    # stored dense: every code, zeros too
    lin.weight.data = clean.clone()
    inject_weight_faults({"a": lin}, AF8, cell="rram_mlc3", error_prob=0.3, seed=0, nonzero_only=False)
    assert torch.any(lin.weight[:, ::2] != 0)
    # single-level cells take no faults
    lin.weight.data = clean.clone()
    assert inject_weight_faults({"a": lin}, AF8, cell="rram_slc", error_prob=0.0, seed=0, nonzero_only=True) == 0
    assert torch.equal(lin.weight, clean)
