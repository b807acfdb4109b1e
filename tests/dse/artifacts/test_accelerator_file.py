"""The exported accelerator file describes the design it came from: loading it back gives the
same hardware, compression profile and DVFS table (so re-costing it gives the trial's cost)."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import (CompressionProfile, HardwareConfig, ModelShape, accelerator_parameter_file,
                      design_from_parameter_file, evaluate_hardware, fit_exit_predictor)


@pytest.mark.parametrize("choices", [{}, {"sparse_format": "relative_index", "weight_store": "envm", "dvfs_layer1": "previous"},
                                     {"sparse_format": "dense", "weight_store": "dram", "dvfs_layer1": "min"}])
def test_an_accelerator_file_loads_back_to_its_design(choices: dict) -> None:
    shape = ModelShape(num_layers=4, hidden_size=64, intermediate_size=128, num_heads=4, embedding_size=64,
                       vocab_size=100, max_positions=64, type_vocab_size=2, num_labels=2, shared_layers=False)
    hardware = HardwareConfig(vmac_lanes=8, vector_size=16, sram_kb=96.0, envm_cell="pcm", voltage_v=0.7,
                              dvfs=True, latency_target_ms=0.5, **choices)
    profile = CompressionProfile(encoder_density=0.4, embedding_density=0.7, weight_bits=6, weight_exp_bits=2,
                                 activation_bits=10, attention_span=13)
    rng = np.random.default_rng(0)
    entropy = rng.uniform(0, 0.7, 300)
    predictor = fit_exit_predictor(entropy, np.clip((entropy * 6).astype(int) + 1, 1, 4))
    params = accelerator_parameter_file(hardware, profile, shape, predictor)
    hw2, profile2, predictor2 = design_from_parameter_file(params)
    assert hw2 == hardware and profile2 == profile
    probe = rng.uniform(0, 0.8, 500)
    np.testing.assert_array_equal(predictor2.predict(probe), predictor.predict(probe))
    tokens, exits = rng.integers(5, 60, 50), rng.integers(1, 5, 50)
    first = evaluate_hardware(shape, tokens=tokens, exit_layers=exits, compression=profile, hardware=hardware,
                              predicted_exit_layers=predictor.predict(entropy[:50]))
    again = evaluate_hardware(shape, tokens=tokens, exit_layers=exits, compression=profile2, hardware=hw2,
                              predicted_exit_layers=predictor2.predict(entropy[:50]))
    np.testing.assert_array_equal(again.energy_pj, first.energy_pj)
    np.testing.assert_array_equal(again.latency_ns, first.latency_ns)


def test_a_file_from_before_the_storage_and_dvfs_choices_loads_with_their_defaults() -> None:
    shape = ModelShape(num_layers=2, hidden_size=32, intermediate_size=64, num_heads=4, embedding_size=32,
                       vocab_size=50, max_positions=32, type_vocab_size=2, num_labels=2, shared_layers=False)
    params = accelerator_parameter_file(HardwareConfig(), CompressionProfile(), shape)
    del params["weight_store"], params["dvfs"]["layer1_policy"]
    hw, _, _ = design_from_parameter_file(params)
    assert (hw.sparse_format, hw.weight_store, hw.dvfs_layer1) == ("bitmask", "sram", "nominal")
