"""ModelShape counts (hw-constants §7.1)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hwmodels import ModelShape
from hwmodels.workload import attended_pairs


def test_albert_base_counts(albert_base: ModelShape) -> None:
    # per layer at S=128: 4*128*768^2 + 2*128*128*768 + 2*128*768*3072 = 301,989,888 + 25,165,824 + 603,979,776
    assert albert_base.encoder_macs_per_layer(128) == 931_135_488
    # unique weights 4*768^2 + 2*768*3072 = 7,077,888 (one shared layer)
    assert albert_base.unique_encoder_weights == 7_077_888
    # embedding tables (30000 + 512 + 2) * 128 = 3,905,792 (word table alone = 3.84 M as in NVMExplorer)
    assert albert_base.embedding_entries == 3_905_792
    assert albert_base.projection_weights == 128 * 768
    assert albert_base.offramp_weights_per_layer == 768 * 768 + 768 * 2


def test_attention_span_reduces_macs(albert_base: ModelShape) -> None:
    # span 32 (|i - j| <= 32): pairs = 128*65 - 32*33 = 7,264 instead of 128^2 = 16,384, so the
    # QK^T + AV MACs become 2*7,264*768 = 11,157,504 instead of 25,165,824
    assert albert_base.encoder_macs_per_layer(128, 32) == 931_135_488 - 25_165_824 + 11_157_504


@pytest.mark.parametrize(("tokens", "span", "pairs"), [
    (1, 0, 1), (5, 0, 5),             # span 0: each query attends only itself
    (5, 1, 13),                       # 2 + 3 + 3 + 3 + 2
    (5, 4, 25), (5, 9, 25),           # span >= S - 1: every pair
    (64, 16, 1_840),                  # 64*33 - 16*17
    (64, None, 4_096), (64, float("inf"), 4_096),
])
def test_attended_pairs_hand_cases(tokens: int, span, pairs: int) -> None:
    assert attended_pairs(tokens, span) == pairs
    assert attended_pairs(np.array([tokens, tokens]), span).tolist() == [pairs, pairs]


def test_attended_pairs_rejects_negative_span() -> None:
    with pytest.raises(ValueError, match="attention_span must be >= 0"):
        attended_pairs(8, -1)


def test_from_hf_config_duck_typed() -> None:
    albert_cfg = SimpleNamespace(model_type="albert", embedding_size=128, hidden_size=768, num_hidden_layers=12,
                                 intermediate_size=3072, num_attention_heads=12, vocab_size=30000,
                                 max_position_embeddings=512, type_vocab_size=2)
    shape = ModelShape.from_hf_config(albert_cfg, num_labels=3)
    assert shape.shared_layers and shape.embedding_size == 128 and shape.num_labels == 3
    bert_cfg = SimpleNamespace(model_type="bert", hidden_size=384, num_hidden_layers=6, intermediate_size=1536,
                               num_attention_heads=12, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2)
    bert = ModelShape.from_hf_config(bert_cfg, num_labels=2)
    assert not bert.shared_layers and bert.embedding_size == 384 and not bert.has_embedding_projection


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        ModelShape(0, 768, 3072, 12, 768, 30522, 512, 2, 2, False)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        ModelShape(12, 770, 3072, 12, 770, 30522, 512, 2, 2, False)


def test_offramp_head_and_pooling(albert_base: ModelShape) -> None:
    import dataclasses

    import numpy as np

    from hwmodels import CompressionProfile, HardwareConfig, accelerator_parameter_file, evaluate_hardware

    linear = dataclasses.replace(albert_base, offramp_head="linear")
    assert linear.offramp_weights_per_layer == 768 * 2  # no H x H pooler
    assert albert_base.offramp_weights - linear.offramp_weights == 12 * 768 * 768  # ALBERT-base: 12 x 0.59 M
    mean = dataclasses.replace(linear, offramp_pooling="mean")

    def run(shape: ModelShape):  # noqa: ANN202
        return evaluate_hardware(shape, tokens=np.array([32, 128]), exit_layers=np.array([3, 12]),
                                 compression=CompressionProfile(), hardware=HardwareConfig(sram_kb=65536))

    pooler_r, linear_r, mean_r = run(albert_base), run(linear), run(mean)
    assert linear_r.weight_storage_bytes == pooler_r.weight_storage_bytes - 12 * 768 * 768 * 8 / 8
    assert np.all(linear_r.latency_ns < pooler_r.latency_ns) and np.all(linear_r.energy_pj < pooler_r.energy_pj)
    assert np.all(mean_r.latency_ns > linear_r.latency_ns)  # the token sum: S * H adds per executed layer
    assert np.all(mean_r.energy_pj - linear_r.energy_pj < pooler_r.energy_pj - linear_r.energy_pj)
    params = accelerator_parameter_file(HardwareConfig(), CompressionProfile(), mean)
    assert params["off_ramps"] == {"head": "linear", "pooling": "mean", "weights_per_layer": 768 * 2}
    cfg = SimpleNamespace(model_type="bert", hidden_size=384, num_hidden_layers=6, intermediate_size=1536,
                          num_attention_heads=12, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2)
    shape = ModelShape.from_hf_config(cfg, num_labels=2, offramp_head="linear", offramp_pooling="mean")
    assert (shape.offramp_head, shape.offramp_pooling) == ("linear", "mean")
    with pytest.raises(ValueError, match="offramp_head"):
        dataclasses.replace(albert_base, offramp_head="mlp")
    with pytest.raises(ValueError, match="offramp_pooling"):
        dataclasses.replace(albert_base, offramp_pooling="max")
