"""Adaptive attention span: soft mask, hard span, renormalisation, loss and clamping, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dse.modeling.span import AdaptiveSpan, hard_span_bias, renormalized_probs, span_for_hardware


def two_heads() -> AdaptiveSpan:
    # S = 10, R = 2; head 0 at z = 0.1 (1 token), head 1 at z = 0.35 (3.5 tokens)
    span = AdaptiveSpan(2, max_span_tokens=10, ramp_tokens=2, init_tokens=1.0)
    with torch.no_grad():
        span.span_fraction[1] = 0.35
    return span


def test_soft_mask_hand_computed() -> None:
    mask = two_heads().soft_mask(7)
    # m(x) = clamp((R + zS - x) / R, 0, 1) at distances x = 0..6
    # head 0: (3 - x)/2 -> 1.5, 1, 0.5, 0, ...  clamped to 1, 1, 0.5, 0, 0, 0, 0
    # head 1: (5.5 - x)/2 -> 2.75, 2.25, 1.75, 1.25, 0.75, 0.25, -0.25
    assert torch.allclose(mask[0, 0], torch.tensor([1, 1, 0.5, 0, 0, 0, 0]))
    assert torch.allclose(mask[1, 0], torch.tensor([1, 1, 1, 1, 0.75, 0.25, 0]))
    # relative distance: the row of query 3 is symmetric around it
    assert torch.allclose(mask[1, 3], torch.tensor([1, 1, 1, 1, 1, 1, 1.0]))
    assert torch.allclose(mask[0, 3], torch.tensor([0, 0.5, 1, 1, 1, 0.5, 0]))


def test_hard_span_is_the_soft_mask_support() -> None:
    span = two_heads()
    # ceil(zS + R) - 1: head 0 ceil(3) - 1 = 2, head 1 ceil(5.5) - 1 = 5
    assert span.hard_spans().tolist() == [2.0, 5.0]
    soft = span.soft_mask(9)
    dist = (torch.arange(9)[:, None] - torch.arange(9)[None]).abs()
    for h, hard in enumerate(span.hard_spans()):
        assert torch.equal(soft[h] > 0, dist <= hard)


def test_renormalized_rows_sum_to_one() -> None:
    probs = torch.full((1, 4), 0.25)
    out = renormalized_probs(probs, torch.tensor([[1.0, 1.0, 0.5, 0.0]]))
    # [1/4, 1/4, 1/8, 0] / (5/8)
    assert torch.allclose(out, torch.tensor([[0.4, 0.4, 0.2, 0.0]]))
    rand = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    masked = renormalized_probs(rand, two_heads().soft_mask(5)[:, None].detach())  # [2 heads, 1, 5, 5]
    assert torch.allclose(masked.sum(-1), torch.ones(2, 3, 5), atol=1e-6)


def test_loss_clamp_and_gradient() -> None:
    span = two_heads()
    loss = span.loss()  # mean(1, 3.5) tokens
    assert loss.item() == pytest.approx(2.25)
    loss.backward()
    # d mean(zS) / dz_h = S / heads = 5
    assert torch.allclose(span.span_fraction.grad, torch.tensor([5.0, 5.0]))
    with torch.no_grad():
        span.span_fraction.copy_(torch.tensor([-0.2, 1.5]))
    span.clamp_()
    assert span.span_fraction.tolist() == [0.0, 1.0]


def test_soft_mask_gradient_reaches_span() -> None:
    span = two_heads()
    with torch.no_grad():  # off-integer spans: no mask value sits exactly on a clamp bound
        span.span_fraction[0] = 0.12
    span.soft_mask(7).sum().backward()
    # Inside the ramp d m / d z = S / R = 5; outside it (clamped) 0. Entries at distance x in a
    # 7x7 matrix: 2 * (7 - x).
    # head 0: (3.2 - x)/2 is in (0, 1) at x = 2, 3 -> (10 + 8) * 5
    assert span.span_fraction.grad[0].item() == pytest.approx(18 * 5.0)
    # head 1: (5.5 - x)/2 is in (0, 1) at x = 4, 5 -> (6 + 4) * 5
    assert span.span_fraction.grad[1].item() == pytest.approx(10 * 5.0)


def test_init_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="init_tokens"):
        AdaptiveSpan(2, max_span_tokens=10, ramp_tokens=2, init_tokens=11)


def test_hard_span_bias() -> None:
    bias = hard_span_bias(torch.tensor([1.0, math.inf]), 4, torch.float32)
    assert bias is not None and bias.shape == (1, 2, 4, 4)
    assert torch.equal(bias[0, 0] == 0, (torch.arange(4)[:, None] - torch.arange(4)).abs() <= 1)
    assert (bias[0, 1] == 0).all()
    assert hard_span_bias(torch.tensor([3.0, math.inf]), 4, torch.float32) is None  # 3 = longest distance
    assert hard_span_bias(torch.full((2,), math.inf), 4, torch.float32) is None


def test_span_for_hardware() -> None:
    assert span_for_hardware(torch.tensor([[2.0, 5.0], [3.0, 3.0]])) == 4  # mean 3.25 -> 4
    assert span_for_hardware(torch.tensor([2.0, math.inf])) is None
