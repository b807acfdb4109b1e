"""Technology-node and supply-voltage scaling (hw-constants §5.1, §5.3).

Energy across nodes (Stillmaker & Baas 2017):
    p_node(V) = a*V^2 + b*V + c,   E_to = E_from * p_to(V_to) / p_from(V_from)
Coefficients are interpolated linearly in node size between listed nodes, which reproduces the
derived factors of hw-constants §5.1 (45nm/0.9V -> 12nm/0.8V = 0.1053; 22 -> 12nm = 0.436).
Area: the Stillmaker AREA_SCALING matrix, interpolated bilinearly in (from, to) node size.
Within one node, dynamic energy scales as (V/V0)^2 and leakage power as (V/V0)^3.
"""

from __future__ import annotations

import numpy as np

from hwmodels import techdata

_NODES_NM = np.asarray(techdata.value("scaling", "stillmaker", "tech_nodes_nm"), dtype=float)
_POLY = np.asarray(techdata.value("scaling", "stillmaker", "energy_poly_abc"), dtype=float)
_AREA = np.asarray(techdata.value("scaling", "stillmaker", "area_matrix"), dtype=float)
# np.interp needs increasing x: flip the tables (listed from 130nm down to 7nm).
_NODES_ASC = _NODES_NM[::-1]
_POLY_ASC = _POLY[::-1]
_AREA_ASC = _AREA[::-1, ::-1]

REFERENCE_NODE_NM: int = int(techdata.value("scaling", "stillmaker", "reference_node_nm"))
REFERENCE_VOLTAGE_V: float = techdata.number("scaling", "stillmaker", "reference_voltage_v")
MIN_NODE_NM: float = float(_NODES_NM.min())
MAX_NODE_NM: float = float(_NODES_NM.max())

DYNAMIC_VOLTAGE_EXPONENT: float = techdata.number("dvfs", "scaling_exponents", "dynamic_energy_voltage_exponent")
LEAKAGE_VOLTAGE_EXPONENT: float = techdata.number("dvfs", "scaling_exponents", "leakage_power_voltage_exponent")


def _check_node(node_nm: np.ndarray | float) -> np.ndarray:
    node = np.asarray(node_nm, dtype=float)
    if np.any((node < MIN_NODE_NM) | (node > MAX_NODE_NM)) or np.any(~np.isfinite(node)):
        raise ValueError(f"technology node must be within {MIN_NODE_NM:g}..{MAX_NODE_NM:g} nm, got {node_nm}")
    return node


def stillmaker_energy_poly(node_nm: np.ndarray | float, voltage_v: np.ndarray | float) -> np.ndarray:
    """p_node(V) = a*V^2 + b*V + c with (a, b, c) interpolated linearly in node size."""
    node = _check_node(node_nm)
    a = np.interp(node, _NODES_ASC, _POLY_ASC[:, 0])
    b = np.interp(node, _NODES_ASC, _POLY_ASC[:, 1])
    c = np.interp(node, _NODES_ASC, _POLY_ASC[:, 2])
    v = np.asarray(voltage_v, dtype=float)
    return a * v * v + b * v + c


def energy_scale(from_node_nm: float, from_voltage_v: float, to_node_nm: float | np.ndarray,
                 to_voltage_v: float | np.ndarray) -> np.ndarray | float:
    """Energy multiplier p_to(V_to) / p_from(V_from) (Stillmaker polynomials at both ends)."""
    result = stillmaker_energy_poly(to_node_nm, to_voltage_v) / stillmaker_energy_poly(from_node_nm, from_voltage_v)
    return float(result) if np.ndim(result) == 0 else result


def node_energy_factor(node_nm: np.ndarray | float) -> np.ndarray | float:
    """Energy multiplier from the 12nm/0.8V reference to ``node_nm`` at 0.8V (leakage uses it too)."""
    return energy_scale(REFERENCE_NODE_NM, REFERENCE_VOLTAGE_V, node_nm, REFERENCE_VOLTAGE_V)


def area_scale(from_node_nm: float | np.ndarray, to_node_nm: float | np.ndarray) -> np.ndarray | float:
    """Area multiplier from ``from_node_nm`` to ``to_node_nm``: bilinear in the Stillmaker matrix."""
    src = _check_node(from_node_nm)
    dst = _check_node(to_node_nm)
    src, dst = np.broadcast_arrays(src, dst)
    # interpolate each 'from' row at the destination, then across rows at the source
    rows_at_dst = np.stack([np.interp(dst, _NODES_ASC, _AREA_ASC[i]) for i in range(len(_NODES_ASC))], axis=-1)
    i_hi = np.clip(np.searchsorted(_NODES_ASC, src, side="left"), 1, len(_NODES_ASC) - 1)
    lo_node, hi_node = _NODES_ASC[i_hi - 1], _NODES_ASC[i_hi]
    weight = (src - lo_node) / (hi_node - lo_node)
    lo = np.take_along_axis(rows_at_dst, (i_hi - 1)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(rows_at_dst, i_hi[..., None], axis=-1)[..., 0]
    result = lo + (hi - lo) * weight
    return float(result) if np.ndim(result) == 0 else result


def node_area_factor(node_nm: np.ndarray | float) -> np.ndarray | float:
    """Area multiplier from the 12nm reference to ``node_nm``.

    Taken through the 45nm row, a(node) = area_scale(45, node) / area_scale(45, 12), because the
    published matrix is not exactly self-consistent (its interpolated 12->12 entry is 1.07, not 1).
    """
    return area_scale(45, node_nm) / area_scale(45, REFERENCE_NODE_NM)


def dynamic_voltage_factor(voltage_v: np.ndarray | float) -> np.ndarray | float:
    """E_dyn(V)/E_dyn(0.8V) = (V/0.8)^2 (CV^2)."""
    return (np.asarray(voltage_v, dtype=float) / REFERENCE_VOLTAGE_V) ** DYNAMIC_VOLTAGE_EXPONENT


def leakage_voltage_factor(voltage_v: np.ndarray | float) -> np.ndarray | float:
    """P_leak(V)/P_leak(0.8V) = (V/0.8)^3 (DIBL approximation)."""
    return (np.asarray(voltage_v, dtype=float) / REFERENCE_VOLTAGE_V) ** LEAKAGE_VOLTAGE_EXPONENT
