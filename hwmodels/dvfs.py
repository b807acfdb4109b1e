"""Voltage/frequency curve, DVFS grid and the entropy -> exit-layer predictor (hw-constants §5.3, §7.5).

Alpha-power law:  f(V) = f0 * g(V) / g(V0),  g(V) = (V - Vth)^alpha / V
with Vth = 0.35 V, alpha = 1.43, f0 = 1000 MHz at V0 = 0.8 V  ->  f(0.5 V) = 333 MHz.
The DVFS grid is 0.50 .. 0.80 V in 25 mV steps (13 points).

Exit predictor (EdgeBERT-style LUT, edgebert.md §1.8): bin the first-layer off-ramp entropy into
``n_bins`` equal-population bins and store, per bin, a high quantile (default 0.9) of the exit
layer observed on training data.  Bins with no data take their neighbour's value and the table is
made non-decreasing in entropy (a less confident first layer never predicts an earlier exit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels import techdata

_APL = "alpha_power_law"
VTH_V = techdata.number("dvfs", _APL, "threshold_voltage_v")
ALPHA = techdata.number("dvfs", _APL, "alpha")
V_NOMINAL_V = techdata.number("dvfs", _APL, "nominal_voltage_v")
F_NOMINAL_MHZ = techdata.number("dvfs", _APL, "nominal_frequency_mhz")
V_MIN_V = techdata.number("dvfs", "voltage_grid", "min_voltage_v")
V_MAX_V = techdata.number("dvfs", "voltage_grid", "max_voltage_v")
V_STEP_V = techdata.number("dvfs", "voltage_grid", "step_v")
SWITCH_TIME_NS = techdata.number("dvfs", "controller", "switch_time_us") * 1e3
SWITCH_ENERGY_PJ = techdata.number("dvfs", "controller", "switch_energy_pj")
LUT_BINS = int(techdata.value("dvfs", "controller", "lut_bins"))
_V_TOL = 1e-9


def check_voltage(voltage_v: np.ndarray | float) -> np.ndarray:
    """Raise ValueError unless every voltage lies in the table range 0.50..0.80 V."""
    v = np.asarray(voltage_v, dtype=float)
    if np.any(~np.isfinite(v)) or np.any((v < V_MIN_V - _V_TOL) | (v > V_MAX_V + _V_TOL)):
        raise ValueError(f"voltage must be within {V_MIN_V:.2f}..{V_MAX_V:.2f} V, got {voltage_v}")
    return v


def _g(voltage_v: np.ndarray | float) -> np.ndarray:
    v = np.asarray(voltage_v, dtype=float)
    return (v - VTH_V) ** ALPHA / v


def frequency_mhz(voltage_v: np.ndarray | float) -> np.ndarray:
    """Clock frequency at ``voltage_v`` from the alpha-power law (MHz)."""
    v = check_voltage(voltage_v)
    return F_NOMINAL_MHZ * _g(v) / _g(V_NOMINAL_V)


def voltage_grid_v() -> np.ndarray:
    """DVFS operating voltages 0.50, 0.525, ..., 0.80 V."""
    n_steps = int(round((V_MAX_V - V_MIN_V) / V_STEP_V))
    return np.round(V_MIN_V + V_STEP_V * np.arange(n_steps + 1), 6)


def voltage_frequency_points() -> tuple[np.ndarray, np.ndarray]:
    """The DVFS table: ``(voltage_v, frequency_mhz)`` arrays on the 25 mV grid."""
    grid = voltage_grid_v()
    return grid, frequency_mhz(grid)


@dataclass(frozen=True)
class ExitPredictor:
    """Binned LUT from first-layer entropy to a (conservative) predicted exit layer.

    ``inner_edges`` (n_bins-1 ascending entropies) split the entropy axis; bin k covers
    [inner_edges[k-1], inner_edges[k]) with open ends.  ``exit_layer_per_bin`` is 1-based.
    """

    inner_edges: np.ndarray
    exit_layer_per_bin: np.ndarray
    quantile: float

    @property
    def n_bins(self) -> int:
        return int(self.exit_layer_per_bin.size)

    def bin_index(self, entropy: np.ndarray | float) -> np.ndarray:
        """LUT row for each entropy value."""
        return np.searchsorted(self.inner_edges, np.asarray(entropy, dtype=float), side="right")

    def predict(self, entropy: np.ndarray | float) -> np.ndarray:
        """Predicted exit layer (1-based int) for each first-layer entropy."""
        return self.exit_layer_per_bin[self.bin_index(entropy)]


def fit_exit_predictor(first_layer_entropy: np.ndarray, exit_layers: np.ndarray, n_bins: int = LUT_BINS,
                       quantile: float = 0.9) -> ExitPredictor:
    """Fit the entropy -> exit-layer LUT on training sentences (see module docstring)."""
    entropy = np.asarray(first_layer_entropy, dtype=float).ravel()
    layers = np.asarray(exit_layers).ravel()
    if entropy.size == 0 or entropy.size != layers.size:
        raise ValueError(f"need equal, non-zero numbers of entropies and exit layers, got {entropy.size} and {layers.size}")
    if np.any(~np.isfinite(entropy)):
        raise ValueError("first-layer entropies must be finite")
    if np.any(layers < 1) or np.any(layers != np.round(layers)):
        raise ValueError("exit layers must be integers >= 1")
    if not 1 <= n_bins <= 4096:
        raise ValueError(f"n_bins must be within 1..4096, got {n_bins}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be within 0..1, got {quantile}")
    # Equal-population edges; duplicates (ties) collapse into fewer distinct bins.
    inner = np.quantile(entropy, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]) if n_bins > 1 else np.empty(0)
    inner = np.maximum.accumulate(inner)
    bins = np.searchsorted(inner, entropy, side="right")
    per_bin = np.full(n_bins, np.nan)
    for k in range(n_bins):
        members = layers[bins == k]
        if members.size:
            per_bin[k] = np.ceil(np.quantile(members, quantile, method="higher"))
    # Empty bins borrow from the nearest lower filled bin, else the next filled one.
    filled = np.flatnonzero(~np.isnan(per_bin))
    for k in np.flatnonzero(np.isnan(per_bin)):
        lower = filled[filled < k]
        per_bin[k] = per_bin[lower[-1]] if lower.size else per_bin[filled[filled > k][0]]
    per_bin = np.maximum.accumulate(per_bin).astype(int)
    return ExitPredictor(inner_edges=inner, exit_layer_per_bin=per_bin, quantile=float(quantile))
