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


def _mobilebert_base_config() -> SimpleNamespace:
    # google/mobilebert-uncased: H=512, bottleneck B=128, E=128 (trigram), F=512, 4 FFNs, 24 layers
    return SimpleNamespace(model_type="mobilebert", hidden_size=512, num_hidden_layers=24, intermediate_size=512,
                           num_attention_heads=4, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2,
                           embedding_size=128, intra_bottleneck_size=128, use_bottleneck=True,
                           use_bottleneck_attention=False, key_query_shared_bottleneck=True,
                           num_feedforward_networks=4, trigram_input=True, normalization_type="no_norm")


def test_mobilebert_base_counts() -> None:
    shape = ModelShape.from_hf_config(_mobilebert_base_config(), num_labels=2)
    assert shape.bottleneck_size == 128 and shape.num_feedforward_networks == 4
    assert shape.attention_input == "shared_bottleneck" and shape.embedding_projection == "word"
    assert shape.head_dim == 32 and not shape.shared_layers and shape.normalization == "no_norm"
    # per layer: bottlenecks in, shared q/k and out 3 x 512*128; Q, K, O 3 x 128^2; V 512*128;
    # 4 FFNs x 2 x 128*512: 196,608 + 49,152 + 65,536 + 524,288 = 835,584
    assert shape.encoder_weights_per_layer == 835_584
    assert shape.unique_encoder_weights == 24 * 835_584
    # word table 30522 x 128, position and type tables (512 + 2) x 512; trigram projection 384 x 512
    assert shape.embedding_entries == 30522 * 128 + 514 * 512
    assert shape.projection_weights == 3 * 128 * 512
    # at S=128: the matrices once per token, QK^T + AV at width B: 2 * 128^2 * 128
    assert shape.encoder_macs_per_layer(128) == 128 * 835_584 + 2 * 128 * 128 * 128
    assert shape.encoder_macs_per_layer(128, 32) == 128 * 835_584 + 2 * (128 * 65 - 32 * 33) * 128
    assert shape.offramp_weights_per_layer == 512 * 512 + 512 * 2  # off-ramps read H


def test_bad_mobilebert_shape_raises() -> None:
    base = dict(num_layers=2, hidden_size=32, intermediate_size=64, num_heads=4, embedding_size=16, vocab_size=100,
                max_positions=64, type_vocab_size=2, num_labels=2, shared_layers=False)
    with pytest.raises(ValueError, match="needs a bottleneck_size"):
        ModelShape(**base, attention_input="shared_bottleneck")
    with pytest.raises(ValueError, match="bottleneck_size 18 is not divisible by num_heads 4"):
        ModelShape(**base, bottleneck_size=18)
    with pytest.raises(ValueError, match="num_feedforward_networks must be a positive integer"):
        ModelShape(**base, num_feedforward_networks=0)
    with pytest.raises(ValueError, match="embedding_projection"):
        ModelShape(**base, embedding_projection="tables")
    with pytest.raises(ValueError, match="normalization"):
        ModelShape(**base, normalization="rms_norm")


def _weights(modules) -> int:  # noqa: ANN001
    return sum(m.weight.numel() for m in modules)


def _check_weights(model) -> None:  # noqa: ANN001
    import torch
    from torch import nn

    shape = ModelShape.from_hf_config(model.config, num_labels=model.num_labels)
    backbone = model.backbone
    projection = getattr(backbone.embeddings, "embedding_transformation", None) \
        or getattr(backbone.encoder, "embedding_hidden_mapping_in", None)
    # the encoder's Linears a forward pass runs (ALBERT's shared ones once); HF also builds some a
    # layout never runs (MobileBERT's shared q/k bottleneck with use_bottleneck_attention)
    ran: dict[int, nn.Linear] = {}

    def record(module: nn.Module, _args: tuple) -> None:
        ran[id(module)] = module

    handles = [m.register_forward_pre_hook(record)
               for m in backbone.encoder.modules() if isinstance(m, nn.Linear) and m is not projection]
    ids = torch.arange(1, 9)[None]
    with torch.no_grad():
        model(ids, torch.ones_like(ids))
    for h in handles:
        h.remove()
    assert shape.unique_encoder_weights == _weights(ran.values())
    assert shape.embedding_entries == _weights(m for m in backbone.embeddings.modules() if isinstance(m, nn.Embedding))
    # HF builds MobileBERT's projection even where its forward skips it (no trigram, E = H)
    assert shape.projection_weights == (projection.weight.numel() if shape.has_embedding_projection else 0)
    ramps = [m for m in model.off_ramps.modules() if isinstance(m, nn.Linear)]
    assert shape.offramp_weights == _weights(ramps)


def _check_macs(model, span) -> None:  # noqa: ANN001
    import torch
    from torch import nn

    shape = ModelShape.from_hf_config(model.config, num_labels=model.num_labels)
    tokens = 11
    counted: list[int] = []
    attention_width: list[int] = []

    def hook(module: nn.Module, args: tuple) -> None:
        counted.append(args[0].shape[:-1].numel() * module.in_features * module.out_features)

    layer = model._layer_modules(0)[0]
    handles = [m.register_forward_pre_hook(hook) for m in layer.modules() if isinstance(m, nn.Linear)]
    query = next(m for n, m in layer.named_modules() if n.endswith("query"))
    handles.append(query.register_forward_hook(lambda _m, _a, out: attention_width.append(out.shape[-1])))
    if span is not None:
        model.spans.fill_(float(span))
    ids = torch.arange(1, tokens + 1)[None]
    with torch.no_grad():
        next(model.hidden_states(ids, torch.ones_like(ids), num_layers=1))
    for h in handles:
        h.remove()
    pairs = tokens * tokens if span is None else sum(
        1 for i in range(tokens) for j in range(tokens) if abs(i - j) <= span)
    assert shape.encoder_macs_per_layer(tokens, span) == sum(counted) + 2 * pairs * attention_width[0]


def test_shape_counts_the_weights_of_a_real_model(tiny_model) -> None:  # noqa: ANN001
    """Every weight the shape counts is one of the model's: Linear weights of the encoder (ALBERT's
    shared ones once), embedding tables, the embedding projection, the off-ramps."""
    _check_weights(tiny_model)


@pytest.mark.parametrize("span", [None, 2])
def test_macs_per_layer_match_a_real_layer(tiny_model, span) -> None:  # noqa: ANN001
    """The MACs of one layer against an independent count: in x out per token of every Linear the
    layer runs (forward hooks), plus QK^T and AV over the pairs the span mask keeps."""
    _check_macs(tiny_model, span)


@pytest.mark.parametrize("variant", [
    {"use_bottleneck_attention": True},
    {"key_query_shared_bottleneck": False, "intra_bottleneck_size": 32},
    {"use_bottleneck": False, "normalization_type": "layer_norm", "trigram_input": False, "embedding_size": 32},
    {"num_feedforward_networks": 1, "trigram_input": False},
])
def test_mobilebert_variants_count_as_they_run(variant) -> None:  # noqa: ANN001
    """Every MobileBERT layout the config allows: weights and MACs as counted on the real model."""
    import torch
    from transformers import MobileBertConfig, MobileBertModel

    from dse.modeling.early_exit import EarlyExitModel

    torch.manual_seed(0)
    cfg = MobileBertConfig(**{"vocab_size": 100, "embedding_size": 16, "hidden_size": 32, "intra_bottleneck_size": 16,
                              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                              "max_position_embeddings": 64} | variant)
    model = EarlyExitModel(MobileBertModel(cfg), num_labels=3).eval()
    _check_weights(model)
    _check_macs(model, None)
