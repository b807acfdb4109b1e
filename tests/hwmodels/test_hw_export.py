"""Accelerator parameter export in EdgeBERT's vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwmodels import (CompressionProfile, HardwareConfig, ModelShape, accelerator_parameter_file, adaptivfloat_bias,
                      fit_exit_predictor)


def test_default_buffers_match_edgebert(albert_base: ModelShape) -> None:
    params = accelerator_parameter_file(HardwareConfig(), CompressionProfile(), albert_base)
    # 64 KiB / 16 banks = 4096 entries; mask 4096 x 16 bit; aux 16 x 256
    assert params["buffers"]["input_buffer"] == {"banks": 16, "entries_per_bank": 4096, "word_bits": 8}
    assert params["buffers"]["mask_buffer"] == {"entries": 4096, "word_bits": 16}
    assert params["buffers"]["aux_buffer"]["entries_per_bank"] == 256
    assert params["adaptivfloat"]["weight"] == {"word_bits": 8, "exp_bits": 3, "mantissa_bits": 4, "bias_bits": 3,
                                                 "exponent_offset": -10}
    assert params["dvfs"]["lut"] == []
    json.dumps(params)  # plain JSON types


def test_adaptivfloat_bias_hand_cases() -> None:
    # max 0.5 -> E_max = -1; bias = -1 - 7 + 10 = 2 ; max 3.0 -> E_max = 1 -> 4 ; huge values clip at 7
    assert adaptivfloat_bias(0.5, 3) == 2
    assert adaptivfloat_bias(3.0, 3) == 4
    assert adaptivfloat_bias(1e6, 3) == 7 and adaptivfloat_bias(1e-9, 3) == 0
    with pytest.raises(ValueError, match="positive finite"):
        adaptivfloat_bias(0.0, 3)


def test_dvfs_lut_rows(albert_base: ModelShape) -> None:
    rng = np.random.default_rng(0)
    entropy = rng.random(400)
    exits = np.clip(np.round(1 + entropy * 11), 1, 12).astype(int)
    predictor = fit_exit_predictor(entropy, exits, n_bins=8)
    hw = HardwareConfig(dvfs=True, latency_target_ms=50.0)
    params = accelerator_parameter_file(hw, CompressionProfile(), albert_base, predictor,
                                        tensor_max_abs={"query": 0.5})
    lut = params["dvfs"]["lut"]
    assert len(lut) == 8 and params["adaptivfloat"]["per_tensor_bias"] == {"query": 2}
    volts = [row["voltage_v"] for row in lut]
    assert volts == sorted(volts)  # later predicted exits need higher V
    assert lut[0]["ldo_code"] == round((volts[0] - 0.5) / 0.025)
    assert lut[-1]["entropy_high"] is None and lut[0]["entropy_low"] == 0.0
    assert all(0 <= row["dco_code"] <= 63 for row in lut)
    json.dumps(params)


def test_too_many_bins_raise(albert_base: ModelShape) -> None:
    predictor = fit_exit_predictor(np.linspace(0, 1, 100), np.ones(100, dtype=int), n_bins=32)
    with pytest.raises(ValueError, match="DVFS LUT holds 16"):
        accelerator_parameter_file(HardwareConfig(), CompressionProfile(), albert_base, predictor)
