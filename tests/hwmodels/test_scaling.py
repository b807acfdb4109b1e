"""Stillmaker node scaling and voltage scaling (hw-constants §5.1, V2)."""

from __future__ import annotations

import pytest

from hwmodels import scaling


def test_stillmaker_poly_hand_case() -> None:
    # 45nm: 1.103*0.64 - 0.362*0.8 + 0.2767 = 0.70592 - 0.2896 + 0.2767 = 0.69302
    assert scaling.stillmaker_energy_poly(45, 0.8) == pytest.approx(0.69302, rel=1e-6)
    # 12nm = midpoint of 14nm (0.096222) and 10nm (0.081614) = 0.088918
    assert scaling.stillmaker_energy_poly(12, 0.8) == pytest.approx(0.088918, rel=1e-5)


@pytest.mark.validation
def test_validation_v2_stillmaker_factors() -> None:
    # V2: energy 45->12nm at 0.8V = 0.1283; 45nm/0.9V -> 12nm/0.8V = 0.1053; area 45->12nm = 0.135 (±1%)
    assert scaling.energy_scale(45, 0.8, 12, 0.8) == pytest.approx(0.1283, rel=0.01)
    assert scaling.energy_scale(45, 0.9, 12, 0.8) == pytest.approx(0.1053, rel=0.01)
    assert scaling.area_scale(45, 12) == pytest.approx(0.135, rel=0.01)


def test_derived_factors_of_section_5_1() -> None:
    # hw-constants §5.1 derived: 22->12 = 0.436, 40->12 = 0.148 (energy); 40->12 = 0.198, 22->12 = 0.59 (area)
    assert scaling.energy_scale(22, 0.8, 12, 0.8) == pytest.approx(0.436, rel=0.01)
    assert scaling.energy_scale(40, 0.8, 12, 0.8) == pytest.approx(0.148, rel=0.01)
    assert scaling.area_scale(40, 12) == pytest.approx(0.198, rel=0.01)
    assert scaling.area_scale(22, 12) == pytest.approx(0.59, rel=0.01)


def test_reference_node_factors_are_one() -> None:
    assert scaling.node_energy_factor(12) == pytest.approx(1.0)
    assert scaling.node_area_factor(12) == pytest.approx(1.0)
    assert scaling.node_area_factor(16) > 1.0 > scaling.node_area_factor(7)


def test_voltage_factors_hand_case() -> None:
    # (0.5/0.8)^2 = 0.390625 ; (0.5/0.8)^3 = 0.244140625
    assert scaling.dynamic_voltage_factor(0.5) == pytest.approx(0.390625)
    assert scaling.leakage_voltage_factor(0.5) == pytest.approx(0.244140625)


def test_node_outside_table_raises() -> None:
    with pytest.raises(ValueError, match="technology node"):
        scaling.node_energy_factor(3)
