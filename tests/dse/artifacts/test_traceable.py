"""The traced steps' attention bias, by hand (the steps themselves are checked against the model
through every deployable in test_onnx_export, test_litert_export and test_deploy)."""

from __future__ import annotations

import math

import torch

from dse.artifacts.traceable import LOW, attention_bias


def test_low_is_float32s_lowest() -> None:
    assert LOW == torch.finfo(torch.float32).min


def test_attention_bias_hides_padding_and_keys_beyond_each_heads_span() -> None:
    mask = torch.tensor([[1, 1, 1, 0]])  # the last token is padding
    bias = attention_bias(mask, torch.tensor([1.0, math.inf]))  # head 0 sees one token either side
    assert bias.shape == (1, 2, 4, 4) and set(bias.unique().tolist()) == {0.0, LOW}
    seen = (bias[0] == 0).int().tolist()
    assert seen[0] == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 0]]
    assert seen[1] == [[1, 1, 1, 0]] * 4
    no_spans = attention_bias(mask, None)  # no head limited: the padding bias alone, broadcast
    assert no_spans.shape == (1, 1, 1, 4) and torch.equal(no_spans.expand(1, 2, 4, 4)[:, 1], bias[:, 1])
