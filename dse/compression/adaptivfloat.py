"""AdaptivFloat fake quantisation (Tambe et al., DAC 2020; EdgeBERT, MICRO 2021).

An AdaptivFloat<n, e> number has 1 sign bit, ``e`` exponent bits and ``m = n - 1 - e``
mantissa bits, no denormals, and a per-tensor exponent *bias* chosen from the tensor's
largest magnitude so that the exponent window sits at the top of the tensor's range.
Three variants are implemented, after the AdaptivFloat reference code (ttambe/AdaptivFloat
``adaptivfloat.py``: the 2020 NumPy and the 2022 PyTorch versions) and EdgeBERT's accelerator
format (harvard-acc/EdgeBERT ``hw/cmod/include/AdpfloatSpec.h``):

``"paper2020"`` (reference version A, the paper's description)
    ``E_max = floor(log2(max|x|))``, ``bias = E_max - (2^e - 1)``; exponents
    ``bias .. bias + 2^e - 1``; code (exp=0, mant=0) is reserved for zero, so
    ``v_min = 2^bias * (1 + 2^-m)`` and ``v_max = 2^(bias + 2^e - 1) * (2 - 2^-m)``.
    ``|x| < v_min/2 -> 0``; ``v_min/2 <= |x| < v_min -> v_min``; ``|x| > v_max -> v_max``;
    otherwise the mantissa is rounded to ``m`` bits, half to even, carrying into the
    exponent when it rounds up to 2.0.

``"ref2022"`` (reference version B, IEEE-like window)
    ``bias = (2^(e-1) - 1) - E_max``; exponents ``E_max - 2^e + 3 .. E_max``
    (``2^e - 2`` values); ``|x| < 2^(E_max - 2^e + 3) -> 0`` (no round-up to the
    minimum); saturate at ``2^E_max * (2 - 2^-m)``; same mantissa rounding. Needs
    ``e >= 2`` (with ``e = 1`` the window is empty and every value would flush to zero).

``"edgebert_hw"`` (the accelerator's ``AdpfloatType<8,3>``, ``set_value``)
    ``value = (-1)^s * 2^(exp + bias - 10) * (1 + man/16)`` with ``exp`` in 0..7,
    (exp=0, man=0) reserved for zero, and a 3-bit bias field chosen so the top exponent
    equals ``E_max``: ``bias = clamp(E_max + 3, 0, 7)``. Same flush / round-up / saturate
    rules as ``"paper2020"``, but the mantissa is TRUNCATED (the RTL does not round).

Boundary conventions (decisions of this module, all documented in the tests):

* ``|x| == v_min/2`` (reserved-zero variants) maps to ``v_min``. The hardware's ``set_value``
  flushes only ``|x| < min/2`` and rounds everything else below ``min`` up, which is what we
  do. The 2020 NumPy reference uses strict inequalities on both sides, so it leaves this one
  value untouched; mantissa rounding then keeps it at ``2^(bias-1) * (1 + 2^-m)``, which lies
  one binade below the exponent window and is *not* representable. We do not copy that.
* Flushed values become ``+0.0`` (the hardware writes sign 0 for flushed values).
* An all-zero tensor quantises to zeros; its bias follows the reference's ``frexp(0)``
  convention, ``E_max = -1``.
* Values are computed exactly with integer bit operations on the float32 (or float64)
  representation; float16/bfloat16 inputs are computed in float32 and cast back, so a
  result that needs more mantissa bits than the input dtype has is re-rounded by the cast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.utils.hooks
from torch import nn

__all__ = [
    "AdaptivFloatVariant",
    "AdaptivFloatFormat",
    "EDGEBERT_HW_OFFSET",
    "exponent_bias",
    "representable_range",
    "quantize",
    "quantize_in_float_ops",
    "quantize_model_weights_",
    "encode",
    "decode",
    "attach_activation_quantizers",
    "ModuleFilter",
]

AdaptivFloatVariant = Literal["paper2020", "ref2022", "edgebert_hw"]

#: Global exponent offset of the EdgeBERT accelerator (``spec::kAdpfloatOffset``).
EDGEBERT_HW_OFFSET: int = -10
# Width of the hardware's per-tensor bias field (3 bits -> 0..7).
_HW_BIAS_MAX: int = 7


@dataclass(frozen=True)
class AdaptivFloatFormat:
    """An AdaptivFloat number format: ``total_bits`` = 1 sign + ``exp_bits`` + mantissa.

    ``total_bits`` is in 4..16, ``exp_bits`` in 1..5 and the mantissa
    ``total_bits - 1 - exp_bits`` must be >= 0. ``"ref2022"`` needs ``exp_bits >= 2``;
    ``"edgebert_hw"`` is only defined for ``total_bits=8, exp_bits=3``.
    """

    total_bits: int
    exp_bits: int
    variant: AdaptivFloatVariant = "paper2020"

    def __post_init__(self) -> None:
        for name in ("total_bits", "exp_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if not 4 <= self.total_bits <= 16:
            raise ValueError(f"total_bits must be in 4..16, got {self.total_bits}")
        if not 1 <= self.exp_bits <= 5:
            raise ValueError(f"exp_bits must be in 1..5, got {self.exp_bits}")
        if self.exp_bits >= self.total_bits:
            raise ValueError(
                f"exp_bits ({self.exp_bits}) must be < total_bits ({self.total_bits}) "
                "to leave room for the sign bit"
            )
        if self.variant not in get_args(AdaptivFloatVariant):
            raise ValueError(
                f"variant must be one of {get_args(AdaptivFloatVariant)}, got {self.variant!r}"
            )
        if self.variant == "ref2022" and self.exp_bits < 2:
            raise ValueError("variant 'ref2022' needs exp_bits >= 2 (its window has 2^e - 2 exponents)")
        if self.variant == "edgebert_hw" and (self.total_bits, self.exp_bits) != (8, 3):
            raise ValueError(
                "variant 'edgebert_hw' is only defined for total_bits=8, exp_bits=3, "
                f"got total_bits={self.total_bits}, exp_bits={self.exp_bits}"
            )

    @property
    def mantissa_bits(self) -> int:
        """Number of stored mantissa bits, ``total_bits - 1 - exp_bits``."""
        return self.total_bits - 1 - self.exp_bits


def _check_format(fmt: object) -> AdaptivFloatFormat:
    if not isinstance(fmt, AdaptivFloatFormat):
        raise TypeError(f"fmt must be an AdaptivFloatFormat, got {type(fmt).__name__}")
    return fmt


def _bias_from_emax(e_max: int, fmt: AdaptivFloatFormat) -> int:
    """Per-tensor bias that puts the top of the exponent window at ``e_max``."""
    if fmt.variant == "paper2020":
        return e_max - (2**fmt.exp_bits - 1)
    if fmt.variant == "ref2022":
        return (2 ** (fmt.exp_bits - 1) - 1) - e_max
    # Hardware: top exponent is 7 + bias - 10 = bias - 3; the 3-bit field saturates.
    return min(max(e_max + 3, 0), _HW_BIAS_MAX)


def _exponent_window(fmt: AdaptivFloatFormat, bias: int) -> tuple[int, int]:
    """(lowest, highest) unbiased exponent of the normal numbers for this bias."""
    if fmt.variant == "paper2020":
        return bias, bias + 2**fmt.exp_bits - 1
    if fmt.variant == "ref2022":
        half = 2 ** (fmt.exp_bits - 1)
        return -half + 2 - bias, half - 1 - bias
    return bias + EDGEBERT_HW_OFFSET, bias + EDGEBERT_HW_OFFSET + _HW_BIAS_MAX


def _check_bias(bias: object, fmt: AdaptivFloatFormat) -> int:
    if isinstance(bias, bool) or not isinstance(bias, int):
        raise ValueError(f"bias must be an int, got {bias!r}")
    if fmt.variant == "edgebert_hw" and not 0 <= bias <= _HW_BIAS_MAX:
        raise ValueError(f"edgebert_hw bias is a 3-bit field in 0..{_HW_BIAS_MAX}, got {bias}")
    lo, hi = _exponent_window(fmt, bias)
    # Keep every threshold (down to v_min/2) a normal float64 number.
    if lo - 1 < -1022 or hi > 1023:
        raise ValueError(f"bias {bias} puts the exponent window 2^{lo}..2^{hi} outside float64 range")
    return bias


def _max_abs(x: torch.Tensor) -> float:
    if x.numel() == 0:
        return 0.0
    amax = float(x.detach().abs().max())
    if not math.isfinite(amax):
        raise ValueError("AdaptivFloat quantisation needs a finite tensor (found NaN or Inf)")
    return amax


def _emax(amax: float) -> int:
    # frexp gives amax = f * 2^k with f in [0.5, 1), so floor(log2(amax)) = k - 1 exactly;
    # frexp(0) = (0, 0) gives -1, matching the reference's all-zero behaviour.
    return math.frexp(amax)[1] - 1


def exponent_bias(x: torch.Tensor, fmt: AdaptivFloatFormat) -> int:
    """Per-tensor exponent bias chosen from ``max|x|``.

    ``paper2020``: ``E_max - (2^e - 1)``; ``ref2022``: ``(2^(e-1) - 1) - E_max``;
    ``edgebert_hw``: the 3-bit field ``clamp(E_max + 3, 0, 7)``; where
    ``E_max = floor(log2(max|x|))`` (``-1`` for an all-zero or empty tensor).
    """
    fmt = _check_format(fmt)
    return _bias_from_emax(_emax(_max_abs(x)), fmt)


def representable_range(fmt: AdaptivFloatFormat, bias: int) -> tuple[float, float]:
    """(smallest non-zero magnitude, largest magnitude) of ``fmt`` with this ``bias``."""
    fmt = _check_format(fmt)
    bias = _check_bias(bias, fmt)
    lo, hi = _exponent_window(fmt, bias)
    m = fmt.mantissa_bits
    v_max = math.ldexp(2.0 - 2.0**-m, hi)
    if fmt.variant == "ref2022":
        return math.ldexp(1.0, lo), v_max
    # Reserved zero: the lowest code (exp=0, mant=0) is not a number.
    return math.ldexp(1.0 + 2.0**-m, lo), v_max


def _flush_below(fmt: AdaptivFloatFormat, v_min: float) -> float:
    """Magnitudes below this become 0: reserved-zero variants flush below v_min/2 (and round
    [v_min/2, v_min) up to v_min); ref2022 flushes everything below v_min."""
    return v_min / 2.0 if fmt.variant != "ref2022" else v_min


def _round_mantissa(a: torch.Tensor, mantissa_bits: int, *, truncate: bool) -> torch.Tensor:
    """Round non-negative finite float32/float64 values to ``mantissa_bits`` mantissa bits.

    Works on the integer view of the IEEE encoding: adding ``half - 1 + lsb`` and clearing the
    dropped bits is round-half-to-even, and a mantissa overflow carries into the exponent
    field, which is exactly the "carry into the exponent" rule. Truncation just clears bits.
    """
    if a.dtype == torch.float32:
        int_dtype, frac_bits = torch.int32, 23
    else:
        int_dtype, frac_bits = torch.int64, 52
    drop = frac_bits - mantissa_bits
    keep_mask = ~((1 << drop) - 1)
    bits = a.view(int_dtype)
    if truncate:
        return torch.bitwise_and(bits, keep_mask).view(a.dtype)
    if mantissa_bits == 0:
        # The m-bit mantissa integer 1.f * 2^m is then always 1 (odd), so every tie
        # rounds up to 2; the bit above the dropped ones is an exponent bit, not its parity.
        return torch.bitwise_and(bits + (1 << (drop - 1)), keep_mask).view(a.dtype)
    out = torch.bitwise_right_shift(bits, drop)
    out.bitwise_and_(1)  # lsb of the kept mantissa: decides ties towards even
    out.add_((1 << (drop - 1)) - 1)
    out.add_(bits)
    out.bitwise_and_(keep_mask)
    return out.view(a.dtype)


def _quantize_impl(x: torch.Tensor, fmt: AdaptivFloatFormat, bias: int | None) -> torch.Tensor:
    if x.numel() == 0:
        return x.detach().clone()
    # float32 for every dtype but float64 (exact for float16/bfloat16 inputs).
    work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xw = x.detach().to(work_dtype)
    a = xw.abs()
    amax = float(a.max())  # max propagates NaN, so one check covers NaN and Inf
    if not math.isfinite(amax):
        raise ValueError("AdaptivFloat quantisation needs a finite tensor (found NaN or Inf)")
    bias = _bias_from_emax(_emax(amax), fmt) if bias is None else bias
    bias = _check_bias(bias, fmt)
    if amax == 0.0:
        return torch.zeros_like(x)

    lo, hi = _exponent_window(fmt, bias)
    v_min, v_max = representable_range(fmt, bias)
    # Upcast if the thresholds (down to v_min/2) leave float32's normal range, so the
    # bit-level rounding and the comparisons stay exact.
    if work_dtype == torch.float32 and (lo - 1 < -126 or hi > 127):
        xw = xw.to(torch.float64)
        a = a.to(torch.float64)

    q = _round_mantissa(a, fmt.mantissa_bits, truncate=fmt.variant == "edgebert_hw")
    # One clamp does three rules: saturation at v_max (also catching a rounding carry past
    # it), and, for reserved-zero variants, rounding [v_min/2, v_min) up to v_min. Anything
    # below the flush threshold is zeroed afterwards, so the lower clamp is harmless there.
    q.clamp_(min=v_min, max=v_max)
    q.copysign_(xw)
    q.masked_fill_(a < _flush_below(fmt, v_min), 0.0)  # after copysign so flushed values are +0.0
    return q.to(x.dtype)


def _code_fields(fmt: AdaptivFloatFormat) -> tuple[int, int, int]:
    """(mantissa bits, exponent-field mask, sign shift) of a ``total_bits`` code."""
    return fmt.mantissa_bits, 2**fmt.exp_bits - 1, fmt.total_bits - 1


def encode(x: torch.Tensor, fmt: AdaptivFloatFormat, *, bias: int) -> torch.Tensor:
    """The ``total_bits``-bit integer codes (int64) of values already representable in ``fmt``.

    Layout, most significant bit first: sign | exponent field (``exp_bits``) | mantissa.
    Reserved-zero variants (``paper2020``, ``edgebert_hw``): exponent field ``k = E - lo``
    (``lo`` = lowest exponent of the window for ``bias``), (k=0, mantissa=0) is zero.
    ``ref2022`` (IEEE-like): ``k = E - lo + 1``; field 0 is zero, field ``2^e - 1`` is unused.
    Zeros keep their sign bit. Raises ValueError for a value the format cannot hold exactly
    (quantize first).
    """
    fmt = _check_format(fmt)
    bias = _check_bias(bias, fmt)
    m, exp_mask, sign_shift = _code_fields(fmt)
    lo, _hi = _exponent_window(fmt, bias)
    xd = x.detach().to(torch.float64)
    a = xd.abs()
    frac, exp2 = torch.frexp(a)  # a = frac * 2^exp2, frac in [0.5, 1): E = exp2 - 1
    e_unbiased = exp2.to(torch.int64) - 1
    mant = torch.round((frac * 2.0 - 1.0) * 2.0**m).to(torch.int64)
    k = e_unbiased - lo + (1 if fmt.variant == "ref2022" else 0)
    nonzero = a != 0
    k = torch.where(nonzero, k, torch.zeros_like(k))
    mant = torch.where(nonzero, mant, torch.zeros_like(mant))
    sign = torch.signbit(xd).to(torch.int64)
    codes = (sign << sign_shift) | (k << m) | mant
    if not torch.equal(decode(codes, fmt, bias=bias, dtype=torch.float64), xd):
        raise ValueError(f"values not representable in AdaptivFloat<{fmt.total_bits},{fmt.exp_bits}> "
                         f"({fmt.variant}) with bias {bias}; quantize them first")
    return codes


def decode(codes: torch.Tensor, fmt: AdaptivFloatFormat, *, bias: int,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values of integer codes (layout of :func:`encode`); every code decodes to a representable
    value. ``ref2022`` has codes IEEE would call denormal (field 0, mantissa != 0) or Inf/NaN
    (field ``2^e - 1``): with no denormals they flush to zero, and the top field saturates to
    ``v_max`` (what a corrupted stored word reads as)."""
    fmt = _check_format(fmt)
    bias = _check_bias(bias, fmt)
    m, exp_mask, sign_shift = _code_fields(fmt)
    lo, _hi = _exponent_window(fmt, bias)
    c = codes.to(torch.int64)
    sign = (c >> sign_shift) & 1
    k = (c >> m) & exp_mask
    mant = c & (2**m - 1)
    significand = 1.0 + mant.to(torch.float64) / 2.0**m
    if fmt.variant == "ref2022":
        zero = k == 0
        top = k == exp_mask
        magnitude = torch.ldexp(significand, k - 1 + lo)
        magnitude = torch.where(top, torch.full_like(magnitude, representable_range(fmt, bias)[1]), magnitude)
    else:
        zero = (k == 0) & (mant == 0)
        magnitude = torch.ldexp(significand, k + lo)
    magnitude = torch.where(zero, torch.zeros_like(magnitude), magnitude)
    return torch.where(sign == 1, -magnitude, magnitude).to(dtype)


