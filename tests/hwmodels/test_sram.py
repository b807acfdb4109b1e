"""SRAM energy / area / leakage by capacity (hw-constants §3.4, V1)."""

from __future__ import annotations

import pytest

from hwmodels import sram


# V1 (hw-constants §8): the model's own SRAM read law (sram.read_energy_pj: 0.30·C^0.5 pJ at 12nm/0.8V,
# taken to 45nm with its Stillmaker node factor and to 0.9 V with its V² rule) against Horowitz
# ISSCC'14's 64-bit reads at 45nm/0.9V. Tolerance ±5%, the one hw-constants §8 sets for V1. The
# model misses: its k = 0.30 pJ sits between the CACTI-derived 0.20-0.34 and the Horowitz-derived 0.40
# (hw-constants §3.4), and its exponent 0.5 is CACTI's, not Horowitz's 0.47. (The 32 KB and 1 MB
# entries are tagged [U] in hw-constants §2.1: commonly reproduced, not in the cross-check sources.)
@pytest.mark.validation
@pytest.mark.parametrize(("capacity_kb", "published_pj"), [
    pytest.param(8, 10.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model gives 8.37 pJ at 45nm/0.9V for an 8 KB 64-bit read, Horowitz 10 pJ (-16%)")),
    pytest.param(32, 20.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model gives 16.74 pJ at 45nm/0.9V for a 32 KB 64-bit read, Horowitz 20 pJ (-16%)")),
    pytest.param(1024, 100.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model gives 94.70 pJ at 45nm/0.9V for a 1 MB 64-bit read, Horowitz 100 pJ (-5.3%)")),
])
def test_validation_v1_horowitz_sram_reads(capacity_kb: int, published_pj: float) -> None:
    model = sram.read_energy_pj(capacity_kb, 64, node_nm=45, voltage_v=0.9)
    assert float(model) == pytest.approx(published_pj, rel=0.05)


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
