"""Arithmetic energy and area of one MAC by number format and bit width (hw-constants §2.4, §2.6).

Bit-width rules at 45nm / 0.9V (fits to Horowitz ISSCC'14):
    E_mul_int(a, b) = c_mul * a * b            (c_mul = 0.0031 pJ/bit^2; a = b gives 0.0031*b^2)
    E_add_int(b)    = c_add * b                (c_add = 0.0031 pJ/bit)
    E_mul_fp(m, w)  = c_m * (m+1)^2 + c_w * w  (c_m = 0.00449, c_w = 0.0348)
    E_add_fp(w)     = c_fa * w                 (c_fa = 0.028)
AdaptivFloat <n, e> (1 sign, e exponent, m = n-e-1 mantissa bits) uses EdgeBERT's hybrid
float-integer (HFINT) MAC: multiply significands, add exponents, accumulate in fixed point:
    E_HFINT = E_mul_int(m_w+1, m_a+1) + E_add_int(max(e_w, e_a)) + E_add_int(b_acc)
An integer MAC of the same widths:  E_INT = E_mul_int(n_w, n_a) + E_add_int(b_acc).
Both then get pipeline/operand registers, (n_w + n_a + b_acc + 8) bits at Aladdin's 0.009 pJ/bit
(40nm), and are scaled to (node, V) with Stillmaker and (V/0.8)^2.
The accumulator is b_acc = max(16, 2*max(n_w, n_a)) bits (16 for 8-bit operands, as in EdgeBERT).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hwmodels import scaling, techdata

MacFormat = Literal["adaptivfloat", "int"]

_RULES = "bit_width_rules_45nm_0v9"
_C_MUL = techdata.number("compute", _RULES, "int_mul_pj_per_bit2")
_C_ADD = techdata.number("compute", _RULES, "int_add_pj_per_bit")
_C_FP_SIG = techdata.number("compute", _RULES, "fp_mul_pj_per_significand_bit2")
_C_FP_WORD = techdata.number("compute", _RULES, "fp_mul_pj_per_word_bit")
_C_FP_ADD = techdata.number("compute", _RULES, "fp_add_pj_per_word_bit")
_ACC_MIN_BITS = int(techdata.value("compute", "mac_datapath", "accumulator_bits_min"))
_REG_PJ_PER_BIT_40NM = techdata.number("compute", "mac_datapath", "register_pj_per_bit_40nm_0v8")
_REG_EXTRA_BITS = techdata.number("compute", "mac_datapath", "pipeline_register_extra_bits")
_AF_AREA_RATIO = techdata.number("compute", "mac_datapath", "adaptivfloat_vs_int_pe_area_ratio")
_MUL8_AREA_UM2 = techdata.number("compute", "operator_area", "int8_mul_area_um2_45nm")
_MUL_AREA_EXP = techdata.number("compute", "operator_area", "mul_area_width_exponent")
_ADD_AREA_UM2_PER_BIT = techdata.number("compute", "operator_area", "add_area_um2_per_bit_45nm")
_REG_AREA_UM2_PER_BIT_12NM = techdata.number("compute", "operator_area", "register_area_um2_per_bit_12nm")

_H_NODE = techdata.number("scaling", "stillmaker", "horowitz_node_nm")
_H_V = techdata.number("scaling", "stillmaker", "horowitz_voltage_v")
_A_NODE = techdata.number("scaling", "stillmaker", "aladdin_node_nm")
_REF_V = scaling.REFERENCE_VOLTAGE_V

ArrayLike = np.ndarray | float | int


def int_mul_energy_pj(bits_a: ArrayLike, bits_b: ArrayLike | None = None) -> np.ndarray:
    """Integer multiply at 45nm/0.9V: c_mul * a * b (quadratic in width for a = b)."""
    a = np.asarray(bits_a, dtype=float)
    b = a if bits_b is None else np.asarray(bits_b, dtype=float)
    return _C_MUL * a * b


def int_add_energy_pj(bits: ArrayLike) -> np.ndarray:
    """Integer add at 45nm/0.9V: c_add * b."""
    return _C_ADD * np.asarray(bits, dtype=float)


def fp_mul_energy_pj(mantissa_bits: ArrayLike, word_bits: ArrayLike) -> np.ndarray:
    """Floating-point multiply at 45nm/0.9V: c_m*(m+1)^2 + c_w*w."""
    m = np.asarray(mantissa_bits, dtype=float)
    return _C_FP_SIG * (m + 1.0) ** 2 + _C_FP_WORD * np.asarray(word_bits, dtype=float)


def fp_add_energy_pj(word_bits: ArrayLike) -> np.ndarray:
    """Floating-point add at 45nm/0.9V: c_fa * w."""
    return _C_FP_ADD * np.asarray(word_bits, dtype=float)


def accumulator_bits(weight_bits: ArrayLike, activation_bits: ArrayLike) -> np.ndarray:
    """b_acc = max(16, 2*max(n_w, n_a)): EdgeBERT's 16-bit accumulator, widened for wider operands."""
    widest = np.maximum(np.asarray(weight_bits, dtype=float), np.asarray(activation_bits, dtype=float))
    return np.maximum(float(_ACC_MIN_BITS), 2.0 * widest)


