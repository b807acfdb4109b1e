"""Per-sentence latency and energy of many designs at once, with latency-aware DVFS.

A sentence with S tokens that exits after l layers (hw-constants §7.4, §7.5):
    T = T_pro(V0) + T_layer(V0) + [switch] * T_switch + (l - 1) * T_layer(V*)
    T_layer(V) = max(mm_cycles/f(V), T_dram) + sfu_cycles/f(V)     (double-buffered; else a sum)
    E = (E_dyn,pro + E_dyn,layer) * (V0/0.8)^2 + (l - 1) * E_dyn,layer * (V*/0.8)^2    (MAC, SRAM, SFU)
      + cycles * P * e_ovh * (V/0.8)^2                                                   (overhead)
      + E_eNVM,pro + l * (E_eNVM,layer + E_DRAM,layer) + E_DRAM,pro                      (own rails)
      + P_leak(V) * T  (logic + SRAM, ~ (V/0.8)^3)  + P_leak,eNVM * T_on                 (leakage)
Without DVFS V* = V0 = hardware.voltage_v.  With DVFS, the prologue and layer 1 run at V0, which
``dvfs_layer1`` chooses: ``nominal`` = voltage_v (EdgeBERT: the point at which the first off-ramp
entropy is produced), ``previous`` = the voltage the previous sentence left on the rail (its V*,
or its V0 if it exited after layer 1; the first sentence starts at voltage_v; sentences run in
the order given, with no switch between them), ``min`` = the grid floor 0.50 V.  Then V* is the
lowest grid voltage (0.50..0.80 V, 25 mV) whose predicted latency, using the predicted exit
layer l^, meets the target including T_switch, clamped up to the minimum-energy voltage; if none
meets, V* = 0.80 V and the sentence is marked as missing its target.  The target is a fixed
deadline per sentence (as EdgeBERT's), not a mean.  T_pro is the eNVM embedding fetch, embedding sum/LayerNorm and
(ALBERT E->H, MobileBERT 3E->H) projection.  T_eNVM is counted while a non-volatile store is read; a volatile (SRAM)
store leaks for the whole sentence; with weight_store=envm the array is also read (and leaks) while
each layer's weights are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwmodels import dvfs, scaling
from hwmodels.accelerator import AREA_KEYS, ENERGY_KEYS, StageCost, design_static, stage_costs
from hwmodels.config import CompressionProfile, HardwareConfig
from hwmodels.design import DesignBatch
from hwmodels.workload import ModelShape


@dataclass(frozen=True)
class HardwareResult:
    """Result for one design over n_sentences sentences."""

    latency_ns: np.ndarray
    energy_pj: np.ndarray
    voltage_v: np.ndarray
    frequency_mhz: np.ndarray
    target_met: np.ndarray
    energy_breakdown_pj: dict[str, np.ndarray]
    area_mm2: float
    area_breakdown_mm2: dict[str, float]
    weight_storage_bytes: float
    embedding_storage_bytes: float
    weights_fit_in_sram: bool
    valid: bool
    invalid_reason: str | None

    @property
    def mean_energy_uj(self) -> float:
        return float(np.mean(self.energy_pj)) * 1e-6

    @property
    def mean_latency_ms(self) -> float:
        return float(np.mean(self.latency_ns)) * 1e-6

    @property
    def p95_latency_ms(self) -> float:
        return float(np.percentile(self.latency_ns, 95)) * 1e-6

    @property
    def fraction_target_met(self) -> float:
        return float(np.mean(self.target_met))

    @property
    def memory_bytes(self) -> float:
        return self.weight_storage_bytes + self.embedding_storage_bytes


@dataclass(frozen=True)
class BatchResult:
    """Results for n_designs x n_sentences; per-sentence arrays are [n_designs, n_sentences]."""

    latency_ns: np.ndarray
    energy_pj: np.ndarray
    voltage_v: np.ndarray
    frequency_mhz: np.ndarray
    target_met: np.ndarray
    energy_breakdown_pj: dict[str, np.ndarray]
    area_mm2: np.ndarray
    area_breakdown_mm2: dict[str, np.ndarray]
    weight_storage_bytes: np.ndarray
    embedding_storage_bytes: np.ndarray
    weights_fit_in_sram: np.ndarray
    valid: np.ndarray
    invalid_reason: list[str | None]

    def __len__(self) -> int:
        return int(self.latency_ns.shape[0])

    def design(self, k: int) -> HardwareResult:
        """The ``HardwareResult`` of design ``k``."""
        return HardwareResult(
            latency_ns=self.latency_ns[k], energy_pj=self.energy_pj[k], voltage_v=self.voltage_v[k],
            frequency_mhz=self.frequency_mhz[k], target_met=self.target_met[k],
            energy_breakdown_pj={key: v[k] for key, v in self.energy_breakdown_pj.items()},
            area_mm2=float(self.area_mm2[k]),
            area_breakdown_mm2={key: float(v[k]) for key, v in self.area_breakdown_mm2.items()},
            weight_storage_bytes=float(self.weight_storage_bytes[k]),
            embedding_storage_bytes=float(self.embedding_storage_bytes[k]),
            weights_fit_in_sram=bool(self.weights_fit_in_sram[k]), valid=bool(self.valid[k]),
            invalid_reason=self.invalid_reason[k])


def _sentence_array(name: str, values: np.ndarray, n_designs: int, low: int, high: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D [n_sentences] or 2-D [n_designs, n_sentences] array")
    if not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must hold integers")
    if np.any((arr < low) | (arr > high)):
        raise ValueError(f"{name} must be within {low}..{high}, got values {arr.min()}..{arr.max()}")
    if arr.ndim == 2 and arr.shape[0] not in (1, n_designs):
        raise ValueError(f"{name} has {arr.shape[0]} rows but there are {n_designs} designs")
    return np.broadcast_to(arr.reshape(-1, arr.shape[-1]) if arr.ndim == 2 else arr[None, :],
                           (n_designs, arr.shape[-1])).astype(float)


def _select_voltage(lay: StageCost, rows: np.ndarray, t_fixed_ns: np.ndarray, n_pred_rest: np.ndarray,
                    v0: np.ndarray, target_ns: np.ndarray, double_buffered: np.ndarray,
                    leak_mw: np.ndarray, ovh_pj_per_cycle: np.ndarray) -> np.ndarray:
    """V* for the DVFS rows: lowest grid V meeting the predicted target, clamped up to the MEP."""
    grid, f_grid = dvfs.voltage_frequency_points()
    sub = StageCost(*(np.asarray(getattr(lay, name))[rows][..., None] for name in StageCost.__dataclass_fields__))
    t_layer = sub.time_ns(f_grid, double_buffered[rows][..., None])           # [r, n_s, G]
    switch = np.abs(grid - v0[rows][..., None]) > 1e-9                         # [r, 1, G]
    n_rest = n_pred_rest[rows][..., None]
    t_pred = t_fixed_ns[rows][..., None] + switch * dvfs.SWITCH_TIME_NS + n_rest * t_layer
    dvf = scaling.dynamic_voltage_factor(grid)
    e_rest = n_rest * (sub.dynamic_pj * dvf + ovh_pj_per_cycle[rows][..., None] * dvf * t_layer * f_grid * 1e-3
                       + leak_mw[rows][..., None] * scaling.leakage_voltage_factor(grid) * t_layer)
    e_pred = e_rest + switch * (dvfs.SWITCH_TIME_NS * leak_mw[rows][..., None]
                                * scaling.leakage_voltage_factor(v0[rows][..., None]) + dvfs.SWITCH_ENERGY_PJ)
    meet = t_pred <= target_ns[rows][..., None]
    idx = np.where(meet.any(axis=-1), np.maximum(np.argmax(meet, axis=-1), np.argmin(e_pred, axis=-1)), grid.size - 1)
    return grid[idx]


def _column(cost: StageCost, j: int) -> StageCost:
    """Sentence ``j`` of every design: arrays [n_designs, 1]."""
    return StageCost(*(np.broadcast_to(getattr(cost, name), cost.mm_cycles.shape)[:, j:j + 1]
                       for name in StageCost.__dataclass_fields__))


def evaluate_hardware_batch(shape: ModelShape, *, tokens: np.ndarray, exit_layers: np.ndarray, designs: DesignBatch,
                            predicted_exit_layers: np.ndarray | None = None) -> BatchResult:
    """Evaluate every design on every sentence (vectorised; see module docstring for the equations).

    tokens, exit_layers, predicted_exit_layers: [n_sentences] (shared by all designs) or
    [n_designs, n_sentences].  exit layers are 1-based counts of executed encoder layers.
    """
    n_d = len(designs)
    s = _sentence_array("tokens", tokens, n_d, 1, shape.max_positions)
    ell = _sentence_array("exit_layers", exit_layers, n_d, 1, shape.num_layers)
    if s.shape != ell.shape:
        raise ValueError(f"tokens and exit_layers must have the same number of sentences, got {s.shape[-1]} and {ell.shape[-1]}")
    ell_hat = ell if predicted_exit_layers is None else _sentence_array(
        "predicted_exit_layers", predicted_exit_layers, n_d, 1, shape.num_layers)
    if ell_hat.shape != ell.shape:
        raise ValueError("predicted_exit_layers must have the same shape as exit_layers")

    st = design_static(shape, designs)
    pro, lay = stage_costs(shape, designs, st, s)
    db = designs.double_buffered[:, None]
    target_ns = designs.latency_target_ms[:, None] * 1e6
    leak_mw = st.leakage_mw
    n_rest = ell - 1.0
    policy = np.where(designs.dvfs, designs.dvfs_layer1_index, 0)[:, None]  # without DVFS: voltage_v
    v0 = np.where(policy == 2, dvfs.V_MIN_V, designs.voltage_v[:, None]) * np.ones_like(s)
    f0 = dvfs.frequency_mhz(v0)
    t_pro = pro.time_ns(f0, db)
    t_l0 = lay.time_ns(f0, db)

    v_star = v0.copy()
    rows = np.flatnonzero(designs.dvfs & (designs.dvfs_layer1_index != 1))
    if rows.size:
        v_star[rows] = _select_voltage(lay, rows, t_pro + t_l0, ell_hat - 1.0, v0, target_ns, db, leak_mw,
                                       st.overhead_pj_per_cycle)
    prev = np.flatnonzero(designs.dvfs & (designs.dvfs_layer1_index == 1))
    if prev.size:
        # layer 1 runs at the rail the previous sentence left: one sentence after the other
        rail = designs.voltage_v[prev].astype(float)
        for j in range(s.shape[1]):
            v0[prev, j] = rail
            p_j, l_j = _column(pro, j), _column(lay, j)
            f_j = dvfs.frequency_mhz(v0[:, j:j + 1])
            t_fixed = p_j.time_ns(f_j, db) + l_j.time_ns(f_j, db)
            v_star[prev, j] = _select_voltage(l_j, prev, t_fixed, ell_hat[:, j:j + 1] - 1.0, v0[:, j:j + 1],
                                              target_ns, db, leak_mw, st.overhead_pj_per_cycle)[:, 0]
            rail = np.where(n_rest[prev, j] > 0, v_star[prev, j], v0[prev, j])
        f0 = dvfs.frequency_mhz(v0)
        t_pro = pro.time_ns(f0, db)
        t_l0 = lay.time_ns(f0, db)
    switched = (np.abs(v_star - v0) > 1e-9) & (n_rest > 0)
    f_star = dvfs.frequency_mhz(v_star)
    t_ls = lay.time_ns(f_star, db)
    t_switch = switched * dvfs.SWITCH_TIME_NS
    latency = t_pro + t_l0 + t_switch + n_rest * t_ls

    dvf0, dvfs_ = scaling.dynamic_voltage_factor(v0), scaling.dynamic_voltage_factor(v_star)
    lvf0, lvfs = scaling.leakage_voltage_factor(v0), scaling.leakage_voltage_factor(v_star)
    cycles0 = (t_pro - pro.envm_time_ns + t_l0) * f0 * 1e-3
    cycles_star = n_rest * t_ls * f_star * 1e-3
    envm_on_ns = np.where(st.envm_always_on, latency, pro.envm_time_ns + ell * lay.envm_stream_ns)
    breakdown = {
        "mac": (pro.mac_pj + lay.mac_pj) * dvf0 + n_rest * lay.mac_pj * dvfs_,
        "sram": (pro.sram_pj + lay.sram_pj) * dvf0 + n_rest * lay.sram_pj * dvfs_,
        "envm": pro.envm_pj + ell * lay.envm_pj,
        "dram": pro.dram_pj + ell * lay.dram_pj,
        "leakage": (leak_mw * lvf0 * (t_pro + t_l0 + t_switch) + leak_mw * lvfs * n_rest * t_ls
                    + st.envm_leakage_mw * envm_on_ns),
        "sfu": (pro.sfu_pj + lay.sfu_pj) * dvf0 + n_rest * lay.sfu_pj * dvfs_,
        "overhead": st.overhead_pj_per_cycle * (cycles0 * dvf0 + cycles_star * dvfs_) + switched * dvfs.SWITCH_ENERGY_PJ,
    }
    assert tuple(breakdown) == ENERGY_KEYS
    energy = sum(breakdown.values())
    voltage = np.where(n_rest > 0, v_star, v0)
    target_met = np.where(np.isnan(target_ns), True, latency <= target_ns)
    return BatchResult(
        latency_ns=latency, energy_pj=energy, voltage_v=voltage, frequency_mhz=dvfs.frequency_mhz(voltage),
        target_met=target_met, energy_breakdown_pj=breakdown,
        area_mm2=st.area_mm2[:, 0],
        area_breakdown_mm2={k: np.broadcast_to(st.area_breakdown_mm2[k], (n_d, 1))[:, 0].copy() for k in AREA_KEYS},
        weight_storage_bytes=st.weight_storage_bytes[:, 0], embedding_storage_bytes=st.embedding_storage_bytes[:, 0],
        weights_fit_in_sram=st.weights_fit_in_sram[:, 0], valid=st.valid.copy(), invalid_reason=st.invalid_reason)


def evaluate_hardware(shape: ModelShape, *, tokens: np.ndarray, exit_layers: np.ndarray,
                      compression: CompressionProfile, hardware: HardwareConfig,
                      predicted_exit_layers: np.ndarray | None = None) -> HardwareResult:
    """Per-sentence latency/energy of one design (thin wrapper over ``evaluate_hardware_batch``).

    tokens[i]: token count of sentence i; exit_layers[i]: encoder layers executed (1..num_layers).
    With hardware.dvfs the V/f of layers 2.. is chosen per sentence from predicted_exit_layers
    (default: exit_layers, i.e. an oracle predictor).
    """
    for name, arr in (("tokens", tokens), ("exit_layers", exit_layers), ("predicted_exit_layers", predicted_exit_layers)):
        if arr is not None and np.ndim(arr) != 1:
            raise ValueError(f"{name} must be a 1-D array of per-sentence values")
    batch = DesignBatch.from_configs(compression, hardware)
    return evaluate_hardware_batch(shape, tokens=tokens, exit_layers=exit_layers, designs=batch,
                                   predicted_exit_layers=predicted_exit_layers).design(0)


def evaluate_configs(shape: ModelShape, *, tokens: np.ndarray, exit_layers: np.ndarray,
                     compressions: CompressionProfile | Sequence[CompressionProfile],
                     hardwares: HardwareConfig | Sequence[HardwareConfig],
                     predicted_exit_layers: np.ndarray | None = None) -> BatchResult:
    """Convenience: ``evaluate_hardware_batch`` on paired config lists."""
    return evaluate_hardware_batch(shape, tokens=tokens, exit_layers=exit_layers,
                                   designs=DesignBatch.from_configs(compressions, hardwares),
                                   predicted_exit_layers=predicted_exit_layers)
