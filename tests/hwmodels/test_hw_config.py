"""Config validation: bad inputs raise ValueError (pydantic ValidationError is a ValueError)."""

from __future__ import annotations

import pytest

from hwmodels import CompressionProfile, HardwareConfig


def test_defaults() -> None:
    hw, comp = HardwareConfig(), CompressionProfile()
    assert (hw.vmac_lanes, hw.vector_size, hw.sram_kb, hw.envm_cell, hw.voltage_v, hw.node_nm) == (16, 16, 64.0, "rram_mlc2", 0.8, 12)
    assert (comp.weight_bits, comp.weight_exp_bits, comp.activation_bits, comp.attention_span) == (8, 3, 8, None)


@pytest.mark.parametrize("kwargs, message", [
    ({"envm_cell": "flash"}, "unknown eNVM cell 'flash'"),
    ({"sram_kb": -1.0}, "greater than 0"),
    ({"voltage_v": 0.9}, "voltage must be within 0.50..0.80 V"),
    ({"dvfs": True}, "dvfs=True needs latency_target_ms"),
    ({"node_nm": 3}, "node_nm must be within"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_bad_hardware_config_raises(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        HardwareConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"encoder_density": 0.0}, "greater than 0"),
    ({"embedding_density": 1.5}, "less than or equal to 1"),
    ({"weight_bits": 3}, "greater than or equal to 4"),
    ({"weight_bits": 4, "weight_exp_bits": 4}, r"weight_exp_bits \(4\) must be < weight_bits \(4\)"),
    ({"attention_span": -1}, "greater than or equal to 0"),
])
def test_bad_compression_profile_raises(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        CompressionProfile(**kwargs)


def test_configs_are_frozen() -> None:
    with pytest.raises(ValueError):
        HardwareConfig().sram_kb = 1.0  # type: ignore[misc]
