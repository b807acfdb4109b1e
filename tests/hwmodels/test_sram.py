"""SRAM energy / area / leakage by capacity (hw-constants §3.4, V1)."""

from __future__ import annotations

import pytest

from hwmodels import sram, techdata


@pytest.mark.validation
def test_validation_v1_horowitz_sram_law() -> None:
    # V1: 64-bit read at 8 KB / 32 KB / 1 MB = 10 / 20 / 100 pJ at 45nm, law a=3.80, b=0.473, ±5%
    a = techdata.number("sram", "horowitz_fit_45nm_0v9", "read_pj_per_access_64b_at_1kb")
    b = techdata.number("sram", "horowitz_fit_45nm_0v9", "read_capacity_exponent")
    for kb, expected in ((8, 10.0), (32, 20.0), (1024, 100.0)):
        assert sram.power_law_read_energy_pj(kb, a, b) == pytest.approx(expected, rel=0.05)


def test_read_energy_hand_cases() -> None:
    # 0.30 * sqrt(64) = 2.4 pJ ; 0.30 * sqrt(512) = 6.79 pJ (hw-constants §3.4 examples)
    assert sram.read_energy_pj(64) == pytest.approx(2.4)
    assert sram.read_energy_pj(512) == pytest.approx(6.79, rel=0.01)
    # 16-bit port: 2.4 * (0.3 + 0.7*16/64) = 2.4 * 0.475 = 1.14
    assert sram.read_energy_pj(64, width_bits=16) == pytest.approx(1.14)
    # 0.5 V: 2.4 * 0.390625 = 0.9375
    assert sram.read_energy_pj(64, voltage_v=0.5) == pytest.approx(0.9375)
    assert sram.write_energy_pj(64) == pytest.approx(2.4)


def test_area_and_leakage_hand_cases() -> None:
    # 1 MiB = 8388608 bits * 0.06 um2 = 0.503 mm2 ; leakage 8388608 * 0.5 nW = 4.19 mW
    assert sram.area_mm2(1024) == pytest.approx(0.5033, rel=1e-3)
    assert sram.leakage_mw(1024) == pytest.approx(4.194, rel=1e-3)
    # at 0.5 V: * (0.5/0.8)^3 = 0.244 -> 1.024 mW
    assert sram.leakage_mw(1024, voltage_v=0.5) == pytest.approx(1.024, rel=1e-3)
    assert sram.leakage_mw(1024, nw_per_bit=0.05) == pytest.approx(0.4194, rel=1e-3)
    # access time 0.16 * 64^0.35 = 0.687 ns
    assert sram.access_time_ns(64) == pytest.approx(0.687, rel=1e-2)


@pytest.mark.parametrize("bad", [-1.0, 0.0])
def test_bad_capacity_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="SRAM capacity must be a positive"):
        sram.read_energy_pj(bad)
