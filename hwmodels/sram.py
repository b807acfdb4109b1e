"""On-chip SRAM buffer energy, leakage, area and access time by capacity (hw-constants §3.4).

At 12nm / 0.8V, for a buffer of C KiB read W bits at a time:
    E_rd(C, W)  = k * C^b * (0.3 + 0.7*W/64)   k = 0.30 pJ, b = 0.5     (pJ per access)
    E_wr(C, W)  = 1.0 * E_rd(C, W)
    A(C)        = 8192*C bits * 0.06 um^2                                  (mm^2 after /1e6)
    P_leak(C)   = 8192*C bits * 0.5 nW                                     (mW after /1e6)
    t_access(C) = 0.16 * C^0.35 ns
Energies scale to other nodes with Stillmaker and to other supplies with (V/0.8)^2; leakage with
the same node factor and (V/0.8)^3; area with the Stillmaker area factor.
"""

from __future__ import annotations

import numpy as np

from hwmodels import scaling, techdata

_T = "sram_12nm_0v8"
K_READ_PJ = techdata.number("sram", _T, "read_pj_per_access_64b_at_1kb")
READ_EXPONENT = techdata.number("sram", _T, "read_capacity_exponent")
WIDTH_FIXED_FRACTION = techdata.number("sram", _T, "width_fixed_fraction")
WRITE_TO_READ = techdata.number("sram", _T, "write_to_read_energy_ratio")
AREA_UM2_PER_BIT = techdata.number("sram", _T, "area_um2_per_bit")
LEAKAGE_NW_PER_BIT = techdata.number("sram", _T, "leakage_nw_per_bit")
_T_ACC_NS = techdata.number("sram", _T, "access_time_ns_at_1kb")
_T_ACC_EXP = techdata.number("sram", _T, "access_time_capacity_exponent")

ArrayLike = np.ndarray | float | int


def _capacity(capacity_kb: ArrayLike) -> np.ndarray:
    cap = np.asarray(capacity_kb, dtype=float)
    if np.any(~(cap > 0.0)):
        raise ValueError(f"SRAM capacity must be a positive number of KiB, got {capacity_kb}")
    return cap


def power_law_read_energy_pj(capacity_kb: ArrayLike, k_pj: float, exponent: float) -> np.ndarray:
    """E = k * C_KB^b for a 64-bit access (the fitted CACTI / Horowitz law)."""
    return k_pj * _capacity(capacity_kb) ** exponent


def read_energy_pj(capacity_kb: ArrayLike, width_bits: ArrayLike = 64, node_nm: ArrayLike = 12,
                   voltage_v: ArrayLike = 0.8) -> np.ndarray:
    """Energy of one read of ``width_bits`` from a ``capacity_kb`` buffer (pJ)."""
    width = np.asarray(width_bits, dtype=float)
    if np.any(~(width > 0.0)):
        raise ValueError(f"SRAM access width must be positive, got {width_bits}")
    energy = power_law_read_energy_pj(capacity_kb, K_READ_PJ, READ_EXPONENT)
    energy = energy * (WIDTH_FIXED_FRACTION + (1.0 - WIDTH_FIXED_FRACTION) * width / 64.0)
    return energy * scaling.node_energy_factor(node_nm) * scaling.dynamic_voltage_factor(voltage_v)


def read_energy_pj_per_bit(capacity_kb: ArrayLike, node_nm: ArrayLike = 12, voltage_v: ArrayLike = 0.8) -> np.ndarray:
    """Energy per bit of a 64-bit-wide read (pJ/bit)."""
    return read_energy_pj(capacity_kb, 64, node_nm, voltage_v) / 64.0


def write_energy_pj(capacity_kb: ArrayLike, width_bits: ArrayLike = 64, node_nm: ArrayLike = 12,
                    voltage_v: ArrayLike = 0.8) -> np.ndarray:
    """Energy of one write; E_wr = 1.0 x E_rd (CACTI ratio at 64 bits)."""
    return WRITE_TO_READ * read_energy_pj(capacity_kb, width_bits, node_nm, voltage_v)


def area_mm2(capacity_kb: ArrayLike, node_nm: ArrayLike = 12) -> np.ndarray:
    """Array area incl. periphery (mm^2): bits * 0.06 um^2 at 12nm."""
    bits = _capacity(capacity_kb) * 8192.0
    return bits * AREA_UM2_PER_BIT * 1e-6 * scaling.node_area_factor(node_nm)


def leakage_mw(capacity_kb: ArrayLike, node_nm: ArrayLike = 12, voltage_v: ArrayLike = 0.8,
               nw_per_bit: ArrayLike | None = None) -> np.ndarray:
    """Leakage power (mW): bits * p_bit * node factor * (V/0.8)^3, p_bit = 0.5 nW/bit unless given
    (the most uncertain constant, 0.02-5 nW/bit: expose it for sensitivity sweeps)."""
    bits = _capacity(capacity_kb) * 8192.0
    p_bit = LEAKAGE_NW_PER_BIT if nw_per_bit is None else np.asarray(nw_per_bit, dtype=float)
    return (bits * p_bit * 1e-6 * scaling.node_energy_factor(node_nm)
            * scaling.leakage_voltage_factor(voltage_v))


def access_time_ns(capacity_kb: ArrayLike) -> np.ndarray:
    """Access time (ns): 0.16 * C^0.35 (22nm LOP fit, not assumed faster at 12nm)."""
    return _T_ACC_NS * _capacity(capacity_kb) ** _T_ACC_EXP