class _QuantizeSTE(torch.autograd.Function):
    """Fake quantisation with a straight-through gradient (d q / d x := 1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fmt: AdaptivFloatFormat, bias: int | None) -> torch.Tensor:  # type: ignore[override]
        return _quantize_impl(x, fmt, bias)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        return grad_output, None, None


def quantize(x: torch.Tensor, fmt: AdaptivFloatFormat, *, bias: int | None = None) -> torch.Tensor:
    """Fake-quantise ``x`` to AdaptivFloat ``fmt`` with one bias for the whole tensor.

    Returns a tensor of the same shape and dtype whose values are exactly representable
    in ``fmt`` (see the module docstring for the algorithm of each variant). ``bias``
    overrides the bias derived from ``max|x|`` (same meaning as :func:`exponent_bias`,
    e.g. a calibrated activation bias). If ``x`` requires grad, the result is
    differentiable with a straight-through estimator (gradient passed unchanged).
    Raises ValueError for NaN/Inf inputs.
    """
    fmt = _check_format(fmt)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("quantize expects a floating-point torch.Tensor")
    if bias is not None:
        _check_bias(bias, fmt)
    if x.requires_grad and torch.is_grad_enabled():
        return _QuantizeSTE.apply(x, fmt, bias)
    return _quantize_impl(x, fmt, bias)


def quantize_in_float_ops(x: torch.Tensor, fmt: AdaptivFloatFormat, *, bias: int) -> torch.Tensor:
    """``quantize(x, fmt, bias=bias)`` for a float32 ``x``, written in float operations alone
    (abs, log2, floor, pow, round, clamp, where) so that a graph exporter can trace it: ONNX has
    no bit view of a float. Same values as :func:`quantize` (tested bit for bit); no gradient.

    The mantissa is rounded on the grid ``2^(e - m)`` of each value's binade ``2^e``: a power of
    two, so the division and the product are exact. ``2^floor(log2 |x|)`` is corrected by a
    factor of two where ``log2`` rounded across a power of two, by exact comparisons.
    """
    fmt = _check_format(fmt)
    bias = _check_bias(bias, fmt)
    if x.dtype != torch.float32:
        raise TypeError("quantize_in_float_ops takes float32 tensors")
    lo, hi = _exponent_window(fmt, bias)
    if lo - 3 < -126 or hi + 2 > 127:
        raise ValueError(f"bias {bias} puts the exponent window 2^{lo}..2^{hi} outside float32's normal range")
    v_min, v_max = representable_range(fmt, bias)
    flush_below = _flush_below(fmt, v_min)
    a = x.abs()
    # Below v_min/4 everything flushes and above 2^(hi+1) everything saturates: clamping first
    # keeps every grid step a normal float32.
    ac = a.clamp(min=math.ldexp(1.0, lo - 2), max=math.ldexp(1.0, hi + 1))
    binade = torch.pow(2.0, torch.floor(torch.log2(ac)))  # one Pow: the costly op in onnxruntime
    binade = torch.where(ac >= 2.0 * binade, 2.0 * binade, torch.where(ac < binade, 0.5 * binade, binade))
    step = binade * 2.0**-fmt.mantissa_bits
    units = torch.floor(ac / step) if fmt.variant == "edgebert_hw" else torch.round(ac / step)  # half to even
    q = (units * step).clamp(min=v_min, max=v_max)
    return torch.where(a < flush_below, torch.zeros_like(q), q * torch.sign(x))


#: ``include(qualified_module_name, module) -> bool`` selects modules to quantise.
ModuleFilter = Callable[[str, nn.Module], bool]


def quantize_model_weights_(
    model: nn.Module,
    fmt: AdaptivFloatFormat,
    *,
    include: ModuleFilter | None = None,
) -> dict[str, int]:
    """Fake-quantise, in place, the ``.weight`` of the selected layers, one bias per tensor.

    Candidates are ``nn.Linear`` and ``nn.Embedding`` modules. With ``include=None`` every
    ``nn.Linear`` is quantised and embeddings are left alone; otherwise exactly the
    candidates with ``include(module_name, module)`` true are quantised. A parameter shared
    by several modules is quantised once (under its first name). Biases (``.bias``) are not
    touched. Returns ``{parameter name: exponent bias used}``.
    """
    fmt = _check_format(fmt)
    biases: dict[str, int] = {}
    seen: set[int] = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, (nn.Linear, nn.Embedding)):
                continue
            selected = isinstance(module, nn.Linear) if include is None else include(name, module)
            weight = module.weight
            if not selected or id(weight) in seen:
                continue
            seen.add(id(weight))
            bias = exponent_bias(weight, fmt)
            weight.copy_(_quantize_impl(weight, fmt, bias))
            biases[f"{name}.weight" if name else "weight"] = bias
    return biases


def attach_activation_quantizers(
    model: nn.Module,
    fmt: AdaptivFloatFormat,
    *,
    include: ModuleFilter | None = None,
    biases: Sequence[int] | None = None,
    in_float_ops: bool = False,
) -> list[torch.utils.hooks.RemovableHandle]:
    """Fake-quantise the input of every selected ``nn.Linear`` on each forward call.

    Registers a forward-pre-hook that replaces the first positional input by
    ``quantize(input, fmt)``. Without ``biases`` the bias is recomputed per call from that
    input's ``max|x|`` (dynamic per-tensor scaling: a row's result then depends on the rows it
    is batched with); ``biases`` gives one static bias per selected module, in
    ``model.named_modules()`` order (calibrated ahead, as a deployed datapath has them).
    ``include(name, module)`` selects among the ``nn.Linear`` modules (default: all). Gradients
    pass straight through. ``in_float_ops`` (static ``biases`` only) quantizes with
    :func:`quantize_in_float_ops`, which graph exporters can trace. Call ``handle.remove()`` on
    the returned handles to detach the quantisers.
    """
    fmt = _check_format(fmt)
    selected = [m for name, m in model.named_modules()
                if isinstance(m, nn.Linear) and (include is None or include(name, m))]
    if biases is not None and len(biases) != len(selected):
        raise ValueError(f"{len(biases)} activation biases for {len(selected)} quantized matmul inputs")
    if in_float_ops and biases is None:
        raise ValueError("in_float_ops needs static biases")

    def make_hook(bias: int | None):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            if not args or not isinstance(args[0], torch.Tensor) or not args[0].is_floating_point():
                return None
            q = quantize_in_float_ops(args[0], fmt, bias=bias) if in_float_ops else quantize(args[0], fmt, bias=bias)
            return (q,) + tuple(args[1:])
        return hook

    return [m.register_forward_pre_hook(make_hook(None if biases is None else int(biases[i])))
            for i, m in enumerate(selected)]
