"""Post-training compression of a prepared model copy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dse.compression.apply import compress, embedding_tables, encoder_linears
from dse.compression.pruning import achieved_sparsity, magnitude_mask
from dse.compression.spec import CompressionSpec


def test_prunes_quantizes_and_masks_a_copy(tiny_model, tiny_batch) -> None:  # noqa: ANN001
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    spec = CompressionSpec(encoder_pruning=0.5, embedding_pruning=0.25, weight_bits=6,
                           weight_exp_bits=3, attention_span=2)
    out, report = compress(tiny_model, spec)
    # the prepared model is untouched
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    for lin in encoder_linears(out).values():
        assert abs(achieved_sparsity(lin.weight) - 0.5) < 0.01
    for emb in embedding_tables(out).values():
        assert abs(achieved_sparsity(emb.weight) - 0.25) < 0.05
    assert abs(report["encoder_sparsity"] - 0.5) < 0.01
    # 6-bit AdaptivFloat: at most 2^5 distinct magnitudes per tensor
    for lin in encoder_linears(out).values():
        assert lin.weight.abs().unique().numel() <= 32
    assert (out.spans == 2.0).all()
    assert not torch.allclose(out(**tiny_batch), tiny_model(**tiny_batch))


def test_no_compression_keeps_near_identical_outputs(tiny_model, tiny_batch) -> None:  # noqa: ANN001
    out, report = compress(tiny_model, CompressionSpec(weight_bits=16, weight_exp_bits=5))
    assert report["encoder_sparsity"] < 0.01
    assert math.isinf(out.spans.max().item())
    # MobileBERT's NoNorm never renormalises, so the default 8-bit activations' rounding (2
    # mantissa bits) carries through its layers: a looser bound there, a tight one at 16 bits
    atol = 3e-2 if tiny_model.config.model_type == "mobilebert" else 1e-2
    assert torch.allclose(out(**tiny_batch), tiny_model(**tiny_batch), atol=atol)
    wide, _ = compress(tiny_model, CompressionSpec(weight_bits=16, weight_exp_bits=5, activation_bits=16))
    assert torch.allclose(wide(**tiny_batch), tiny_model(**tiny_batch), atol=1e-3)


def test_encoder_linears_cover_edgebert_matrices(tiny_model) -> None:  # noqa: ANN001
    names = set(encoder_linears(tiny_model))
    suffixes = {n.split(".")[-1] for n in names} | {".".join(n.split(".")[-2:]) for n in names}
    if tiny_model.config.model_type == "bert":
        assert len(names) == 6 * tiny_model.num_layers
        assert {"query", "key", "value", "intermediate.dense"} <= suffixes
    elif tiny_model.config.model_type == "mobilebert":
        # q, k, v, o, the input, shared q/k and output bottlenecks, and 2 x num_feedforward_networks
        # FFN matrices: every Linear of a MobileBERT encoder
        per_layer = 7 + 2 * tiny_model.config.num_feedforward_networks
        assert len(names) == per_layer * tiny_model.num_layers
        every = {n for n, m in tiny_model.backbone.encoder.named_modules() if isinstance(m, torch.nn.Linear)}
        assert names == every
        assert {"bottleneck.input.dense", "bottleneck.attention.dense", "output.bottleneck.dense"} <= {
            ".".join(n.split(".")[-3:]) for n in names}
    else:  # ALBERT: one shared set of six matrices
        assert len(names) == 6
        assert {"query", "key", "value", "dense", "ffn", "ffn_output"} <= suffixes
    assert set(embedding_tables(tiny_model)) == {"word_embeddings", "position_embeddings",
                                                 "token_type_embeddings"}


def test_cached_rankings_follow_in_place_weight_updates(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.5, weight_bits=16, weight_exp_bits=5)
    first, _ = compress(tiny_model, spec)
    lin = next(iter(encoder_linears(tiny_model).values()))
    with torch.no_grad():
        lin.weight.mul_(-torch.arange(lin.weight.numel()).reshape(lin.weight.shape).float())  # new ranking
    second, _ = compress(tiny_model, spec)
    name = next(iter(encoder_linears(tiny_model)))
    w = encoder_linears(second)[name].weight
    assert torch.equal(w != 0, magnitude_mask(lin.weight, sparsity=0.5))  # ranked afresh, not stale
    assert not torch.equal(w != 0, encoder_linears(first)[name].weight != 0)


@pytest.mark.parametrize("variant", ["ref2022", "edgebert_hw"])
def test_weight_format_selects_the_adaptivfloat_variant(tiny_model, variant: str) -> None:  # noqa: ANN001
    from dse.compression.adaptivfloat import AdaptivFloatFormat, quantize

    spec = CompressionSpec(weight_bits=8, weight_exp_bits=3, weight_format=variant)
    out, _ = compress(tiny_model, spec)
    name, lin = next(iter(encoder_linears(tiny_model).items()))
    want = quantize(lin.weight, AdaptivFloatFormat(total_bits=8, exp_bits=3, variant=variant))
    assert torch.equal(encoder_linears(out)[name].weight, want)
    paper, _ = compress(tiny_model, CompressionSpec(weight_bits=8, weight_exp_bits=3))
    assert not torch.equal(encoder_linears(paper)[name].weight, want)


def test_cache_key_fields() -> None:
    # weight_format at its default keeps older keys; activation_bits is always in the key (its
    # default became 8: quantized activations, not the fp32 ones older keys stood for)
    assert set(CompressionSpec().as_dict()) == {"encoder_pruning", "embedding_pruning", "weight_bits",
                                                "weight_exp_bits", "attention_span", "activation_bits"}
    assert CompressionSpec().as_dict()["activation_bits"] == 8
    assert CompressionSpec(activation_bits=0).as_dict() != CompressionSpec().as_dict()


def test_activation_quantization_hooks_every_encoder_matmul(tiny_model, tiny_batch) -> None:  # noqa: ANN001
    out, report = compress(tiny_model, CompressionSpec(weight_bits=16, weight_exp_bits=5, activation_bits=4))
    assert report["activation_quantizers"] == len({id(m) for m in encoder_linears(out).values()})
    base, _ = compress(tiny_model, CompressionSpec(weight_bits=16, weight_exp_bits=5))
    h_q = next(out.hidden_states(**tiny_batch))
    h = next(base.hidden_states(**tiny_batch))
    assert (h_q - h).abs().max() > 1e-3  # 4-bit inputs visibly change the first layer


def test_static_activation_biases_make_a_row_independent_of_its_batch() -> None:
    """Dynamic scaling takes the bias from the batch's max |x|: a loud batch mate changes a row's
    quantized input. A static bias (calibrated per design) makes every row's result its own."""
    from dse.compression.adaptivfloat import AdaptivFloatFormat, attach_activation_quantizers, exponent_bias

    fmt = AdaptivFloatFormat(total_bits=8, exp_bits=3)
    x = torch.linspace(-1.3, 1.7, 16).reshape(2, 8)
    loud = torch.cat([x[:1], 300 * x[1:]])
    for biases, coupled in ((None, True), ([exponent_bias(x, fmt)], False)):
        lin = torch.nn.Linear(8, 3)
        attach_activation_quantizers(lin, fmt, biases=biases)
        with torch.no_grad():
            alone, with_loud_mate = lin(x[:1]), lin(loud)[:1]
        # (a different batch shape may take another matmul kernel: float noise, not a coupling)
        assert torch.allclose(alone, with_loud_mate, rtol=0, atol=1e-5) is not coupled