def mac_arithmetic_energy_45nm_pj(fmt: MacFormat, weight_bits: ArrayLike, activation_bits: ArrayLike,
                                  exp_bits: ArrayLike = 3) -> np.ndarray:
    """Bare MAC arithmetic (no registers) at 45nm/0.9V, HFINT for AdaptivFloat or plain integer."""
    n_w = np.asarray(weight_bits, dtype=float)
    n_a = np.asarray(activation_bits, dtype=float)
    acc = accumulator_bits(n_w, n_a)
    if fmt == "int":
        return int_mul_energy_pj(n_w, n_a) + int_add_energy_pj(acc)
    if fmt == "adaptivfloat":
        e_w = np.asarray(exp_bits, dtype=float)
        e_a = np.minimum(e_w, n_a - 1.0)  # activations use the same exponent width where it fits
        m_w = n_w - e_w - 1.0
        m_a = n_a - e_a - 1.0
        return int_mul_energy_pj(m_w + 1.0, m_a + 1.0) + int_add_energy_pj(np.maximum(e_w, e_a)) + int_add_energy_pj(acc)
    raise ValueError(f"unknown MAC format {fmt!r}; expected 'adaptivfloat' or 'int'")


def mac_register_bits(weight_bits: ArrayLike, activation_bits: ArrayLike) -> np.ndarray:
    """Operand + accumulator + pipeline register bits per MAC: n_w + n_a + b_acc + 8."""
    n_w = np.asarray(weight_bits, dtype=float)
    n_a = np.asarray(activation_bits, dtype=float)
    return n_w + n_a + accumulator_bits(n_w, n_a) + _REG_EXTRA_BITS


def mac_energy_pj(fmt: MacFormat, weight_bits: ArrayLike, activation_bits: ArrayLike, exp_bits: ArrayLike = 3,
                  node_nm: ArrayLike = 12, voltage_v: ArrayLike = 0.8) -> np.ndarray:
    """Datapath energy of one active MAC incl. registers at (node, V), in pJ.

    E = [E_arith,45nm * s(45/0.9 -> node/0.8) + bits_reg * 0.009 * s(40/0.8 -> node/0.8)] * (V/0.8)^2
    (AF8 at 12nm/0.8V: 0.137*0.105 + 40*0.009*0.148 = 0.068 pJ, hw-constants §2.4 "0.06-0.08").
    """
    arith = mac_arithmetic_energy_45nm_pj(fmt, weight_bits, activation_bits, exp_bits)
    arith = arith * scaling.energy_scale(_H_NODE, _H_V, node_nm, _REF_V)
    regs = mac_register_bits(weight_bits, activation_bits) * _REG_PJ_PER_BIT_40NM
    regs = regs * scaling.energy_scale(_A_NODE, _REF_V, node_nm, _REF_V)
    return (arith + regs) * scaling.dynamic_voltage_factor(voltage_v)


def mac_area_um2(fmt: MacFormat, weight_bits: ArrayLike, activation_bits: ArrayLike,
                 node_nm: ArrayLike = 12) -> np.ndarray:
    """Area of one MAC PE (raw, before the array overhead factor), in um^2.

    INT PE at 45nm: A_mul = 282 * (sqrt(n_w*n_a)/8)^1.82, A_add = 4.5 * (b_acc + 8); scaled 45->node,
    plus registers at 1.2 um^2/bit (12nm) scaled 12->node.  AdaptivFloat PE = 1.14 x INT PE (DAC'20).
    """
    n_w = np.asarray(weight_bits, dtype=float)
    n_a = np.asarray(activation_bits, dtype=float)
    mul = _MUL8_AREA_UM2 * (np.sqrt(n_w * n_a) / 8.0) ** _MUL_AREA_EXP
    add = _ADD_AREA_UM2_PER_BIT * (accumulator_bits(n_w, n_a) + 8.0)
    logic = (mul + add) * scaling.area_scale(_H_NODE, node_nm)
    regs = mac_register_bits(n_w, n_a) * _REG_AREA_UM2_PER_BIT_12NM * scaling.node_area_factor(node_nm)
    int_pe = logic + regs
    if fmt == "int":
        return int_pe
    if fmt == "adaptivfloat":
        return _AF_AREA_RATIO * int_pe
    raise ValueError(f"unknown MAC format {fmt!r}; expected 'adaptivfloat' or 'int'")
