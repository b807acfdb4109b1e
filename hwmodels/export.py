"""Export a design in the vocabulary of EdgeBERT's accelerator configuration (harvard-acc/EdgeBERT Spec.h, Dvfs.h).

Buffers: input buffer = V banks x (sram_kb*1024/V) 8-bit entries (64 KiB -> 16 x 4096); mask buffer
= one bit per input entry in V-bit words (4096 x 16 bit); aux buffer = V banks x 256 entries.
AdaptivFloat per-tensor bias (3-bit, offset -10): value = 2^(exp + bias - 10) * (1 + man/2^m), so the
top exponent (2^e - 1) lands on floor(log2(max|x|)) when bias = E_max - (2^e - 1) + 10, clipped to 0..7.
DVFS LUT: one row per exit-predictor entropy bin -> (predicted exit layer, V*, f*) for a sentence of
``design_tokens`` tokens, with our own codes: LDO code = 25 mV grid index from 0.50 V, DCO code =
round(63 * f/f_max) (the silicon's code->V/f calibration is not public [U]). Layer 1 at V0 = voltage_v
(``dvfs_layer1`` nominal or previous) or 0.50 V (min); under ``previous`` the chip's real V* also
depends on the voltage it is at, which this one-dimensional table does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hwmodels import dvfs, techdata
from hwmodels.config import CompressionProfile, HardwareConfig
from hwmodels.design import DesignBatch
from hwmodels.dvfs import ExitPredictor
from hwmodels.envm import MIB, envm_cell
from hwmodels.evaluate import evaluate_hardware_batch
from hwmodels.workload import ModelShape

BIAS_BITS = int(techdata.value("accelerator", "adaptivfloat_hw", "bias_bits"))
EXP_OFFSET = int(techdata.value("accelerator", "adaptivfloat_hw", "exponent_offset"))
_INPUT_ENTRIES = int(techdata.value("accelerator", "edgebert_buffers", "input_buffer_entries_per_bank"))
_AUX_ENTRIES = int(techdata.value("accelerator", "edgebert_buffers", "aux_buffer_entries_per_bank"))
_FRAC_BITS = int(techdata.value("dvfs", "controller", "entropy_fraction_bits"))
_LDO_BITS = int(techdata.value("dvfs", "controller", "ldo_code_bits"))
_DCO_BITS = int(techdata.value("dvfs", "controller", "dco_code_bits"))


def adaptivfloat_bias(max_abs: float, exp_bits: int, bias_bits: int = BIAS_BITS, offset: int = EXP_OFFSET) -> int:
    """Per-tensor AdaptivFloat bias: floor(log2(max_abs)) - (2^e - 1) - offset, clipped to the bias field."""
    if not max_abs > 0 or not np.isfinite(max_abs):
        raise ValueError(f"tensor max |x| must be a positive finite number, got {max_abs}")
    e_max = int(np.floor(np.log2(max_abs)))
    return int(np.clip(e_max - (2 ** exp_bits - 1) - offset, 0, 2 ** bias_bits - 1))


def accelerator_parameter_file(hardware: HardwareConfig, compression: CompressionProfile, shape: ModelShape,
                               exit_predictor: ExitPredictor | None = None, *, design_tokens: int | None = None,
                               tensor_max_abs: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Parameters of one design for EdgeBERT's accelerator (see module docstring)."""
    v = hardware.vector_size
    input_bytes = hardware.sram_kb * 1024.0
    entries_per_bank = int(input_bytes // v)
    mask_words = int(round(input_bytes / v))  # one mask bit per 8-bit entry, V bits per word
    tokens = min(128, shape.max_positions) if design_tokens is None else int(design_tokens)
    if not 1 <= tokens <= shape.max_positions:
        raise ValueError(f"design_tokens must be within 1..{shape.max_positions}, got {tokens}")

    def af(bits: int, exp_bits: int) -> dict[str, int]:
        return {"word_bits": bits, "exp_bits": exp_bits, "mantissa_bits": bits - exp_bits - 1,
                "bias_bits": BIAS_BITS, "exponent_offset": EXP_OFFSET}

    act_exp = min(compression.weight_exp_bits, compression.activation_bits - 1)
    biases = {name: adaptivfloat_bias(m, compression.weight_exp_bits) for name, m in (tensor_max_abs or {}).items()}
    cell = envm_cell(hardware.envm_cell)
    emb_bytes = shape.embedding_entries * (compression.embedding_density * compression.weight_bits + 1) / 8.0

    lut: list[dict[str, Any]] = []
    if exit_predictor is not None:
        if exit_predictor.n_bins > dvfs.LUT_BINS:
            raise ValueError(f"exit predictor has {exit_predictor.n_bins} bins; the DVFS LUT holds {dvfs.LUT_BINS}")
        layers = np.minimum(exit_predictor.exit_layer_per_bin, shape.num_layers)
        # one row per bin, each as if layer 1 ran at V0: with dvfs_layer1=previous the rows must not
        # chain (the chip picks V* from the voltage it is at; the table is the one from voltage_v)
        table_hw = hardware.model_copy(update={"dvfs_layer1": "nominal"}) if hardware.dvfs_layer1 == "previous" \
            else hardware
        result = evaluate_hardware_batch(shape, tokens=np.full(layers.size, tokens), exit_layers=layers,
                                         designs=DesignBatch.from_configs(compression, table_hw))
        grid, f_grid = dvfs.voltage_frequency_points()
        edges = np.concatenate([[-np.inf], exit_predictor.inner_edges, [np.inf]])
        for k in range(layers.size):
            volt = float(result.voltage_v[0, k])
            freq = float(result.frequency_mhz[0, k])
            hi = edges[k + 1]
            lut.append({
                "bin": k, "entropy_low": max(0.0, float(edges[k])),  # entropy is >= 0
                "entropy_high": float(hi) if np.isfinite(hi) else None,
                "entropy_high_q6_10": None if not np.isfinite(hi) else int(np.clip(round(hi * 2 ** _FRAC_BITS), 0, 2 ** 16 - 1)),
                "predicted_exit_layer": int(layers[k]), "voltage_v": volt, "frequency_mhz": freq,
                "ldo_code": int(np.clip(round((volt - dvfs.V_MIN_V) / dvfs.V_STEP_V), 0, 2 ** _LDO_BITS - 1)),
                "dco_code": int(np.clip(round((2 ** _DCO_BITS - 1) * freq / f_grid.max()), 0, 2 ** _DCO_BITS - 1)),
            })
    return {
        "vector_size": v,
        "vmac_lanes": hardware.vmac_lanes,
        "sram_kb": hardware.sram_kb,  # the buffers' entry counts round it down; the loader needs it exactly
        "macs_per_cycle": hardware.vmac_lanes * v,
        "double_buffered": hardware.double_buffered,
        "zero_skipping": hardware.zero_skipping,
        "buffers": {
            "input_buffer": {"banks": v, "entries_per_bank": entries_per_bank, "word_bits": 8},
            "mask_buffer": {"entries": mask_words, "word_bits": v},
            "aux_buffer": {"banks": v, "entries_per_bank": _AUX_ENTRIES, "word_bits": 8},
            "edgebert_reference": {"input_entries_per_bank": _INPUT_ENTRIES, "aux_entries_per_bank": _AUX_ENTRIES},
        },
        "adaptivfloat": {
            "weight": af(compression.weight_bits, compression.weight_exp_bits),
            "activation": af(compression.activation_bits, act_exp),
            "accumulator_bits": int(max(16, 2 * max(compression.weight_bits, compression.activation_bits))),
            "per_tensor_bias": biases,
        },
        "weight_store": hardware.weight_store,
        "sparsity": {"encoding": hardware.sparse_format, "encoder_density": compression.encoder_density,
                     "embedding_density": compression.embedding_density},
        "attention_span": compression.attention_span,
        "off_ramps": {"head": shape.offramp_head, "pooling": shape.offramp_pooling,
                      "weights_per_layer": shape.offramp_weights_per_layer},
        "envm": {"cell": cell.name, "bits_per_cell": cell.bits_per_cell,
                 "embedding_bytes": emb_bytes, "embedding_mib": emb_bytes / MIB},
        "dvfs": {"enabled": hardware.dvfs, "latency_target_ms": hardware.latency_target_ms,
                 "nominal_voltage_v": hardware.voltage_v, "layer1_policy": hardware.dvfs_layer1,
                 "switch_time_us": dvfs.SWITCH_TIME_NS / 1e3,
                 "design_tokens": tokens, "entropy_fraction_bits": _FRAC_BITS, "lut": lut},
    }


def design_from_parameter_file(params: Mapping[str, Any]) -> tuple[HardwareConfig, CompressionProfile,
                                                                      ExitPredictor | None]:
    """The hardware, compression profile and DVFS exit predictor an accelerator parameter file
    describes (the inverse of :func:`accelerator_parameter_file`): re-cost an exported chip
    with :func:`hwmodels.evaluate_hardware` and nothing else."""
    af = params["adaptivfloat"]
    dv = params["dvfs"]
    hardware = HardwareConfig(
        vmac_lanes=params["vmac_lanes"], vector_size=params["vector_size"], sram_kb=params["sram_kb"],
        envm_cell=params["envm"]["cell"], voltage_v=dv["nominal_voltage_v"], dvfs=dv["enabled"],
        latency_target_ms=dv["latency_target_ms"], zero_skipping=params["zero_skipping"],
        double_buffered=params["double_buffered"],
        # files written before these were choices: EdgeBERT's bitmask, SRAM weights, layer 1 at nominal
        sparse_format=params["sparsity"].get("encoding", "bitmask"), weight_store=params.get("weight_store", "sram"),
        dvfs_layer1=dv.get("layer1_policy", "nominal"),
    )
    compression = CompressionProfile(
        encoder_density=params["sparsity"]["encoder_density"],
        embedding_density=params["sparsity"]["embedding_density"],
        weight_bits=af["weight"]["word_bits"], weight_exp_bits=af["weight"]["exp_bits"],
        activation_bits=af["activation"]["word_bits"], attention_span=params["attention_span"],
    )
    predictor = None
    if dv["lut"]:
        rows = sorted(dv["lut"], key=lambda r: r["bin"])
        predictor = ExitPredictor(
            inner_edges=np.array([r["entropy_high"] for r in rows[:-1]], dtype=float),
            exit_layer_per_bin=np.array([r["predicted_exit_layer"] for r in rows]),
            quantile=float("nan"),  # how the table was fitted is not part of the chip
        )
    return hardware, compression, predictor
