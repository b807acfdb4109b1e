"""Tests for dse.compression.adaptivfloat.

Golden values are worked out by hand in the comments, from AdaptivFloat as published (Tambe et al.,
"Algorithm-Hardware Co-Design of Adaptive Floating-Point Encodings for Resilient Deep Learning
Inference", DAC 2020; reference code ttambe/AdaptivFloat ``adaptivfloat.py``) and as EdgeBERT's
accelerator stores it (harvard-acc/EdgeBERT ``hw/cmod/include/AdpfloatSpec.h``). Notation: n total
bits, e exponent bits, m = n - 1 - e mantissa bits, E_max = floor(log2(max|x|)).
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dse.compression.adaptivfloat import (
    AdaptivFloatFormat,
    attach_activation_quantizers,
    decode,
    encode,
    exponent_bias,
    quantize,
    quantize_in_float_ops,
    quantize_model_weights_,
    representable_range,
)

F32 = torch.float32


def t32(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F32)


def assert_exact(actual: torch.Tensor, expected: list[float]) -> None:
    exp = t32(expected)
    assert actual.dtype == F32
    assert torch.equal(actual, exp), f"\n got      {actual.tolist()}\n expected {exp.tolist()}"


# ---------------------------------------------------------------------------------------------
# Independent scalar model of the algorithm (plain Python floats), used by the property tests.
# ---------------------------------------------------------------------------------------------


def _window(fmt: AdaptivFloatFormat, bias: int) -> tuple[int, int]:
    e = fmt.exp_bits
    if fmt.variant == "paper2020":
        return bias, bias + 2**e - 1
    if fmt.variant == "ref2022":
        return -(2 ** (e - 1)) + 2 - bias, 2 ** (e - 1) - 1 - bias
    return bias - 10, bias - 3


def scalar_model(v: float, fmt: AdaptivFloatFormat, bias: int) -> float:
    m = fmt.mantissa_bits
    lo, hi = _window(fmt, bias)
    a = abs(v)
    v_max = 2.0**hi * (2 - 2.0**-m)
    if fmt.variant == "ref2022":
        if a < 2.0**lo:
            return 0.0
    else:
        v_min = 2.0**lo * (1 + 2.0**-m)
        if a < v_min / 2:
            return 0.0
        a = max(a, v_min)  # [v_min/2, v_min) -> v_min (boundary included, like the RTL)
    a = min(a, v_max)
    f, k = math.frexp(a)  # a = f * 2^k, f in [0.5, 1)
    scaled = f * 2.0 ** (m + 1)  # the m-bit mantissa as an integer-valued float
    r = math.floor(scaled) if fmt.variant == "edgebert_hw" else round(scaled)  # round: half-even
    out = min(r * 2.0 ** (k - m - 1), v_max)
    return math.copysign(out, v)


def codebook(fmt: AdaptivFloatFormat, bias: int) -> set[float]:
    """All representable magnitudes (zero included) for this format and bias."""
    m = fmt.mantissa_bits
    lo, hi = _window(fmt, bias)
    values = {0.0}
    for exp in range(lo, hi + 1):
        for man in range(2**m):
            if fmt.variant != "ref2022" and exp == lo and man == 0:
                continue  # reserved for zero
            values.add(2.0**exp * (1 + man / 2**m))
    return values


def all_formats() -> list[AdaptivFloatFormat]:
    fmts = []
    for n in range(4, 17):
        for e in range(1, 6):
            if e >= n:
                continue
            fmts.append(AdaptivFloatFormat(n, e, "paper2020"))
            if e >= 2:
                fmts.append(AdaptivFloatFormat(n, e, "ref2022"))
    fmts.append(AdaptivFloatFormat(8, 3, "edgebert_hw"))
    return fmts


ALL_FORMATS = all_formats()
P8_3 = AdaptivFloatFormat(8, 3, "paper2020")
R8_3 = AdaptivFloatFormat(8, 3, "ref2022")
HW = AdaptivFloatFormat(8, 3, "edgebert_hw")


# ---------------------------------------------------------------------------------------------
# Golden tests, version A ("paper2020"), n=8, e=3, m=4
# ---------------------------------------------------------------------------------------------
#
# max|x| = 1.0  ->  E_max = 0,  bias = E_max - (2^3 - 1) = -7,  exponents -7 .. 0
# v_min   = 2^-7 * (1 + 1/16) = 17/2048 = 0.00830078125      (code exp=0,man=0 is zero)
# v_min/2 = 17/4096 = 0.004150390625
# v_max   = 2^0 * (2 - 1/16)  = 31/16   = 1.9375
# ulp in [0.5, 1) = 2^-1 / 16 = 1/32;   ulp in [0.25, 0.5) = 1/64


def test_paper2020_golden_max_one() -> None:
    x = t32(
        [
            1.0,  # exactly representable (exp 0, mantissa 0)                     -> 1.0
            0.0,  # zero                                                         -> 0.0
            0.004,  # < v_min/2 = 0.00415: flushed                               -> 0.0
            17 / 4096,  # == v_min/2: boundary, rounded UP to v_min (RTL rule)   -> 17/2048
            0.005,  # in (v_min/2, v_min): round up to smallest normal           -> 17/2048
            -0.005,  # same, negative                                            -> -17/2048
            2**-7,  # 2^bias * 1.0 is the reserved zero code, < v_min: round up   -> 17/2048
            0.0087,  # 2^-7 * 1.11360 -> 16*0.11360 = 1.8176 -> man 2 -> 2^-7*18/16 = 0.0087890625
            0.3,  # 2^-2 * 1.2 -> 19.2 sixteenths -> 19 -> 19/64                 -> 0.296875
            -0.3,  # negative                                                    -> -0.296875
            0.546875,  # 35/64 = 2^-1 * 1.09375 -> 17.5: tie, 17 odd/18 even -> 18 -> 0.5625 (even-up)
            0.578125,  # 37/64 = 2^-1 * 1.15625 -> 18.5: tie, 18 even/19 odd -> 18 -> 0.5625 (even-down)
            0.984375,  # 63/64 = 2^-1 * 1.96875 -> 31.5: tie -> 32 (even): mantissa 2.0 carries -> 1.0
        ]
    )
    assert exponent_bias(x, P8_3) == -7
    assert representable_range(P8_3, -7) == (17 / 2048, 1.9375)
    q = quantize(x, P8_3)
    assert_exact(
        q,
        [
            1.0,
            0.0,
            0.0,
            17 / 2048,
            17 / 2048,
            -17 / 2048,
            17 / 2048,
            0.0087890625,
            0.296875,
            -0.296875,
            0.5625,
            0.5625,
            1.0,
        ],
    )


def test_boundary_half_vmin_differs_from_numpy_reference_quirk() -> None:
    # The 2020 NumPy reference uses `A < v_min/2 -> 0` and `v_min/2 < A < v_min -> v_min`, so
    # A == v_min/2 = 17/4096 = 2^-8 * 17/16 would survive untouched: its mantissa 1/16 is exact
    # at m=4, so it would come out as 17/4096 -- exponent -8 lies below the window -7..0, i.e.
    # not representable. We follow the RTL (flush only A < v_min/2), giving v_min.
    x = t32([1.0, 17 / 4096, -17 / 4096])
    q = quantize(x, P8_3)
    assert_exact(q, [1.0, 17 / 2048, -17 / 2048])
    assert 17 / 4096 not in codebook(P8_3, -7)


def test_paper2020_saturation() -> None:
    # max|x| = 1.99 -> E_max = 0, bias = -7, v_max = 1.9375. Inside the window a value <= v_max
    # can never round past v_max (v_max is itself a grid point), so saturation needs
    # |x| in (v_max, 2^(E_max+1)) = (1.9375, 2).
    x = t32(
        [
            1.99,  # > v_max: saturate                                           -> 1.9375
            1.96875,  # 63/32 = exact midpoint 31.5/16: unclamped rounding would go to
            #           32/16 = 2.0 (half-even carries into exponent 1, outside window);
            #           > v_max, so clipped                                      -> 1.9375
            1.95,  # 31.2 sixteenths -> 31 (below v_max, plain rounding)         -> 1.9375
            1.90625,  # 61/32 -> 30.5: tie, 30 even                              -> 1.875
            -1.99,  # negative saturation                                        -> -1.9375
        ]
    )
    assert exponent_bias(x, P8_3) == -7
    assert_exact(quantize(x, P8_3), [1.9375, 1.9375, 1.9375, 1.875, -1.9375])


def test_paper2020_saturation_with_fixed_bias() -> None:
    # Force bias = -8: exponents -8 .. -1, v_max = 2^-1 * 31/16 = 0.96875,
    # v_min = 2^-8 * 17/16 = 0.0041503906.
    x = t32(
        [
            1.0,  # > v_max                                                      -> 0.96875
            0.9844,  # > v_max (would round to 2^-1*32/16 = 1.0: carry), clipped -> 0.96875
            0.975,  # 2^-1 * 1.95 -> 31.2 -> 31 = v_max                          -> 0.96875
            0.5,  # exact                                                        -> 0.5
            0.003,  # in (v_min/2 = 0.00207, v_min): round up                    -> 17/4096
        ]
    )
    assert_exact(quantize(x, P8_3, bias=-8), [0.96875, 0.96875, 0.96875, 0.5, 17 / 4096])


def test_all_zero_tensor_and_empty() -> None:
    for fmt in (P8_3, R8_3, HW):
        z = torch.zeros(3, 4)
        q = quantize(z, fmt)
        assert torch.equal(q, z)
        assert not torch.signbit(q).any()
        # Reference convention: frexp(0) -> E_max = -1.
        assert exponent_bias(z, fmt) == {"paper2020": -8, "ref2022": 4, "edgebert_hw": 2}[fmt.variant]
        empty = torch.empty(0, 5)
        assert quantize(empty, fmt).shape == (0, 5)


def test_flushed_values_are_positive_zero() -> None:
    q = quantize(t32([1.0, -1e-4, 1e-4]), P8_3)
    assert q[1] == 0 and not torch.signbit(q[1])


# ---------------------------------------------------------------------------------------------
# Version B ("ref2022") vs version A on the same tensor, n=8, e=3
# ---------------------------------------------------------------------------------------------
#
# max|x| = 1.0 -> E_max = 0.
# A: bias = -7, window 2^-7..2^0, v_min = 17/2048 (round-up region [17/4096, 17/2048)).
# B: bias = (2^2 - 1) - 0 = 3, exp_lo = -4 + 2 - 3 = -5, exp_hi = 4 - 1 - 3 = 0:
#    |x| < 2^-5 = 0.03125 -> 0 (no round-up region), v_max = 1.9375.


def test_paper2020_vs_ref2022_same_tensor() -> None:
    x = t32([1.0, 0.02, 0.03, 0.03125, 0.005, 0.1, -0.1])
    assert exponent_bias(x, P8_3) == -7
    assert exponent_bias(x, R8_3) == 3
    assert representable_range(R8_3, 3) == (0.03125, 1.9375)
    # A: 0.02 = 2^-6 * 1.28 -> 20.48 -> 20 -> 2^-6 * 20/16 = 0.01953125
    #    0.03 = 2^-6 * 1.92 -> 30.72 -> 31 -> 31/1024 = 0.0302734375
    #    0.03125 = 2^-5 exact;  0.005 -> v_min = 17/2048
    #    0.1 = 2^-4 * 1.6 -> 25.6 -> 26 -> 26/256 = 0.1015625
    assert_exact(
        quantize(x, P8_3),
        [1.0, 0.01953125, 0.0302734375, 0.03125, 17 / 2048, 0.1015625, -0.1015625],
    )
    # B: 0.02, 0.03, 0.005 < 2^-5 -> 0 (0.03 would round to 2^-5, but B flushes first);
    #    0.03125 = 2^-5 is the smallest normal; 0.1 -> 0.1015625 as in A.
    assert_exact(quantize(x, R8_3), [1.0, 0.0, 0.0, 0.03125, 0.0, 0.1015625, -0.1015625])


def test_ref2022_saturation_and_ties() -> None:
    # max 1.99 -> E_max = 0, bias 3, v_max = 1.9375; 0.546875 tie -> 0.5625 as in A.
    x = t32([1.99, 1.96875, 0.546875, 0.578125])
    assert_exact(quantize(x, R8_3), [1.9375, 1.9375, 0.5625, 0.5625])


# ---------------------------------------------------------------------------------------------
# EdgeBERT hardware format: value = (-1)^s 2^(exp + bias - 10) (1 + man/16), truncation
# ---------------------------------------------------------------------------------------------
#
# max|x| = 1.0 -> E_max = 0 -> bias field = clamp(0 + 3, 0, 7) = 3 -> exponents -7 .. 0
# (same window as paper2020 n=8,e=3): min = 17/2048, max = 1.9375.


def test_hw_truncation_vs_paper_rounding() -> None:
    x = t32([1.0, 0.59, -0.59, 0.984375, 0.3, 0.15, 0.005, 0.004, 17 / 4096])
    assert exponent_bias(x, HW) == 3
    assert representable_range(HW, 3) == (17 / 2048, 1.9375)
    # 0.59 = 2^-1 * 1.18 -> 18.88 sixteenths: truncate -> 18 -> 0.5625; round -> 19 -> 0.59375
    # 0.984375 -> 31.5: truncate -> 31 -> 0.96875; round (half-even) -> 32 -> carry -> 1.0
    # 0.3 -> 19.2 -> 19 either way -> 0.296875
    # 0.15 = 2^-3 * 1.2 -> 19.2 -> 19 -> 2^-3 * 19/16 = 0.1484375 (exp code 4: 4 + 3 - 10 = -3)
    # 0.005 -> min; 0.004 -> 0; 17/4096 == min/2 -> min (set_value: only `< 0.5*min` flushes)
    assert_exact(
        quantize(x, HW),
        [1.0, 0.5625, -0.5625, 0.96875, 0.296875, 0.1484375, 17 / 2048, 0.0, 17 / 2048],
    )
    assert_exact(
        quantize(x, P8_3),
        [1.0, 0.59375, -0.59375, 1.0, 0.296875, 0.1484375, 17 / 2048, 0.0, 17 / 2048],
    )


def test_hw_bias_clamped_high() -> None:
    # max 100 -> E_max = 6 -> bias = min(9, 7) = 7 -> exponents -3 .. 4, max = 2^4 * 31/16 = 31,
    # min = 2^-3 * 17/16 = 0.1328125.
    x = t32([100.0, 20.0, 0.5, 0.1, 0.05])
    assert exponent_bias(x, HW) == 7
    # 20 = 2^4 * 1.25 exact; 0.1 in (min/2, min) -> min; 0.05 < min/2 = 0.0664 -> 0
    assert_exact(quantize(x, HW), [31.0, 20.0, 0.5, 0.1328125, 0.0])


def test_hw_bias_clamped_low() -> None:
    # max 1e-4 -> E_max = -14 (2^-14 = 6.1e-5) -> bias = max(-11, 0) = 0 -> exponents -10 .. -3,
    # min = 2^-10 * 17/16 = 17/16384 = 0.00103759765625, min/2 = 0.000518798828125.
    assert exponent_bias(t32([1e-4]), HW) == 0
    assert_exact(quantize(t32([1e-4, -5e-5]), HW), [0.0, 0.0])
    # 6e-4 is in (min/2, min): rounded up to min, i.e. above max|x| (bias cannot go lower).
    assert_exact(quantize(t32([6e-4, -6e-4]), HW), [17 / 16384, -17 / 16384])


def test_hw_decode_formula_roundtrip() -> None:
    # Every code (exp, man) != (0, 0) decodes to 2^(exp + bias - 10) * (1 + man/16) and is a
    # fixed point of quantize with that bias.
    bias = 5
    codes = [2.0 ** (exp + bias - 10) * (1 + man / 16) for exp in range(8) for man in range(16)][1:]
    x = t32(codes)
    assert len(codes) == 127
    assert torch.equal(quantize(x, HW, bias=bias), x)
    assert exponent_bias(x, HW) == bias  # max = 2^2 * 31/16 -> E_max = 2 -> 2 + 3


def test_exponent_bias_values() -> None:
    x1, x075 = t32([1.0, -0.2]), t32([-0.75, 0.1])  # E_max = 0 and -1
    assert [exponent_bias(x1, f) for f in (P8_3, R8_3, HW)] == [-7, 3, 3]
    assert [exponent_bias(x075, f) for f in (P8_3, R8_3, HW)] == [-8, 4, 2]
    # n=16, e=5, max 1000 -> E_max = 9: A: 9 - 31 = -22; B: 15 - 9 = 6
    x = t32([1000.0])
    assert exponent_bias(x, AdaptivFloatFormat(16, 5)) == -22
    assert exponent_bias(x, AdaptivFloatFormat(16, 5, "ref2022")) == 6


def test_mantissa_zero_format() -> None:
    # n=4, e=3, m=0 (powers of two only). max 1.0: bias = -7, exponents -7..0,
    # v_min = 2^-7 * (1 + 1) = 2^-6, v_max = 2^0 * (2 - 1) = 1.
    fmt = AdaptivFloatFormat(4, 3)
    assert representable_range(fmt, -7) == (2**-6, 1.0)
    # 0.75 = 2^-1 * 1.5 -> tie between 1 and 2 -> 2 (even) -> 1.0; 0.7 -> 1.4 -> 1 -> 0.5;
    # 0.01 in [2^-7, 2^-6) -> v_min = 2^-6; 0.007 < 2^-7 -> 0
    x = t32([1.0, 0.75, 0.7, 0.01, 0.007])
    assert_exact(quantize(x, fmt), [1.0, 1.0, 0.5, 2**-6, 0.0])


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------

# Magnitudes in [2^-20, 2^20] (times 2^+-60 below) keep every result in float32's normal range;
# dyadic values k/512 land exactly on rounding ties and code boundaries.
_positive = st.floats(min_value=2.0**-20, max_value=2.0**20, width=32)
element = st.one_of(
    st.just(0.0),
    st.builds(lambda neg, v: -v if neg else v, st.booleans(), _positive),
    st.integers(min_value=-4096, max_value=4096).map(lambda k: k / 512),
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(element, min_size=1, max_size=48),
    scale_exp=st.integers(min_value=-60, max_value=60),
    fmt=st.sampled_from(ALL_FORMATS),
)
def test_properties(values: list[float], scale_exp: int, fmt: AdaptivFloatFormat) -> None:
    x = t32(values) * 2.0**scale_exp  # exact power-of-two scaling, stays in float32 range
    bias = exponent_bias(x, fmt)
    q = quantize(x, fmt)
    m = fmt.mantissa_bits
    amax = float(x.abs().max())

    # Same shape/dtype, finite, deterministic, same result as passing the bias explicitly.
    assert q.shape == x.shape and q.dtype == x.dtype
    assert torch.isfinite(q).all()
    assert torch.equal(q, quantize(x, fmt))
    assert torch.equal(q, quantize(x, fmt, bias=bias))

    # Element-wise agreement with the independent scalar model.
    expected = [scalar_model(v, fmt, bias) for v in x.tolist()]
    assert q.tolist() == expected

    # Every output is representable; re-quantising with the same bias is the identity.
    book = codebook(fmt, bias)
    assert len(book) <= 2 ** (fmt.total_bits - 1)
    assert set(q.abs().tolist()) <= book
    assert torch.equal(quantize(q, fmt, bias=bias), q)
    if amax > 0 and bool((q != 0).any()):
        assert exponent_bias(q, fmt) == bias  # so auto-bias re-quantisation is idempotent too
    assert torch.equal(quantize(q, fmt), q)

    # Magnitude bound. For the hardware format the 3-bit bias can clamp at 0, and then a tiny
    # tensor rounds up to the hardware minimum, so the bound there is max(max|x|, v_min).
    if fmt.variant == "edgebert_hw":
        v_min = representable_range(fmt, bias)[0]
        assert float(q.abs().max()) <= max(amax, v_min)
    else:
        assert float(q.abs().max()) <= amax * (1 + 2.0**-m)

    # Sign preserved or zero.
    assert bool(((q == 0) | (torch.sign(q) == torch.sign(x))).all())
    assert len(set(q.abs().tolist())) <= 2 ** (fmt.total_bits - 1)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(element, min_size=1, max_size=48), scale_exp=st.integers(min_value=-16, max_value=8))
def test_hw_properties_unclamped_bias_range(values: list[float], scale_exp: int) -> None:
    # Scales where the 3-bit bias field is mostly not saturated (E_max in -3..4 -> bias 0..7).
    x = t32(values) * 2.0**scale_exp
    bias = exponent_bias(x, HW)
    q = quantize(x, HW)
    assert q.tolist() == [scalar_model(v, HW, bias) for v in x.tolist()]
    assert set(q.abs().tolist()) <= codebook(HW, bias)
    # Truncation never increases a magnitude inside the window.
    v_min, v_max = representable_range(HW, bias)
    inside = (x.abs() >= v_min) & (x.abs() <= v_max)
    assert bool((q.abs()[inside] <= x.abs()[inside]).all())
    # Same window as paper2020 n=8,e=3 when the bias field is not clamped; rounding and
    # truncation then differ by at most one mantissa step.
    e_max = math.frexp(float(x.abs().max()))[1] - 1
    if 0 <= e_max + 3 <= 7:
        qp = quantize(x, P8_3)
        assert bias == exponent_bias(x, P8_3) + 10
        assert bool(((qp - q).abs() <= x.abs() * 2.0**-4 + 1e-30).all())


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f"{f.variant}-{f.total_bits}-{f.exp_bits}")
def test_format_grid(fmt: AdaptivFloatFormat) -> None:
    gen = torch.Generator().manual_seed(fmt.total_bits * 10 + fmt.exp_bits)
    x = torch.randn(512, generator=gen) * 3.0
    x[0] = 0.0
    q = quantize(x, fmt)
    bias = exponent_bias(x, fmt)
    assert torch.isfinite(q).all()
    assert q.tolist() == [scalar_model(v, fmt, bias) for v in x.tolist()]
    mags = set(q.abs().tolist())
    assert mags <= codebook(fmt, bias)
    assert len(mags) <= 2 ** (fmt.total_bits - 1)
    assert torch.equal(quantize(q, fmt), q)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f"{f.variant}-{f.total_bits}-{f.exp_bits}")
def test_float_ops_version_is_bit_identical(fmt: AdaptivFloatFormat) -> None:
    """The exportable version agrees with the bit-level one on every code, every midpoint between
    neighbouring codes (ties), one float32 ulp either side of both, the flush and saturation
    boundaries, and random values: signs and zeros included."""
    bias = exponent_bias(torch.tensor([5.0]), fmt)
    v_min, v_max = representable_range(fmt, bias)
    codes = sorted(codebook(fmt, bias))
    points = torch.tensor(codes + [(a + b) / 2 for a, b in zip(codes, codes[1:])]
                          + [v_min / 2, v_min / 4, v_max * 1.5, 2 * v_max, 1e-30], dtype=F32)
    points = torch.cat([points, torch.nextafter(points, torch.tensor(math.inf)),
                        torch.nextafter(points, torch.tensor(0.0)), torch.randn(4096) * 3])
    x = torch.cat([points, -points])
    want, got = quantize(x, fmt, bias=bias), quantize_in_float_ops(x, fmt, bias=bias)
    assert torch.equal(got, want) and torch.equal(torch.signbit(got), torch.signbit(want))


def test_float_ops_version_refuses_what_float32_cannot_hold() -> None:
    with pytest.raises(TypeError, match="float32"):
        quantize_in_float_ops(torch.ones(3, dtype=torch.float64), P8_3, bias=-7)
    with pytest.raises(ValueError, match="float32's normal range"):
        quantize_in_float_ops(torch.ones(3), P8_3, bias=-130)


@pytest.mark.parametrize("variant,exp_bits", [("paper2020", 3), ("paper2020", 4), ("ref2022", 3), ("ref2022", 4)])
def test_error_decreases_with_bits(variant: str, exp_bits: int) -> None:
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    errs = []
    for n in range(exp_bits + 2, 17):
        q = quantize(x, AdaptivFloatFormat(n, exp_bits, variant))  # type: ignore[arg-type]
        errs.append(float(((q.double() - x.double()) ** 2).mean()))
    assert all(b < a for a, b in zip(errs, errs[1:])), errs


def test_dtypes_shapes_and_layout() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, 6, generator=gen)
    q = quantize(x, P8_3)
    assert q.shape == x.shape
    # float64 input: same values, float64 output.
    q64 = quantize(x.double(), P8_3)
    assert q64.dtype == torch.float64 and torch.equal(q64.float(), q)
    # float16 / bfloat16: computed in float32 then cast back (8-bit format fits both exactly).
    for dt in (torch.float16, torch.bfloat16):
        qh = quantize(x.to(dt), P8_3)
        assert qh.dtype == dt
        assert torch.equal(qh.float(), quantize(x.to(dt).float(), P8_3))
    # Non-contiguous input.
    xt = x.transpose(0, 2)
    assert torch.equal(quantize(xt, P8_3), q.transpose(0, 2))
    # Input is not modified.
    x_copy = x.clone()
    quantize(x, HW)
    assert torch.equal(x, x_copy)


def test_tiny_float32_tensor_uses_exact_thresholds() -> None:
    # max 2^-120 with e=5: window 2^-151 .. 2^-120, below float32's normal range; computed in
    # float64 internally. 2^-120 * 1.3 -> mantissa 20.8/16 -> 21 -> 2^-120 * 21/16.
    fmt = AdaptivFloatFormat(8, 5)  # m = 2
    x = t32([2.0**-120, 2.0**-120 * 1.3])
    # m=2: 1.3 * 4 = 5.2 -> 5 -> 1.25
    assert_exact(quantize(x, fmt), [2.0**-120, 2.0**-120 * 1.25])


def test_straight_through_gradient() -> None:
    x = torch.tensor([0.3, -0.004, 1.99, 0.59], requires_grad=True)
    q = quantize(x, P8_3)
    assert q.requires_grad
    assert torch.equal(q.detach(), quantize(x.detach(), P8_3))
    (q * t32([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert torch.equal(x.grad, t32([1.0, 2.0, 3.0, 4.0]))


def test_speed_is_vectorised() -> None:
    # 22M floats take ~0.3 s on 2 cores; this guards against accidental Python loops
    # with a generous bound on a smaller tensor.
    x = torch.randn(4_000_000, generator=torch.Generator().manual_seed(2))
    quantize(x, P8_3)
    start = time.perf_counter()
    quantize(x, P8_3)
    assert time.perf_counter() - start < 2.0


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(total_bits=3, exp_bits=1), "total_bits"),
        (dict(total_bits=17, exp_bits=3), "total_bits"),
        (dict(total_bits=8, exp_bits=0), "exp_bits"),
        (dict(total_bits=8, exp_bits=6), "exp_bits"),
        (dict(total_bits=4, exp_bits=4), "exp_bits"),
        (dict(total_bits=5, exp_bits=5), "exp_bits"),
        (dict(total_bits=8.0, exp_bits=3), "int"),
        (dict(total_bits=8, exp_bits=3, variant="ieee"), "variant"),
        (dict(total_bits=8, exp_bits=1, variant="ref2022"), "ref2022"),
        (dict(total_bits=8, exp_bits=4, variant="edgebert_hw"), "edgebert_hw"),
        (dict(total_bits=16, exp_bits=3, variant="edgebert_hw"), "edgebert_hw"),
    ],
)
def test_format_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AdaptivFloatFormat(**kwargs)


def test_quantize_validation() -> None:
    with pytest.raises(ValueError, match="finite"):
        quantize(t32([1.0, float("nan")]), P8_3)
    with pytest.raises(ValueError, match="finite"):
        quantize(t32([1.0, float("inf")]), P8_3)
    with pytest.raises(ValueError, match="finite"):
        exponent_bias(t32([float("-inf")]), P8_3)
    with pytest.raises(ValueError, match="0..7"):
        quantize(t32([1.0]), HW, bias=8)
    with pytest.raises(ValueError, match="0..7"):
        quantize(t32([1.0]), HW, bias=-1)
    with pytest.raises(ValueError, match="float64 range"):
        quantize(t32([1.0]), P8_3, bias=5000)
    with pytest.raises(TypeError):
        quantize(torch.tensor([1, 2]), P8_3)
    with pytest.raises(TypeError):
        quantize(t32([1.0]), (8, 3))  # type: ignore[arg-type]


def test_format_properties() -> None:
    assert AdaptivFloatFormat(8, 3).mantissa_bits == 4
    assert AdaptivFloatFormat(16, 5).mantissa_bits == 10
    assert AdaptivFloatFormat(4, 3).mantissa_bits == 0
    with pytest.raises(AttributeError):
        P8_3.total_bits = 9  # type: ignore[misc]  # frozen


# ---------------------------------------------------------------------------------------------
# Model helpers
# ---------------------------------------------------------------------------------------------


def tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_quantize_model_weights_default_linear_only() -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    biases = quantize_model_weights_(model, P8_3)
    assert set(biases) == {"1.weight", "3.weight"}
    for name in ("1.weight", "3.weight"):
        w = model.state_dict()[name]
        assert biases[name] == exponent_bias(before[name], P8_3)
        assert not torch.equal(w, before[name])  # random weights are not all representable
        assert torch.equal(w, quantize(before[name], P8_3))
        assert torch.equal(quantize(w, P8_3, bias=biases[name]), w)
    # Embedding and Linear biases untouched.
    for name in ("0.weight", "1.bias", "3.bias"):
        assert torch.equal(model.state_dict()[name], before[name])
    assert model[1].weight.requires_grad  # still a trainable parameter


def test_quantize_model_weights_include_filter() -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    biases = quantize_model_weights_(
        model, HW, include=lambda name, mod: isinstance(mod, nn.Embedding) or name == "3"
    )
    assert set(biases) == {"0.weight", "3.weight"}
    assert torch.equal(model[0].weight, quantize(before["0.weight"], HW))
    assert torch.equal(model[1].weight, before["1.weight"])  # excluded by the filter
    assert all(0 <= b <= 7 for b in biases.values())


def test_quantize_model_weights_shared_parameter_once() -> None:
    lin = nn.Linear(4, 4)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 4))
    model[2].weight = lin.weight  # tied
    biases = quantize_model_weights_(model, P8_3)
    assert list(biases) == ["0.weight"]


def test_attach_activation_quantizers() -> None:
    model = tiny_model()[1:]  # Linear -> ReLU -> Linear
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    ref = model(x)
    handles = attach_activation_quantizers(model, P8_3)
    assert len(handles) == 2
    out = model(x)
    # Manual: each Linear sees its input quantised with a per-call, per-tensor bias.
    h = torch.relu(model[0](quantize(x, P8_3)))
    manual = model[2](quantize(h, P8_3))
    assert torch.equal(out, manual)
    assert not torch.equal(out, ref)
    # Gradient still flows to the input (straight-through).
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    for handle in handles:
        handle.remove()
    assert torch.equal(model(x), ref)


def test_attach_activation_quantizers_include() -> None:
    model = tiny_model()[1:]
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(4))
    # Slicing keeps the original child names: "1" (Linear), "2" (ReLU), "3" (Linear).
    handles = attach_activation_quantizers(model, HW, include=lambda name, mod: name == "3")
    assert len(handles) == 1
    manual = model[2](quantize(torch.relu(model[0](x)), HW))
    assert torch.equal(model(x), manual)
    handles[0].remove()


# --- integer codes (encode/decode): what an eNVM array stores ---

@pytest.mark.parametrize(("variant", "value", "code"), [
    # paper2020 <8,3>, max 1.5: E_max 0, bias -7, window 2^-7..2^0, m = 4
    ("paper2020", 1.5, 0b0_111_1000),  # 2^0 * 1.1000b: field 7, mantissa 8
    ("paper2020", -0.25, 0b1_101_0000),  # -2^-2: field 5
    ("paper2020", 2.0**-7 * (1 + 1 / 16), 0b0_000_0001),  # v_min: (0, 0) is zero
    ("paper2020", 0.0, 0),
    # edgebert_hw: bias field E_max + 3 = 3, exponent exp + 3 - 10: the same window here
    ("edgebert_hw", 1.5, 0b0_111_1000),
    # ref2022: bias 3 - E_max = 3, window 2^-5..2^0, field = E + 5 + 1 (0 = zero, 7 unused)
    ("ref2022", 1.5, 0b0_110_1000),
    ("ref2022", 2.0**-5, 0b0_001_0000),
])
def test_encode_golden_codes(variant: str, value: float, code: int) -> None:
    fmt = AdaptivFloatFormat(8, 3, variant)  # type: ignore[arg-type]
    x = torch.tensor([1.5, value])
    bias = exponent_bias(x, fmt)
    assert int(encode(x, fmt, bias=bias)[1]) == code
    assert float(decode(torch.tensor([code]), fmt, bias=bias)[0]) == value


def test_ref2022_unused_codes_decode_to_representable_values() -> None:
    fmt = AdaptivFloatFormat(8, 3, "ref2022")
    # field 7 saturates to v_max = 2^0 * (2 - 1/16); field 0 with a mantissa flushes to zero
    assert decode(torch.tensor([0b0_111_0011, 0b1_000_0101]), fmt, bias=3).tolist() == [1.9375, 0.0]


def test_encode_refuses_unquantized_values() -> None:
    with pytest.raises(ValueError, match="not representable"):
        encode(torch.tensor([1.5, 1.03]), AdaptivFloatFormat(8, 3), bias=-7)


@pytest.mark.parametrize("variant", ["paper2020", "ref2022", "edgebert_hw"])
def test_every_code_decodes_to_a_representable_value(variant: str) -> None:
    fmt = AdaptivFloatFormat(8, 3, variant)  # type: ignore[arg-type]
    values = decode(torch.arange(256), fmt, bias=3)
    assert torch.equal(quantize(values, fmt, bias=3), values)
