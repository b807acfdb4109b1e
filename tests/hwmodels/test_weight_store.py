"""Where the weights live (``weight_store``): the SRAM buffer, the eNVM array beside the embeddings,
or DRAM; energy, latency, area and validity of each."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import CompressionProfile, HardwareConfig, ModelShape, evaluate_hardware
from hwmodels.envm import MIB, envm_cell

TOKENS = np.array([12, 30, 64, 20])
EXITS = np.array([1, 6, 3, 2])


def _run(shape: ModelShape, **hw):  # noqa: ANN003, ANN202
    return evaluate_hardware(shape, tokens=TOKENS, exit_layers=EXITS, compression=CompressionProfile(encoder_density=0.5),
                             hardware=HardwareConfig(**hw))


def test_weights_in_envm_need_no_dram_and_grow_the_array(minilm: ModelShape) -> None:
    sram = _run(minilm)  # 64 KiB: the weights stream from DRAM
    envm = _run(minilm, weight_store="envm")
    assert not sram.weights_fit_in_sram and np.all(sram.energy_breakdown_pj["dram"] > 0)
    assert np.all(envm.energy_breakdown_pj["dram"] == 0.0)  # fully on chip
    assert not envm.weights_fit_in_sram
    # the array now holds embeddings and weights: larger, and read on every executed layer
    assert envm.area_breakdown_mm2["envm"] > sram.area_breakdown_mm2["envm"]
    assert envm.area_mm2 > sram.area_mm2
    assert np.all(envm.energy_breakdown_pj["envm"] > sram.energy_breakdown_pj["envm"])
    cell = envm_cell("rram_mlc2")
    array = cell.array((envm.embedding_storage_bytes + envm.weight_storage_bytes) / MIB)
    assert envm.area_breakdown_mm2["envm"] == pytest.approx(float(array.area_mm2[0]))
    # storage itself does not move: memory is the same bytes
    assert envm.memory_bytes == sram.memory_bytes
    # the weights are read again on every executed layer: eNVM energy grows linearly with the exit layer
    same = evaluate_hardware(minilm, tokens=np.full(3, 20), exit_layers=np.array([1, 2, 3]),
                             compression=CompressionProfile(), hardware=HardwareConfig(weight_store="envm"))
    e = same.energy_breakdown_pj["envm"]
    assert e[1] - e[0] > 0 and e[2] - e[0] == pytest.approx(2 * (e[1] - e[0]))


def test_envm_weights_are_read_at_the_cell_latency(minilm: ModelShape) -> None:
    # single-buffered: weight reads add to compute time, and slower cells take longer
    fast = _run(minilm, weight_store="envm", envm_cell="rram_mlc2", double_buffered=False)
    base = _run(minilm, double_buffered=False, sram_kb=16384.0)  # resident weights: no weight reads
    assert np.all(fast.latency_ns > base.latency_ns)


def test_dram_store_streams_even_when_the_weights_would_fit(minilm: ModelShape) -> None:
    big = _run(minilm, sram_kb=16384.0)
    dram = _run(minilm, sram_kb=16384.0, weight_store="dram")
    assert big.weights_fit_in_sram and np.all(big.energy_breakdown_pj["dram"] == 0.0)
    assert not dram.weights_fit_in_sram and np.all(dram.energy_breakdown_pj["dram"] > 0)
    assert np.all(dram.energy_pj > big.energy_pj)
    # where the weights never fit, sram and dram are the same design
    small, small_dram = _run(minilm), _run(minilm, weight_store="dram")
    assert np.array_equal(small.energy_pj, small_dram.energy_pj)


def test_envm_capacity_limits_apply_to_weights_too(minilm: ModelShape) -> None:
    # FeFET SLC has no valid array above 1 MiB: embeddings alone already exceed it at 8 bits
    bad = _run(minilm, weight_store="envm", envm_cell="fefet")
    assert not bad.valid and "embeddings and weights" in (bad.invalid_reason or "")


def test_albert_weights_in_mlc_envm(albert_base: ModelShape) -> None:
    # ALBERT's one shared layer (7 M weights) fits comfortably: no DRAM, all on chip
    hw = evaluate_hardware(albert_base, tokens=TOKENS, exit_layers=EXITS, compression=CompressionProfile(),
                           hardware=HardwareConfig(weight_store="envm", envm_cell="rram_mlc3"))
    assert hw.valid and np.all(hw.energy_breakdown_pj["dram"] == 0.0)
