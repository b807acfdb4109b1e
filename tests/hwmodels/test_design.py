"""Struct-of-arrays design batch."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import ENVM_CELLS, CompressionProfile, DesignBatch, HardwareConfig


def _arrays(**overrides):
    base = dict(vmac_lanes=[16, 8], vector_size=16, sram_kb=64.0, envm_cell_index=0, voltage_v=0.8, dvfs=False,
                latency_target_ms=np.nan, node_nm=12, zero_skipping=False, double_buffered=True, encoder_density=1.0,
                embedding_density=1.0, weight_bits=8, weight_exp_bits=3, activation_bits=8, attention_span=np.inf)
    base.update(overrides)
    return base


def test_from_configs_broadcasts_single_config() -> None:
    batch = DesignBatch.from_configs(CompressionProfile(), [HardwareConfig(), HardwareConfig(envm_cell="pcm", sram_kb=128)])
    assert len(batch) == 2
    assert batch.envm_cell_index.tolist() == [ENVM_CELLS.index("rram_mlc2"), ENVM_CELLS.index("pcm")]
    assert batch.weight_bits.tolist() == [8, 8] and np.isnan(batch.latency_target_ms).all()


def test_from_arrays_broadcasts_scalars() -> None:
    batch = DesignBatch(**_arrays())
    assert len(batch) == 2 and batch.sram_kb.tolist() == [64.0, 64.0]


def test_span_zero_is_a_valid_design() -> None:
    # hard span 0: every query attends only itself (dse.compression.span allows it)
    assert DesignBatch(**_arrays(attention_span=0.0)).attention_span.tolist() == [0.0, 0.0]
    assert CompressionProfile(attention_span=0).attention_span == 0


@pytest.mark.parametrize("overrides, message", [
    ({"sram_kb": [-1.0, 64.0]}, "sram_kb must be a positive number of KiB"),
    ({"voltage_v": 0.3}, "voltage must be within"),
    ({"dvfs": True}, "dvfs=True needs a target"),
    ({"envm_cell_index": 99}, "ENVM_CELLS"),
    ({"weight_bits": 4, "weight_exp_bits": 4}, "weight_exp_bits must be < weight_bits"),
    ({"vector_size": [16, 16, 16]}, "length 1 or"),
    ({"attention_span": -1.0}, "attention_span must be >= 0"),
    ({"attention_span": np.nan}, "attention_span must be >= 0"),
])
def test_bad_arrays_raise(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        DesignBatch(**_arrays(**overrides))


def test_mismatched_config_lists_raise() -> None:
    with pytest.raises(ValueError, match="lengths must match"):
        DesignBatch.from_configs([CompressionProfile()] * 2, [HardwareConfig()] * 3)
