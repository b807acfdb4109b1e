"""The span mask and the hardware model describe the same attention (issue #15, item 4).

For each sentence length S and hard span w, the real mask (``hard_span_bias``) is built and its
kept (query, key) entries are counted; the span it hands the hardware model
(``span_for_hardware``) must make ``hwmodels`` charge exactly that many pairs, in the MAC count
of ``ModelShape`` and in the accelerator's QK^T / AV MACs and softmax elements.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dse.modeling.span import AdaptiveSpan, hard_span_bias, span_for_hardware
from hwmodels import CompressionProfile, DesignBatch, HardwareConfig, ModelShape
from hwmodels.accelerator import _PASSES, design_static, stage_costs
from hwmodels.workload import attended_pairs

HEADS = 12
SHAPE = ModelShape(num_layers=6, hidden_size=384, intermediate_size=1536, num_heads=HEADS, embedding_size=384,
                   vocab_size=30522, max_positions=512, type_vocab_size=2, num_labels=2, shared_layers=False)

# (S, w): w = 0 (a query sees itself), spans inside the sentence, w = S - 1 (the mask keeps
# everything and hard_span_bias returns None) and spans longer than the sentence.
CASES = [(1, 0), (7, 0), (8, 1), (8, 3), (9, 4), (33, 5), (64, 16), (64, 62), (64, 63), (64, 64),
         (128, 32), (128, 500), (512, 31)]


def mask_kept_pairs(spans: torch.Tensor, seq_len: int) -> list[int]:
    """Entries each head's hard span mask keeps (the mask the model really applies)."""
    bias = hard_span_bias(spans, seq_len, torch.float32)
    if bias is None:
        return [seq_len * seq_len] * spans.numel()
    return [int(n) for n in (bias[0] == 0).sum(dim=(-1, -2))]


def charged_attention(tokens: int, span: int | None) -> tuple[float, float]:
    """(QK^T + AV MACs, softmax elements) one accelerator layer charges beyond the non-attention work.

    Read from the accelerator's own stage cost: at density 1 its MAC energy is MACs x one MAC's
    energy, and its SFU cycles are element passes / V.
    """
    designs = DesignBatch.from_configs(CompressionProfile(attention_span=span), HardwareConfig())
    static = design_static(SHAPE, designs)
    _, layer = stage_costs(SHAPE, designs, static, np.array([[tokens]]))
    h, f, c = SHAPE.hidden_size, SHAPE.intermediate_size, SHAPE.num_labels
    other_macs = 4 * tokens * h * h + 2 * tokens * h * f + h * h + h * c  # projections, FFN, off-ramp
    macs = float(layer.mac_pj[0, 0] / static.mac_pj[0, 0]) - other_macs
    other_passes = (2 * tokens * h * _PASSES["layernorm"] + tokens * f * _PASSES["gelu"]
                    + 2 * tokens * h * _PASSES["residual_add"] + h * _PASSES["tanh"] + c * _PASSES["entropy"])
    softmax_elements = (float(layer.sfu_cycles[0, 0]) * designs.vector_size[0] - other_passes) / _PASSES["softmax"]
    return macs, softmax_elements


@pytest.mark.parametrize(("tokens", "span"), CASES)
def test_hardware_charges_the_pairs_the_mask_keeps(tokens: int, span: int) -> None:
    spans = torch.full((HEADS,), float(span))
    kept = mask_kept_pairs(spans, tokens)
    assert len(set(kept)) == 1
    kept_pairs = kept[0]
    # hand count: every query i keeps the keys j in [max(0, i - w), min(S - 1, i + w)]
    assert kept_pairs == sum(min(tokens - 1, i + span) - max(0, i - span) + 1 for i in range(tokens))

    hw_span = span_for_hardware(spans)
    assert hw_span == span  # the same number reaches the hardware model
    assert attended_pairs(tokens, hw_span) == kept_pairs
    h = SHAPE.hidden_size
    assert SHAPE.encoder_macs_per_layer(tokens, hw_span) - SHAPE.encoder_macs_per_layer(tokens) == \
        2 * h * (kept_pairs - tokens * tokens)
    macs, softmax = charged_attention(tokens, hw_span)
    assert macs == pytest.approx(2 * kept_pairs * h, rel=1e-9)  # QK^T and AV: d_h MACs per pair and head
    assert softmax == pytest.approx(HEADS * kept_pairs, rel=1e-9)


def test_learned_zero_span_reaches_the_hardware_as_zero() -> None:
    # z = 0 with a 1-token ramp: hard span ceil(0 + 1) - 1 = 0, every query attends only itself
    module = AdaptiveSpan(HEADS, max_span_tokens=64, ramp_tokens=1, init_tokens=0.0)
    spans = module.hard_spans()
    assert spans.tolist() == [0.0] * HEADS
    assert mask_kept_pairs(spans, 10) == [10] * HEADS
    assert span_for_hardware(spans) == 0
    assert charged_attention(10, 0) == pytest.approx((2 * 10 * SHAPE.hidden_size, HEADS * 10))


def test_unequal_head_spans_are_never_undercharged() -> None:
    # one number for all heads: the mean span rounded up charges at least the mask's mean pairs
    rng = np.random.default_rng(0)
    for tokens in (16, 64, 128):
        for _ in range(20):
            spans = torch.tensor(rng.integers(0, tokens + 8, HEADS), dtype=torch.float32)
            kept = mask_kept_pairs(spans, tokens)
            assert attended_pairs(tokens, span_for_hardware(spans)) >= sum(kept) / HEADS


def test_unlimited_span_is_full_attention() -> None:
    spans = torch.tensor([3.0, math.inf])
    assert span_for_hardware(spans) is None
    assert attended_pairs(20, None) == 400
    assert charged_attention(20, None)[1] == pytest.approx(HEADS * 400)