def test_compress_calibrates_one_static_bias_per_quantized_input(tiny_model) -> None:  # noqa: ANN001
    from dse.compression.apply import calibrate_activation_biases
    from dse.modeling.batching import EncodedSet
    from dse.modeling.inference import dev_layer_logits

    rng = np.random.default_rng(0)
    ids = [[2, *rng.integers(5, 100, rng.integers(3, 11)).tolist(), 3] for _ in range(24)]
    calibration = EncodedSet(ids[:16], [[0] * len(r) for r in ids[:16]], np.zeros(16, dtype=np.int64))
    rows = EncodedSet(ids[16:], [[0] * len(r) for r in ids[16:]], np.zeros(8, dtype=np.int64))
    spec = CompressionSpec(weight_bits=8, weight_exp_bits=4, activation_bits=8)

    dynamic, report = compress(tiny_model, spec)
    assert report["static_activation_biases"] == 0 and dynamic.activation_biases is None
    static, report = compress(tiny_model, spec, calibration=calibration, pad_id=0)
    assert report["static_activation_biases"] == report["activation_quantizers"] == len(static.activation_biases)
    # the biases are those of the calibration rows' inputs (recomputed on the unhooked compressed model)
    plain, _ = compress(tiny_model, CompressionSpec(weight_bits=8, weight_exp_bits=4, activation_bits=0))
    assert static.activation_biases == calibrate_activation_biases(plain, dynamic.activation_format, calibration,
                                                                   pad_id=0)
    # one row at a time or all together: the same logits
    together = dev_layer_logits(static, rows, pad_id=0, batch_size=8)
    one_by_one = torch.cat([dev_layer_logits(static, rows.subset([i]), pad_id=0) for i in range(8)], dim=1)
    torch.testing.assert_close(one_by_one, together, rtol=0, atol=1e-5)


def test_a_wrong_number_of_static_biases_is_refused(tiny_model) -> None:  # noqa: ANN001
    from dse.compression.apply import attach_activation_quantization

    with pytest.raises(ValueError, match="activation biases for"):
        attach_activation_quantization(tiny_model, CompressionSpec(activation_bits=8), biases=[0])
