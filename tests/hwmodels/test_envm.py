"""eNVM cell library (hw-constants §4, V4)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hwmodels import ENVM_CELLS, EnvmCell, envm_cell
from hwmodels.envm import envm_arrays, read_cost


def test_cell_set() -> None:
    assert set(ENVM_CELLS) == {"sram", "rram_slc", "rram_mlc2", "rram_mlc3", "stt_mram", "pcm", "fefet", "fefet_mlc2"}
    for name in ENVM_CELLS:
        cell = envm_cell(name)
        assert cell.bits_per_cell in (1, 2, 3)
        assert cell.endurance_cycles > 0


@pytest.mark.validation
def test_validation_v4_rram_lookup_exact() -> None:
    # V4: 1 MB: 4.028 pJ read, 53.188 pJ write (0.83 pJ/bit), 0.775 ns, 10.64 ns, 3.432 mW, 0.2467 mm2
    one = envm_cell("rram_slc").array(1.0)
    assert one.read_energy_pj_per_access[0] == pytest.approx(4.028)
    assert one.read_latency_ns[0] == pytest.approx(0.775)
    assert one.write_latency_ns[0] == pytest.approx(10.64)
    assert one.leakage_mw[0] == pytest.approx(3.432)
    assert one.area_mm2[0] == pytest.approx(0.2467)
    assert one.write_energy_pj_per_bit[0] * 64 == pytest.approx(53.188, rel=0.01)
    # 2 MB: 6.178 pJ, 0.793 ns, 11.98 mW, 0.5258 mm2
    two = envm_cell("rram_slc").array(2.0)
    assert two.read_energy_pj_per_access[0] == pytest.approx(6.178)
    assert two.read_latency_ns[0] == pytest.approx(0.793)
    assert two.leakage_mw[0] == pytest.approx(11.98)
    assert two.area_mm2[0] == pytest.approx(0.5258)


# V4 interpolation (hw-constants §8, tolerance ±20% as set there): the model's own interpolation
# (EnvmCell.array) with NVMExplorer's published 2 MB ReadEDP array held out of its data, against
# that published array. Between 1 MB [P] and the 4 MB NVSim rerun [R] quantities go log-log in
# capacity (energy, area, leakage) or linear in log capacity (latency); with only the 1 MB point
# left, energy extrapolates as C^0.5.
V4_PUBLISHED_2MB = {"read_energy_pj_per_access": 6.178, "read_latency_ns": 0.793, "leakage_mw": 11.98,
                    "area_mm2": 0.5258}


def _rram_slc_without(drop) -> EnvmCell:  # noqa: ANN001
    cell = envm_cell("rram_slc")
    return dataclasses.replace(cell, points=tuple(p for p in cell.points if not drop(p.data_capacity_mb)))


@pytest.mark.validation
@pytest.mark.parametrize(("field", "drop"), [
    ("read_energy_pj_per_access", lambda mb: mb == 2.0),   # model 5.79 pJ (-6%)
    ("area_mm2", lambda mb: mb == 2.0),                    # model 0.493 mm2 (-6%)
    ("read_energy_pj_per_access", lambda mb: mb > 1.0),    # C^0.5 from 1 MB: model 5.70 pJ (-8%)
    pytest.param("read_latency_ns", lambda mb: mb == 2.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model interpolates 0.958 ns at 2 MB, NVMExplorer 0.793 ns (+21%)")),
    pytest.param("leakage_mw", lambda mb: mb == 2.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model interpolates 6.86 mW at 2 MB, NVMExplorer 11.98 mW (-43%)")),
], ids=["energy", "area", "energy-extrapolated", "latency", "leakage"])
def test_validation_v4_interpolation_against_held_out_2mb(field: str, drop) -> None:  # noqa: ANN001
    cell = _rram_slc_without(drop)
    assert all(p.data_capacity_mb != 2.0 for p in cell.points)
    model = float(getattr(cell.array(2.0), field)[0])
    assert model == pytest.approx(V4_PUBLISHED_2MB[field], rel=0.20)


def test_interpolation_and_extrapolation_hand_cases() -> None:
    # the full data: 3 MB lies between the 2 MB (6.178) and 4 MB (8.33) points; 16 MB beyond the
    # data: C^0.5 from 8 MB, 11.86 * sqrt(2) = 16.77
    three = envm_cell("rram_slc").array(3.0).read_energy_pj_per_access[0]
    assert 6.178 < three < 8.33
    assert envm_cell("rram_slc").array(16.0).read_energy_pj_per_access[0] == pytest.approx(16.77, rel=1e-3)


# V4 ALBERT embedding traffic: NVMExplorer's ALBERTw_emb row (AE_dnn_output RRAM CSV; hw-constants §8):
# 3.84e6 reads per inference from a 2 MB array cost 42.81 uJ and 3.259 ms of read time. The model's
# read_cost for the same reads and capacity; tolerance ±20% (V4's band for anything but an exact
# lookup). NVMExplorer's row is its WriteLatency-optimised array (11.149 pJ, 0.849 ns per read); the
# model carries only ReadEDP arrays (6.178 pJ, 0.793 ns), so its energy misses.
@pytest.mark.validation
@pytest.mark.parametrize("quantity", [
    pytest.param("energy_uj", marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model gives 23.72 uJ for 3.84e6 reads of a 2 MB ReRAM SLC array, NVMExplorer 42.81 uJ (-45%)")),
    "time_ms",  # model 3.045 ms (-6.6%)
])
def test_validation_v4_albert_embedding_traffic(quantity: str) -> None:
    energy_pj, time_ns = read_cost("rram_slc", 2.0, 3.84e6)
    model = {"energy_uj": energy_pj * 1e-6, "time_ms": time_ns * 1e-6}[quantity]
    published = {"energy_uj": 42.81, "time_ms": 3.259}[quantity]
    assert model == pytest.approx(published, rel=0.20)


def test_denser_cells_have_smaller_area() -> None:
    area = {name: envm_cell(name).array(2.0).area_mm2[0] for name in ("sram", "rram_slc", "rram_mlc2", "rram_mlc3")}
    assert area["sram"] > area["rram_slc"] > area["rram_mlc2"] > area["rram_mlc3"]


def test_mlc_read_energy_per_bit_hand_case() -> None:
    # MLC2 4 MB: 6.09 pJ per 128-bit access = 0.0476 pJ/bit (hw-constants §4.1: 0.048)
    assert envm_cell("rram_mlc2").array(4.0).read_energy_pj_per_bit[0] == pytest.approx(0.0476, rel=1e-2)


def test_mlc_error_probabilities() -> None:
    # edgebert.md §1.9 (NVMExplorer nvmFI MLC-RRAM level model): ~1e-8 at 2 bits/cell, 1.5e-4 ... 6.3e-3
    # at 3 bits/cell, of which the table keeps the geometric mean (the value fault injection applies)
    assert envm_cell("rram_mlc2").adjacent_level_error_prob == pytest.approx(1e-8)
    low, high = envm_cell("rram_mlc3").adjacent_level_error_prob_range
    assert (low, high) == (pytest.approx(1.5e-4), pytest.approx(6.3e-3))
    assert envm_cell("rram_mlc3").adjacent_level_error_prob == math.sqrt(low * high)  # 9.72e-4
    assert envm_cell("fefet_mlc2").adjacent_level_error_prob == pytest.approx(1e-8)  # assumed (no source)
    for name in ENVM_CELLS:
        cell = envm_cell(name)
        assert 0.0 <= cell.adjacent_level_error_prob <= 1.0
        assert (cell.adjacent_level_error_prob == 0.0) == (cell.bits_per_cell == 1)


def test_fefet_slc_invalid_above_1mb() -> None:
    arr = envm_cell("fefet").array([0.5, 1.0, 1.5, 4.0])
    assert arr.valid.tolist() == [True, True, False, False]
    assert envm_cell("fefet").max_valid_capacity_mb == 1.0
    assert envm_cell("fefet_mlc2").array(3.0).valid[0]


def test_vectorised_lookup_matches_scalar() -> None:
    idx = np.array([ENVM_CELLS.index("pcm"), ENVM_CELLS.index("stt_mram")])
    arr = envm_arrays(idx, np.array([1.5, 3.0]))
    assert arr.read_energy_pj_per_access[0] == pytest.approx(envm_cell("pcm").array(1.5).read_energy_pj_per_access[0])
    assert arr.area_mm2[1] == pytest.approx(envm_cell("stt_mram").array(3.0).area_mm2[0])


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="unknown eNVM cell 'dram'"):
        envm_cell("dram")
    with pytest.raises(ValueError, match="capacity must be positive"):
        envm_cell("pcm").array(-1.0)
