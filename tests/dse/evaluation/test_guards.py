"""Guards refuse to score a trial whose sampled compression knob did nothing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dse.compression.apply import compress, encoder_linears
from dse.compression.spec import CompressionSpec
from dse.evaluation.guards import InactiveKnob, check_activation_width, check_knobs_active, simulated_activation_bits
from dse.modeling.batching import EncodedSet


def _dev(lengths: list[int]) -> EncodedSet:
    rng = np.random.default_rng(0)
    ids = [[1, *rng.integers(2, 100, n - 2).tolist(), 2] for n in lengths]
    return EncodedSet(ids, [[0] * n for n in lengths], np.zeros(len(lengths), dtype=np.int64))


DEV = _dev([12, 5, 20, 9])


@pytest.mark.parametrize(("knob", "spec"), [
    ("encoder_pruning", CompressionSpec(encoder_pruning=0.5, weight_bits=8)),
    ("embedding_pruning", CompressionSpec(embedding_pruning=0.3, weight_bits=8)),
    ("weight_bits", CompressionSpec(weight_bits=6, weight_exp_bits=3)),
    ("attention_span", CompressionSpec(weight_bits=8, attention_span=4)),
    ("activation_bits", CompressionSpec(weight_bits=8, activation_bits=8)),
])
def test_active_compression_passes(tiny_model, knob: str, spec: CompressionSpec) -> None:  # noqa: ANN001
    # the compressed model passes; the same model with this knob's effect missing is refused, by name
    out, _ = compress(tiny_model, spec)
    check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    # every compression quantizes weights, so "weights never quantized" is the original model itself
    # (activations: fp32, no longer the default, which quantizes them to the charged 8 bits)
    off = 0 if knob == "activation_bits" else getattr(CompressionSpec(), knob)
    without = tiny_model if knob == "weight_bits" else compress(tiny_model, dataclasses.replace(spec, **{knob: off}))[0]
    with pytest.raises(InactiveKnob, match=knob):
        check_knobs_active(tiny_model, without, spec, dev=DEV, pad_id=0)


def test_all_knobs_at_once_pass(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.5, embedding_pruning=0.3, weight_bits=6, weight_exp_bits=3,
                           attention_span=4, activation_bits=8)
    out, achieved = compress(tiny_model, spec)
    check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    assert achieved  # compression reports what it did


def test_mask_that_never_reached_the_weights_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.5, weight_bits=8)
    # what a lost mask looks like: quantized, but not pruned
    out, _ = compress(tiny_model, CompressionSpec(weight_bits=8))
    with pytest.raises(InactiveKnob, match=r"encoder_pruning=0.5 but .* is only 0\.0"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_unquantized_tensor_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(weight_bits=6)
    out, _ = compress(tiny_model, spec)
    name, lin = next(iter(encoder_linears(out).items()))
    with torch.no_grad():
        lin.weight.copy_(encoder_linears(tiny_model)[name].weight)
    with pytest.raises(InactiveKnob, match=f"weight_bits=6 left {name} unchanged"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_too_many_levels_fails(tiny_model) -> None:  # noqa: ANN001
    out, _ = compress(tiny_model, CompressionSpec(weight_bits=8))
    with pytest.raises(InactiveKnob, match="distinct values"):
        check_knobs_active(tiny_model, out, CompressionSpec(weight_bits=4), dev=DEV, pad_id=0)


def test_span_covering_every_sentence_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(attention_span=20)
    out, _ = compress(tiny_model, spec)
    with pytest.raises(InactiveKnob, match="longest 20 tokens"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_span_mask_that_is_not_applied_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(attention_span=3)
    out, _ = compress(tiny_model, spec)
    out.spans.fill_(math.inf)  # the mask was lost (as EdgeBERT's eval path does at other batch sizes)
    # the probe restores the model's spans, then compares with and without: identical -> inactive
    with pytest.raises(InactiveKnob, match="did not change attention"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    assert math.isinf(out.spans.max().item())


def test_activation_quantizers_that_were_lost_fail(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(weight_bits=8, activation_bits=8)
    out, _ = compress(tiny_model, spec)
    check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    out.activation_quantizers.pop().remove()
    with pytest.raises(InactiveKnob, match="activation_bits=8 quantizes"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_the_default_design_simulates_the_activation_width_it_is_charged(tiny_model) -> None:  # noqa: ANN001
    # issue #15 item 3: the hardware model charges 8-bit activations by default, so the accuracy
    # side must run them through the 8-bit AdaptivFloat quantizer by default too
    from dse.config import KNOBS
    from dse.evaluation.score import compression_profile

    spec = CompressionSpec.from_knobs({n: k.default for n, k in KNOBS.items()})
    out, _ = compress(tiny_model, spec)
    assert simulated_activation_bits(out) == compression_profile(spec).activation_bits == 8
    assert simulated_activation_bits(tiny_model) == 0  # fp32
    out.activation_quantizers.pop().remove()  # one matmul input left in fp32: not an 8-bit datapath
    assert simulated_activation_bits(out) == 0


def test_a_design_measured_at_another_activation_width_is_refused(tmp_path) -> None:  # noqa: ANN001
    from dse.evaluation.cache import eval_key
    from dse.evaluation.score import score_design

    from ..tiny_eval import tiny_config, tiny_context

    check_activation_width(8, 8)
    with pytest.raises(InactiveKnob, match="costed with 8-bit activations but accuracy was measured with fp32"):
        check_activation_width(0, 8)
    knobs = tiny_config().knob_values({})
    ctx = tiny_context(tmp_path)
    score_design(ctx, knobs)
    spec = CompressionSpec.from_knobs(knobs)
    path = tmp_path / f"{eval_key(ctx, spec)}.npz"
    with np.load(path) as saved:  # the same entry, but its logits measured with 6-bit activations
        arrays = {**{k: saved[k] for k in saved.files}, "activation_bits": np.asarray(6)}
    np.savez(path, **arrays)
    with pytest.raises(InactiveKnob, match="costed with 8-bit activations but accuracy was measured with 6-bit"):
        score_design(tiny_context(tmp_path), knobs)
