"""eNVM cell library (hw-constants §4, V4)."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import ENVM_CELLS, envm_cell
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


@pytest.mark.validation
def test_validation_v4_interpolation_within_20_percent() -> None:
    # C^0.5 from 1 MB to 2 MB: 4.028 * sqrt(2) = 5.70 vs 6.178 published (-8%)
    assert 4.028 * np.sqrt(2.0) == pytest.approx(6.178, rel=0.20)
    # log-log between the 1 MB and 4 MB points: sqrt(4.028 * 8.33) = 5.79 vs 6.178 (-6%)
    mid = np.exp(np.interp(np.log(2.0), np.log([1.0, 4.0]), np.log([4.028, 8.33])))
    assert mid == pytest.approx(6.178, rel=0.20)
    # the model between published points: 3 MB lies between 6.178 and 8.33
    three = envm_cell("rram_slc").array(3.0).read_energy_pj_per_access[0]
    assert 6.178 < three < 8.33
    # beyond the data (16 MB): C^0.5 from 8 MB: 11.86 * sqrt(2) = 16.77
    assert envm_cell("rram_slc").array(16.0).read_energy_pj_per_access[0] == pytest.approx(16.77, rel=1e-3)


@pytest.mark.validation
def test_validation_v4_albert_embedding_traffic() -> None:
    # 2 MB WriteLatency-optimised array: 3.84e6 reads x 11.149 pJ = 42.81 uJ ; x 0.849 ns = 3.259 ms
    reads = 3.84e6
    assert reads * 11.149e-6 == pytest.approx(42.81, rel=1e-3)
    assert reads * 0.849e-6 == pytest.approx(3.260, rel=1e-3)
    # the model's ReadEDP 2 MB array: 3.84e6 x 6.178 pJ = 23.72 uJ, 3.84e6 x 0.793 ns = 3.045 ms
    energy_pj, time_ns = read_cost("rram_slc", 2.0, reads)
    assert energy_pj * 1e-6 == pytest.approx(23.72, rel=1e-3)
    assert time_ns * 1e-6 == pytest.approx(3.045, rel=1e-3)


def test_denser_cells_have_smaller_area() -> None:
    area = {name: envm_cell(name).array(2.0).area_mm2[0] for name in ("sram", "rram_slc", "rram_mlc2", "rram_mlc3")}
    assert area["sram"] > area["rram_slc"] > area["rram_mlc2"] > area["rram_mlc3"]


def test_mlc_read_energy_per_bit_hand_case() -> None:
    # MLC2 4 MB: 6.09 pJ per 128-bit access = 0.0476 pJ/bit (hw-constants §4.1: 0.048)
    assert envm_cell("rram_mlc2").array(4.0).read_energy_pj_per_bit[0] == pytest.approx(0.0476, rel=1e-2)


def test_mlc_error_probabilities() -> None:
    assert envm_cell("rram_mlc2").adjacent_level_error_prob == pytest.approx(1e-8)
    low, high = envm_cell("rram_mlc3").adjacent_level_error_prob_range
    assert (low, high) == (pytest.approx(1.5e-4), pytest.approx(6.3e-3))
    assert envm_cell("rram_slc").adjacent_level_error_prob == 0.0


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
