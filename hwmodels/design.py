"""Struct-of-arrays form of many (CompressionProfile, HardwareConfig) design points.

``DesignBatch`` holds one numpy array per configuration field (length n_designs) so the cost model
can evaluate all designs at once.  Build it from config objects with ``DesignBatch.from_configs`` or
directly from arrays (fast path for sweeps); both validate ranges and raise ValueError.
Conventions: ``latency_target_ms`` NaN = no target; ``attention_span`` (the largest query-key
distance attended) inf = full attention; ``envm_cell_index`` indexes ``ENVM_CELLS``,
``sparse_format_index`` ``SPARSE_FORMATS`` (default 1, bitmask), ``weight_store_index``
``WEIGHT_STORES`` (default 0, sram) and ``dvfs_layer1_index`` ``DVFS_LAYER1_POLICIES`` (default 0, nominal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from hwmodels import dvfs, scaling
from hwmodels.config import DVFS_LAYER1_POLICIES, WEIGHT_STORES, CompressionProfile, HardwareConfig
from hwmodels.envm import ENVM_CELLS
from hwmodels.storage import SPARSE_FORMATS

_INT_FIELDS = ("vmac_lanes", "vector_size", "envm_cell_index", "weight_bits", "weight_exp_bits", "activation_bits",
               "sparse_format_index", "weight_store_index", "dvfs_layer1_index")
_BOOL_FIELDS = ("dvfs", "zero_skipping", "double_buffered")


@dataclass(frozen=True)
class DesignBatch:
    """n_designs design points, one array per field."""

    vmac_lanes: np.ndarray
    vector_size: np.ndarray
    sram_kb: np.ndarray
    envm_cell_index: np.ndarray
    voltage_v: np.ndarray
    dvfs: np.ndarray
    latency_target_ms: np.ndarray
    node_nm: np.ndarray
    zero_skipping: np.ndarray
    double_buffered: np.ndarray
    encoder_density: np.ndarray
    embedding_density: np.ndarray
    weight_bits: np.ndarray
    weight_exp_bits: np.ndarray
    activation_bits: np.ndarray
    attention_span: np.ndarray
    sram_leakage_nw_per_bit: np.ndarray = field(default_factory=lambda: np.array([np.nan]))  # NaN = tech default
    sparse_format_index: np.ndarray = field(default_factory=lambda: np.array([SPARSE_FORMATS.index("bitmask")]))
    weight_store_index: np.ndarray = field(default_factory=lambda: np.array([0]))
    dvfs_layer1_index: np.ndarray = field(default_factory=lambda: np.array([0]))

    def __post_init__(self) -> None:
        arrays = {}
        for f in fields(self):
            raw = np.atleast_1d(np.asarray(getattr(self, f.name)))
            dtype = int if f.name in _INT_FIELDS else bool if f.name in _BOOL_FIELDS else float
            arrays[f.name] = raw.astype(dtype)
        n = max(a.size for a in arrays.values())
        for name, arr in arrays.items():
            if arr.ndim != 1 or arr.size not in (1, n):
                raise ValueError(f"DesignBatch.{name} must be 1-D with length 1 or {n}, got shape {arr.shape}")
            object.__setattr__(self, name, np.broadcast_to(arr, (n,)).copy())
        self._validate()

    def _validate(self) -> None:
        def bad(name: str, ok: np.ndarray, rule: str) -> None:
            if not np.all(ok):
                first = getattr(self, name)[~ok][0]
                raise ValueError(f"{name} must be {rule}, got {first}")

        bad("vmac_lanes", (self.vmac_lanes >= 1) & (self.vmac_lanes <= 256), "within 1..256")
        bad("vector_size", (self.vector_size >= 1) & (self.vector_size <= 256), "within 1..256")
        bad("sram_kb", (self.sram_kb > 0) & np.isfinite(self.sram_kb), "a positive number of KiB")
        bad("envm_cell_index", (self.envm_cell_index >= 0) & (self.envm_cell_index < len(ENVM_CELLS)),
            f"an index into ENVM_CELLS (0..{len(ENVM_CELLS) - 1})")
        dvfs.check_voltage(self.voltage_v)
        target = self.latency_target_ms
        bad("latency_target_ms", np.isnan(target) | (target > 0), "positive or NaN (no target)")
        bad("latency_target_ms", ~(self.dvfs & np.isnan(target)), "set when dvfs is on (dvfs=True needs a target)")
        bad("node_nm", (self.node_nm >= scaling.MIN_NODE_NM) & (self.node_nm <= scaling.MAX_NODE_NM),
            f"within {scaling.MIN_NODE_NM:g}..{scaling.MAX_NODE_NM:g} nm")
        bad("encoder_density", (self.encoder_density > 0) & (self.encoder_density <= 1), "within (0, 1]")
        bad("embedding_density", (self.embedding_density > 0) & (self.embedding_density <= 1), "within (0, 1]")
        bad("weight_bits", (self.weight_bits >= 4) & (self.weight_bits <= 16), "within 4..16")
        bad("weight_exp_bits", (self.weight_exp_bits >= 1) & (self.weight_exp_bits <= 5), "within 1..5")
        bad("weight_exp_bits", self.weight_exp_bits < self.weight_bits, "< weight_bits")
        bad("activation_bits", (self.activation_bits >= 4) & (self.activation_bits <= 16), "within 4..16")
        bad("attention_span", self.attention_span >= 0, ">= 0 (inf = full attention)")
        leak = self.sram_leakage_nw_per_bit
        bad("sram_leakage_nw_per_bit", np.isnan(leak) | (leak > 0), "positive or NaN (technology default)")
        for name, names in (("sparse_format_index", SPARSE_FORMATS), ("weight_store_index", WEIGHT_STORES),
                            ("dvfs_layer1_index", DVFS_LAYER1_POLICIES)):
            arr = getattr(self, name)
            bad(name, (arr >= 0) & (arr < len(names)), f"an index into {', '.join(names)} (0..{len(names) - 1})")

    def __len__(self) -> int:
        return int(self.vmac_lanes.size)

    @classmethod
    def from_configs(cls, compressions: CompressionProfile | Sequence[CompressionProfile],
                     hardwares: HardwareConfig | Sequence[HardwareConfig]) -> "DesignBatch":
        """Pair configs element-wise; a single config is broadcast against the other list."""
        comps = [compressions] if isinstance(compressions, CompressionProfile) else list(compressions)
        hws = [hardwares] if isinstance(hardwares, HardwareConfig) else list(hardwares)
        if not comps or not hws:
            raise ValueError("need at least one CompressionProfile and one HardwareConfig")
        if len(comps) != len(hws) and 1 not in (len(comps), len(hws)):
            raise ValueError(f"got {len(comps)} compression profiles and {len(hws)} hardware configs; lengths must match or be 1")
        cell_index = {name: i for i, name in enumerate(ENVM_CELLS)}
        return cls(
            vmac_lanes=np.array([h.vmac_lanes for h in hws]),
            vector_size=np.array([h.vector_size for h in hws]),
            sram_kb=np.array([h.sram_kb for h in hws]),
            envm_cell_index=np.array([cell_index[h.envm_cell] for h in hws]),
            voltage_v=np.array([h.voltage_v for h in hws]),
            dvfs=np.array([h.dvfs for h in hws]),
            latency_target_ms=np.array([np.nan if h.latency_target_ms is None else h.latency_target_ms for h in hws]),
            node_nm=np.array([h.node_nm for h in hws]),
            zero_skipping=np.array([h.zero_skipping for h in hws]),
            double_buffered=np.array([h.double_buffered for h in hws]),
            encoder_density=np.array([c.encoder_density for c in comps]),
            embedding_density=np.array([c.embedding_density for c in comps]),
            weight_bits=np.array([c.weight_bits for c in comps]),
            weight_exp_bits=np.array([c.weight_exp_bits for c in comps]),
            activation_bits=np.array([c.activation_bits for c in comps]),
            attention_span=np.array([np.inf if c.attention_span is None else c.attention_span for c in comps]),
            sram_leakage_nw_per_bit=np.array([np.nan if h.sram_leakage_nw_per_bit is None else h.sram_leakage_nw_per_bit
                                              for h in hws]),
            sparse_format_index=np.array([SPARSE_FORMATS.index(h.sparse_format) for h in hws]),
            weight_store_index=np.array([WEIGHT_STORES.index(h.weight_store) for h in hws]),
            dvfs_layer1_index=np.array([DVFS_LAYER1_POLICIES.index(h.dvfs_layer1) for h in hws]),
        )
