"""Adaptive attention span (Sukhbaatar et al. 2019, EdgeBERT §1.4), relative-distance form.

Each attention module learns one span per head, ``z`` in [0, 1] as a fraction of
``max_span_tokens`` S (EdgeBERT's parameterisation, so the optimiser sees the same scale).
During training the attention probabilities are multiplied AFTER softmax by the soft mask

    m_z(x) = clamp((R + z·S − x) / R, 0, 1),   x = |i − j| (query/key distance), R = ramp

and every row is renormalised. At inference the mask is hard: a query attends to a key when
``x <= hard span`` with ``hard span = ceil(z·S + R) − 1``, the largest distance whose soft
weight is non-zero, so the hard mask keeps exactly the soft mask's support.

Differences from EdgeBERT's code, on purpose: z has shape ``(heads,)`` — never the training
batch size, so the mask is applied at every batch size (EdgeBERT's ``x.size(0) ==
mask.size(0)`` test skips it at eval batch 1 and on ragged last batches); distance is
measured between query and key rather than from the padded end, so padding never changes
results; z starts at ``init_tokens / S`` exactly (EdgeBERT adds a Kaiming-normal draw).
EdgeBERT reports ``ceil(z·S) + R`` as the span; we report the hard span above, which is
what the mask really keeps.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AdaptiveSpan", "hard_span_bias", "renormalized_probs", "span_for_hardware"]

_RENORM_EPS = 1e-8  # EdgeBERT's denominator guard for rows the mask empties


def _distance(seq_len: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(seq_len, device=device)
    return (pos[:, None] - pos[None, :]).abs()


class AdaptiveSpan(nn.Module):
    """Learnable per-head span of one attention module (shared by every layer that uses it)."""

    def __init__(self, num_heads: int, *, max_span_tokens: int, ramp_tokens: int, init_tokens: float) -> None:
        super().__init__()
        if max_span_tokens < 1 or ramp_tokens < 1:
            raise ValueError(f"max_span_tokens and ramp_tokens must be >= 1, got {max_span_tokens}, {ramp_tokens}")
        if not 0.0 <= init_tokens <= max_span_tokens:
            raise ValueError(f"init_tokens must be in [0, {max_span_tokens}], got {init_tokens}")
        self.max_span_tokens = int(max_span_tokens)
        self.ramp_tokens = int(ramp_tokens)
        self.span_fraction = nn.Parameter(torch.full((num_heads,), init_tokens / max_span_tokens))

    def span_tokens(self) -> torch.Tensor:
        """The learned span z·S of every head, ``(heads,)`` (differentiable)."""
        return self.span_fraction * self.max_span_tokens

    def soft_mask(self, seq_len: int) -> torch.Tensor:
        """``m_z(|i − j|)`` for every head, query and key: ``[heads, seq_len, seq_len]``."""
        x = _distance(seq_len, self.span_fraction.device).to(self.span_fraction.dtype)
        ramp = float(self.ramp_tokens)
        return ((ramp + self.span_tokens()[:, None, None] - x[None]) / ramp).clamp(0.0, 1.0)

    @torch.no_grad()
    def hard_spans(self) -> torch.Tensor:
        """Largest distance the soft mask keeps, per head: ``ceil(z·S + R) − 1`` (float tokens)."""
        return torch.ceil(self.span_tokens().detach() + self.ramp_tokens) - 1

    def loss(self) -> torch.Tensor:
        """Mean span in tokens over heads (times a coefficient, EdgeBERT's span loss)."""
        return self.span_tokens().mean()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep z in [0, 1]; called after every optimiser step (EdgeBERT ``clamp_param``)."""
        self.span_fraction.clamp_(0.0, 1.0)


def renormalized_probs(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``m ⊙ a / (Σ m ⊙ a + 1e-8)`` over the key axis: the span mask applied after softmax."""
    masked = probs * mask
    return masked / (masked.sum(dim=-1, keepdim=True) + _RENORM_EPS)


def hard_span_bias(spans: torch.Tensor, seq_len: int, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive bias ``[1, heads, s, s]`` hiding keys farther than each head's span; None if no limit."""
    if not bool(torch.isfinite(spans).any()) or bool((spans >= seq_len - 1).all()):
        return None
    allowed = _distance(seq_len, spans.device).to(spans.dtype)[None] <= spans[:, None, None]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=spans.device)
    bias.masked_fill_(~allowed, torch.finfo(dtype).min)
    return bias[None]


def span_for_hardware(spans: torch.Tensor) -> int | None:
    """One span for the accelerator model: the mean head hard span, rounded up; None if unlimited.

    The number is the same quantity the mask uses (the largest query-key distance kept, 0 = a
    query attends only itself), and ``hwmodels`` charges exactly the pairs ``hard_span_bias``
    keeps for it. With equal spans on every head this is exact; with unequal spans it charges
    at least the mask's mean (kept pairs are concave in the span, and the mean is rounded up).
    """
    finite = spans[torch.isfinite(spans)]
    if finite.numel() < spans.numel() or finite.numel() == 0:
        return None
    return math.ceil(float(finite.mean()))
