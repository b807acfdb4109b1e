"""Configuration models: what the compressed model looks like to the hardware, and the hardware."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hwmodels import dvfs, scaling
from hwmodels.envm import ENVM_CELLS

# Where the (non-embedding) weights live: the SRAM buffer (streamed from DRAM when they do not fit,
# as before these choices existed), the eNVM array beside the embeddings, or always DRAM.
WEIGHT_STORES: tuple[str, ...] = ("sram", "envm", "dram")
# Layer 1's voltage under DVFS: voltage_v, the rail the previous sentence left, or the grid floor.
DVFS_LAYER1_POLICIES: tuple[str, ...] = ("nominal", "previous", "min")


class CompressionProfile(BaseModel):
    """Compressed-model properties that change cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder_density: float = Field(1.0, gt=0.0, le=1.0)   # non-zero fraction of encoder matmul weights
    embedding_density: float = Field(1.0, gt=0.0, le=1.0)  # non-zero fraction of embedding entries
    weight_bits: int = Field(8, ge=4, le=16)                # AdaptivFloat total bits
    weight_exp_bits: int = Field(3, ge=1, le=5)              # AdaptivFloat exponent bits
    activation_bits: int = Field(8, ge=4, le=16)            # datapath activation width
    attention_span: int | None = Field(None, ge=0)          # hard span: largest query-key distance |i-j|
                                                            # attended (0 = itself only); None = full

    @model_validator(mode="after")
    def _exp_fits(self) -> "CompressionProfile":
        if self.weight_exp_bits >= self.weight_bits:
            raise ValueError(f"weight_exp_bits ({self.weight_exp_bits}) must be < weight_bits ({self.weight_bits})")
        return self


class HardwareConfig(BaseModel):
    """One accelerator design point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vmac_lanes: int = Field(16, ge=1, le=256)         # L
    vector_size: int = Field(16, ge=1, le=256)        # V (P = L*V MACs/cycle)
    sram_kb: float = Field(64.0, gt=0.0, le=1_048_576.0)  # weight/activation buffer, KiB
    envm_cell: str = "rram_mlc2"
    voltage_v: float = 0.8                            # operating point; under DVFS the layer-1 (nominal) point
    dvfs: bool = False
    latency_target_ms: float | None = Field(None, gt=0.0)
    node_nm: int = 12
    zero_skipping: bool = False
    double_buffered: bool = True
    sram_leakage_nw_per_bit: float | None = Field(None, gt=0.0)  # None = technology default (sram.yaml)
    sparse_format: Literal["dense", "bitmask", "relative_index"] = "bitmask"  # encoder weights in storage
    weight_store: Literal["sram", "envm", "dram"] = "sram"
    dvfs_layer1: Literal["nominal", "previous", "min"] = "nominal"

    @field_validator("envm_cell")
    @classmethod
    def _known_cell(cls, value: str) -> str:
        if value not in ENVM_CELLS:
            raise ValueError(f"unknown eNVM cell {value!r}; expected one of {', '.join(ENVM_CELLS)}")
        return value

    @field_validator("voltage_v")
    @classmethod
    def _voltage_in_table(cls, value: float) -> float:
        dvfs.check_voltage(value)
        return value

    @field_validator("node_nm")
    @classmethod
    def _node_in_table(cls, value: int) -> int:
        if not scaling.MIN_NODE_NM <= value <= scaling.MAX_NODE_NM:
            raise ValueError(f"node_nm must be within {scaling.MIN_NODE_NM:g}..{scaling.MAX_NODE_NM:g} nm, got {value}")
        return value

    @model_validator(mode="after")
    def _dvfs_needs_target(self) -> "HardwareConfig":
        if self.dvfs and self.latency_target_ms is None:
            raise ValueError("dvfs=True needs latency_target_ms")
        return self
