"""EdgeBERT-style accelerator cost model: cycles, energy per stage, storage, leakage and area.

Everything is vectorised: design parameters are arrays of shape [n_designs, 1] and token counts
arrays of shape [n_designs, n_sentences]; all results broadcast to that shape.  Energies here are
at the design's node and the 0.8 V reference; ``evaluate`` applies the operating voltage.

Matmul (N0 x M).(M x N1) on L lanes of V-wide vector MACs (hw-constants §7.2):
    cycles  = V * ceil(N0/V) * ceil(M/V) * ceil(N1/L) / u_pipe + 3V          (u_pipe = 1 double-
              buffered, 1/3 otherwise; zero skipping multiplies weight matmuls by
              min(1, max(d, 1/L) * 1.2))
    MAC energy = MACs * [d + (1-d) * 0.04] * E_MAC     (clock gating; zero skipping: MACs * d * E_MAC)
    SRAM reads R_A = N0*M*ceil(N1/L) activations, R_W = M*N1*ceil(N0/V) weights, writes W_O = N0*N1
    E_sram = (R_A*n_a + R_W*b_w)/64 * E_rd(C) + R_W/64 * E_rd(C/8)[mask] + W_O*n_a/64 * E_wr(C)
    stored weight bits per element b_w = d*n_w + 3/V (bitmask values + per-vector bias), +1 mask bit
Weights that do not fit in SRAM stream from DRAM per executed layer, once per activation chunk:
    DRAM bits = sum_matmul M*N1*(d*n_w + 1 + 3/V) * ceil(S*M*n_a / (8*C_bytes))   (+ dense off-ramp)
Attention with span w: QK^T is (S x d_h).(d_h x K) and AV (S x K).(K x d_h) per head, with K = P/S the
mean keys per query and P the (query, key) pairs the span mask keeps (``workload.attended_pairs``), so
MACs, SRAM traffic and softmax elements count exactly the kept pairs; cycles round K up to whole tiles.
Special functions run V elements/cycle: softmax (3 passes), LayerNorm (3), GELU, residual add,
off-ramp tanh (pooler heads) and entropy, and the token sum of a mean-pooling off-ramp (S*H adds,
residual-add passes).  Embeddings are looked up in eNVM once per sentence (word, position and
token-type rows, bitmask-compressed), 64*bits_per_cell bits per access.  A MobileBERT layer runs
the matrices of ``ModelShape.encoder_matrices`` (bottlenecks, attention at width B, stacked FFNs)
and its NoNorm, an elementwise multiply-add, takes a residual add's passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels import compute, scaling, sram, storage, techdata
from hwmodels.design import DesignBatch
from hwmodels.envm import ENVM_CELLS, MIB, envm_arrays, envm_cell
from hwmodels.workload import ModelShape, kept_pairs

_GATED = techdata.number("compute", "mac_datapath", "clock_gated_mac_energy_fraction")
_IMBALANCE = techdata.number("compute", "mac_datapath", "zero_skip_load_imbalance")
_OVH_PJ = techdata.number("compute", "system_calibration_12nm_0v8", "overhead_pj_per_mac_slot_cycle")
_SFU_PJ = techdata.number("compute", "system_calibration_12nm_0v8", "sfu_pj_per_element_pass")
_PASSES = {k: techdata.number("compute", "sfu_passes_per_element", k)
           for k in ("softmax", "layernorm", "gelu", "residual_add", "tanh", "entropy")}
_NORM_PASSES = {"layer_norm": "layernorm", "no_norm": "residual_add"}
_PE_OVERHEAD = techdata.number("compute", "operator_area", "pe_array_overhead_factor")
_FILL_PER_V = techdata.number("accelerator", "pipeline", "fill_cycles_per_vector")
_U_SINGLE = techdata.number("accelerator", "pipeline", "single_buffered_utilisation")
_BIAS_BITS_PER_VECTOR = techdata.number("accelerator", "adaptivfloat_hw", "bias_bits_per_vector")
_AUX_ENTRIES = techdata.number("accelerator", "edgebert_buffers", "aux_buffer_entries_per_bank")
_MASK_BITS_PER_BYTE = techdata.number("accelerator", "edgebert_buffers", "mask_bits_per_data_byte")
_LOGIC_LEAK_MW_PER_MM2 = techdata.number("accelerator", "leakage", "logic_leakage_mw_per_mm2")
_ENVM_BANKS = techdata.number("accelerator", "envm_interface", "banks")
_K_OVH = techdata.number("accelerator", "area_12nm", "chip_overhead_factor")
_SFU_AREA = techdata.number("accelerator", "area_12nm", "sfu_area_mm2")
_LDO_AREA = techdata.number("accelerator", "area_12nm", "ldo_area_mm2")
_ADPLL_AREA = techdata.number("accelerator", "area_12nm", "adpll_area_mm2")
_DRAM_PJ_PER_BIT = techdata.number("dram", "lpddr4", "energy_pj_per_bit")
_DRAM_BYTES_PER_NS = techdata.number("dram", "lpddr4", "bandwidth_gb_per_s")  # GB/s == bytes/ns
_DRAM_FIRST_NS = techdata.number("dram", "lpddr4", "first_access_latency_ns")

ENERGY_KEYS = ("mac", "sram", "envm", "dram", "leakage", "sfu", "overhead")
AREA_KEYS = ("pe_array", "sram", "envm", "sfu", "ldo_adpll", "overhead")


def ceil_div(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """ceil(a / b) for positive numbers (float arrays)."""
    return np.ceil(np.asarray(a, dtype=float) / b)


def matmul_cycles(n0, m, n1, lanes, vector) -> np.ndarray:
    """Ideal cycles of (n0 x m).(m x n1): V * ceil(n0/V) * ceil(m/V) * ceil(n1/L) (u_pipe = 1, no fill)."""
    return vector * ceil_div(n0, vector) * ceil_div(m, vector) * ceil_div(n1, lanes)


def matmul_sram_accesses(n0, m, n1, lanes, vector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activation reads R_A, weight reads R_W, output writes W_O) in elements."""
    r_a = np.asarray(n0, dtype=float) * m * ceil_div(n1, lanes)
    r_w = np.asarray(m, dtype=float) * n1 * ceil_div(n0, vector)
    w_o = np.asarray(n0, dtype=float) * n1
    return r_a, r_w, w_o


@dataclass(frozen=True)
class StageCost:
    """Cost of one stage (one encoder layer, or the once-per-sentence prologue) at 0.8 V."""

    mm_cycles: np.ndarray       # matmul cycles incl. fill and 1/u_pipe (frequency-scaled)
    sfu_cycles: np.ndarray      # special-function cycles (frequency-scaled)
    dram_time_ns: np.ndarray    # weight streaming time (not frequency-scaled)
    envm_time_ns: np.ndarray    # embedding fetch time (not frequency-scaled, never overlapped)
    mac_pj: np.ndarray
    sram_pj: np.ndarray
    sfu_pj: np.ndarray
    dram_pj: np.ndarray
    envm_pj: np.ndarray         # embedding fetches and (weight_store=envm) weight reads
    envm_stream_ns: np.ndarray  # weight reads from eNVM (weight_store=envm), overlapped like DRAM

    def time_ns(self, frequency_mhz: np.ndarray, double_buffered: np.ndarray) -> np.ndarray:
        """max(mm, DRAM) + SFU (+ eNVM) if double-buffered, else the plain sum."""
        mm_ns = self.mm_cycles * (1e3 / frequency_mhz)
        sfu_ns = self.sfu_cycles * (1e3 / frequency_mhz)
        stream_ns = self.dram_time_ns + self.envm_stream_ns  # one of the two is zero
        overlapped = np.where(double_buffered, np.maximum(mm_ns, stream_ns), mm_ns + stream_ns)
        return overlapped + sfu_ns + self.envm_time_ns

    @property
    def dynamic_pj(self) -> np.ndarray:
        """Voltage-scaled (CV^2) part: MAC + SRAM + SFU."""
        return self.mac_pj + self.sram_pj + self.sfu_pj


@dataclass(frozen=True)
class DesignStatic:
    """Per-design quantities (arrays of shape [n_designs, 1])."""

    macs_per_cycle: np.ndarray
    mac_pj: np.ndarray                  # one active AF MAC at node / 0.8 V
    overhead_pj_per_cycle: np.ndarray   # P * e_ovh at node / 0.8 V
    leakage_mw: np.ndarray              # logic + SRAM leakage at 0.8 V
    envm_leakage_mw: np.ndarray         # embedding array leakage while powered
    envm_always_on: np.ndarray          # volatile store (SRAM) must stay powered
    weight_storage_bytes: np.ndarray
    embedding_storage_bytes: np.ndarray
    weights_fit_in_sram: np.ndarray     # resident in the SRAM buffer (weight_store=sram and they fit)
    weights_stream_dram: np.ndarray     # streamed from DRAM per executed layer
    weights_in_envm: np.ndarray         # read from the eNVM array per executed layer
    sram_total_kb: np.ndarray
    envm_read_pj_per_access: np.ndarray
    envm_read_latency_ns: np.ndarray
    envm_bits_per_access: np.ndarray
    area_breakdown_mm2: dict[str, np.ndarray]
    valid: np.ndarray
    invalid_reason: list[str | None]

    @property
    def area_mm2(self) -> np.ndarray:
        return sum(self.area_breakdown_mm2.values())


def _col(x: np.ndarray) -> np.ndarray:
    return np.asarray(x)[:, None]


def stored_weight_bits(density, weight_bits, vector) -> np.ndarray:
    """Value bits per encoder weight element in bitmask encoding: d*n_w + 3/V (mask bit separate)."""
    return density * weight_bits + _BIAS_BITS_PER_VECTOR / vector


def encoder_matrices(shape: ModelShape) -> list[tuple[int, int]]:
    """(M, N1) of one layer's prunable matrices: Q, K, V, O, FFN up, FFN down (MobileBERT: with its
    bottlenecks and stacked FFNs, see ``ModelShape.encoder_matrices``)."""
    return shape.encoder_matrices


def encoder_storage_bits(shape: ModelShape, fmt, density, weight_bits, vector) -> tuple[np.ndarray, np.ndarray]:
    """(data-buffer bits, mask-buffer bits) of the unique encoder weights in each design's format.

    bitmask keeps the original expression (unique weights x (d*n_w + 3/V), one mask bit each), so that
    it reproduces the figures from before the format was a choice bit for bit.
    """
    n = float(shape.unique_encoder_weights)
    bitmask_data = n * stored_weight_bits(density, weight_bits, vector)
    dense_data = n * (weight_bits + _BIAS_BITS_PER_VECTOR / vector)
    relative = sum(storage.expected_storage_bits(2, m, n1, density, weight_bits, vector)[0]
                   for m, n1 in encoder_matrices(shape)) * shape.unique_encoder_layers
    data = np.where(fmt == 0, dense_data, np.where(fmt == 1, bitmask_data, relative))
    return data, np.where(fmt == 1, n, 0.0)


def design_static(shape: ModelShape, d: DesignBatch) -> DesignStatic:
    """Storage, fit test, eNVM array, leakage and area for every design."""
    lanes, vec = _col(d.vmac_lanes).astype(float), _col(d.vector_size).astype(float)
    n_w, n_a, e_w = _col(d.weight_bits).astype(float), _col(d.activation_bits).astype(float), _col(d.weight_exp_bits)
    node = _col(d.node_nm)
    dens = _col(d.encoder_density)
    sram_kb = _col(d.sram_kb)
    s_e = scaling.node_energy_factor(node)

    fmt = _col(d.sparse_format_index)
    store = _col(d.weight_store_index)
    enc_values_bits, enc_mask_bits = encoder_storage_bits(shape, fmt, dens, n_w, vec)
    dense_bits = (shape.offramp_weights + shape.projection_weights) * n_w  # off-ramps, projection: not pruned
    weight_bytes = (enc_values_bits + enc_mask_bits + dense_bits) / 8.0
    data_buffer_bits = sram_kb * 8192.0
    mask_buffer_bits = sram_kb * 1024.0 * _MASK_BITS_PER_BYTE
    fits = (enc_values_bits + dense_bits <= data_buffer_bits) & (enc_mask_bits <= mask_buffer_bits)
    in_envm = store == 1
    fits = fits & (store == 0)
    stream_dram = ~fits & ~in_envm

    emb_bytes = shape.embedding_entries * (_col(d.embedding_density) * n_w + 1.0) / 8.0
    # the eNVM array holds the embeddings, and with weight_store=envm every other weight too
    envm_bytes = emb_bytes + np.where(in_envm, weight_bytes, 0.0)
    cells = envm_arrays(d.envm_cell_index, envm_bytes[:, 0] / MIB)

    aux_kb = vec * _AUX_ENTRIES / 1024.0
    sram_total_kb = sram_kb * (1.0 + _MASK_BITS_PER_BYTE / 8.0) + aux_kb

    pe_mm2 = lanes * vec * compute.mac_area_um2("adaptivfloat", n_w, n_a, node) * _PE_OVERHEAD * 1e-6
    area_factor = scaling.node_area_factor(node)
    parts = {
        "pe_array": pe_mm2,
        "sram": sram.area_mm2(sram_total_kb, node),
        "envm": _col(cells.area_mm2),  # eNVM stays at its own 22nm node
        "sfu": _SFU_AREA * area_factor * np.ones_like(pe_mm2),
        "ldo_adpll": (_LDO_AREA + _ADPLL_AREA) * area_factor * np.ones_like(pe_mm2),
    }
    parts["overhead"] = (_K_OVH - 1.0) * sum(parts.values())
    logic_mm2_12nm = (parts["pe_array"] + parts["sfu"]) / area_factor
    leak = _LOGIC_LEAK_MW_PER_MM2 * logic_mm2_12nm * s_e + sram.leakage_mw(
        sram_total_kb, node, 0.8, np.where(np.isnan(_col(d.sram_leakage_nw_per_bit)), sram.LEAKAGE_NW_PER_BIT,
                                           _col(d.sram_leakage_nw_per_bit)))

    volatile = np.array([envm_cell(ENVM_CELLS[i]).volatile for i in d.envm_cell_index])
    reasons: list[str | None] = []
    for i, ok in enumerate(cells.valid):
        what = "embeddings and weights" if in_envm[i, 0] else "embeddings"
        reasons.append(None if ok else
                       f"eNVM cell {ENVM_CELLS[d.envm_cell_index[i]]} has no valid array for "
                       f"{cells.data_capacity_mb[i]:.2f} MiB of {what} (source tool returned -1 above "
                       f"{envm_cell(ENVM_CELLS[d.envm_cell_index[i]]).max_valid_capacity_mb:g} MiB)")
    return DesignStatic(
        macs_per_cycle=lanes * vec,
        mac_pj=compute.mac_energy_pj("adaptivfloat", n_w, n_a, e_w, node, 0.8),
        overhead_pj_per_cycle=lanes * vec * _OVH_PJ * s_e,
        leakage_mw=leak,
        envm_leakage_mw=_col(cells.leakage_mw),
        envm_always_on=_col(volatile),
        weight_storage_bytes=weight_bytes,
        embedding_storage_bytes=emb_bytes,
        weights_fit_in_sram=fits,
        weights_stream_dram=stream_dram,
        weights_in_envm=in_envm,
        sram_total_kb=sram_total_kb,
        envm_read_pj_per_access=_col(cells.read_energy_pj_per_access),
        envm_read_latency_ns=_col(cells.read_latency_ns),
        envm_bits_per_access=_col(np.array([envm_cell(ENVM_CELLS[i]).bits_per_access for i in d.envm_cell_index], dtype=float)),
        area_breakdown_mm2=parts,
        valid=cells.valid,
        invalid_reason=reasons,
    )


class _Accumulator:
    """Sums the per-matmul terms of a stage."""

    def __init__(self, shape_: tuple[int, ...]) -> None:
        zero = np.zeros(shape_)
        self.mm_cycles, self.sfu_cycles, self.dram_bits, self.dram_streams = zero, zero, zero, zero
        self.envm_bits = zero
        self.macs_eff, self.sram_pj, self.sfu_passes, self.sfu_sram_elems = zero, zero, zero, zero


def stage_costs(shape: ModelShape, d: DesignBatch, st: DesignStatic, tokens: np.ndarray) -> tuple[StageCost, StageCost]:
    """(prologue, one encoder layer) costs for every (design, sentence); tokens is [n_d, n_s]."""
    s = np.asarray(tokens, dtype=float)
    lanes, vec = _col(d.vmac_lanes).astype(float), _col(d.vector_size).astype(float)
    n_w, n_a = _col(d.weight_bits).astype(float), _col(d.activation_bits).astype(float)
    node = _col(d.node_nm)
    dens = _col(d.encoder_density)
    skip = _col(d.zero_skipping)
    u_pipe = np.where(_col(d.double_buffered), 1.0, _U_SINGLE)
    sram_kb = _col(d.sram_kb)
    fits = st.weights_fit_in_sram
    from_dram, from_envm = st.weights_stream_dram, st.weights_in_envm
    fmt = _col(d.sparse_format_index)
    c_bytes = sram_kb * 1024.0
    e_rd_data = sram.read_energy_pj(sram_kb, 64, node)
    e_wr_data = sram.write_energy_pj(sram_kb, 64, node)
    e_rd_mask = sram.read_energy_pj(sram_kb * _MASK_BITS_PER_BYTE / 8.0, 64, node)
    fill = _FILL_PER_V * vec
    h, f_, c_ = shape.hidden_size, shape.intermediate_size, shape.num_labels
    nh, dh = shape.num_heads, shape.head_dim
    # mean keys per query of the span mask, so that S * keys = the (query, key) pairs it keeps
    keys = kept_pairs(s, _col(d.attention_span)) / s
    value_bits = stored_weight_bits(dens, n_w, vec)

    def add_matmul(acc: _Accumulator, n0, m, n1, *, count: float = 1.0, kind: str) -> None:
        """kind: 'sparse' (pruned encoder weights), 'dense' (unpruned weights), 'act' (both activations)."""
        ideal = matmul_cycles(n0, m, n1, lanes, vec)
        macs = np.asarray(n0, dtype=float) * m * n1
        r_a, r_w, w_o = matmul_sram_accesses(n0, m, n1, lanes, vec)
        if kind == "sparse":
            cyc_factor = np.where(skip, np.minimum(1.0, np.maximum(dens, 1.0 / lanes) * _IMBALANCE), 1.0)
            mac_factor = np.where(skip, dens, dens + (1.0 - dens) * _GATED)
            # the decoder turns every format into the same (value, position) stream for the datapath;
            # formats differ in the bits read from SRAM and streamed in
            positions = float(m) * float(n1)
            other_bits = np.where(fmt == 0, n_w + _BIAS_BITS_PER_VECTOR / vec, storage.expected_storage_bits(
                2, int(m), int(n1), dens, n_w, vec)[0] / positions)
            is_mask = fmt == 1
            w_bits = np.where(is_mask, value_bits, other_bits)
            mask_bits = np.where(is_mask, 1.0, 0.0)
            stream_bits = np.where(is_mask, value_bits + 1.0, other_bits)
        else:
            cyc_factor, mac_factor, mask_bits = 1.0, 1.0, 0.0
            w_bits = n_w if kind == "dense" else n_a
            stream_bits = n_w
        acc.mm_cycles = acc.mm_cycles + count * (ideal * cyc_factor / u_pipe + fill)
        acc.macs_eff = acc.macs_eff + count * macs * mac_factor
        acc.sram_pj = acc.sram_pj + count * ((r_a * n_a + r_w * w_bits) / 64.0 * e_rd_data
                                             + r_w * mask_bits / 64.0 * e_rd_mask + w_o * n_a / 64.0 * e_wr_data)
        if kind != "act":
            # not fitting: re-stream the weights once per activation chunk that fits in the buffer,
            # and write them into SRAM on arrival
            # (from DRAM, or from the eNVM array with weight_store=envm)
            chunks = ceil_div(np.asarray(n0, dtype=float) * m * n_a, 8.0 * c_bytes)
            bits = np.where(fits, 0.0, count * m * n1 * stream_bits * chunks)
            acc.dram_bits = acc.dram_bits + np.where(from_dram, bits, 0.0)
            acc.dram_streams = acc.dram_streams + np.where(from_dram, count * chunks, 0.0)
            acc.envm_bits = acc.envm_bits + np.where(from_envm, bits, 0.0)
            acc.sram_pj = acc.sram_pj + bits / 64.0 * e_wr_data

    def add_sfu(acc: _Accumulator, elements, passes: float) -> None:
        acc.sfu_passes = acc.sfu_passes + elements * passes
        acc.sfu_sram_elems = acc.sfu_sram_elems + elements  # read once, write once per function

    full = s.shape
    layer = _Accumulator(full)
    for m, n1 in shape.attention_matrices:  # Q, K, V, attention output (MobileBERT: bottlenecks first)
        add_matmul(layer, s, m, n1, kind="sparse")
    add_matmul(layer, s, dh, keys, count=nh, kind="act")   # Q K^T per head
    add_matmul(layer, s, keys, dh, count=nh, kind="act")   # A V per head
    for m, n1 in shape.ffn_matrices:  # FFN up, FFN down (MobileBERT: every stacked FFN, output bottleneck)
        add_matmul(layer, s, m, n1, kind="sparse")
    if shape.has_offramp_pooler:
        add_matmul(layer, 1.0, h, h, kind="dense")         # off-ramp pooler on the pooled vector
    add_matmul(layer, 1.0, h, c_, kind="dense")            # off-ramp classifier
    add_sfu(layer, nh * s * keys, _PASSES["softmax"])
    # MobileBERT's NoNorm is an elementwise multiply-add: charged as a residual add's one pass
    add_sfu(layer, s * float(shape.norm_elements_per_token), _PASSES[_NORM_PASSES[shape.normalization]])
    add_sfu(layer, s * float(f_ * shape.num_feedforward_networks), _PASSES["gelu"])  # (ReLU charged alike)
    add_sfu(layer, s * float(shape.residual_elements_per_token), _PASSES["residual_add"])
    if shape.has_offramp_pooler:
        add_sfu(layer, float(h), _PASSES["tanh"])
    if shape.offramp_pooling == "mean":
        add_sfu(layer, s * h, _PASSES["residual_add"])     # sum of the token vectors (the 1/S folds into the matmul)
    add_sfu(layer, float(c_), _PASSES["entropy"])

    pro = _Accumulator(full)
    e_sum = shape.embedding_sum_size  # E (ALBERT: summed, then projected), H (MobileBERT: projected first)
    add_sfu(pro, 2.0 * s * e_sum, _PASSES["residual_add"])   # word + position + type sum
    add_sfu(pro, s * e_sum, _PASSES[_NORM_PASSES[shape.normalization]])
    if shape.has_embedding_projection:
        add_matmul(pro, s, shape.projection_input_size, h, kind="dense")

    # eNVM embedding lookups: 3 rows per token (E entries each; MobileBERT: E, H, H), bitmask-compressed
    envm_accesses = sum(rows * s * ceil_div(width * (_col(d.embedding_density) * n_w + 1.0), st.envm_bits_per_access)
                        for rows, width in shape.embedding_row_widths)
    envm_pj = envm_accesses * st.envm_read_pj_per_access
    envm_ns = envm_accesses * st.envm_read_latency_ns / _ENVM_BANKS
    pro_sram_extra = sum(float(rows) * s * width for rows, width in shape.embedding_row_widths) \
        * n_a / 64.0 * e_wr_data  # looked-up rows land in the buffer

    def finish(acc: _Accumulator, envm_pj_, envm_ns_, extra_sram) -> StageCost:
        sfu_sram = acc.sfu_sram_elems * n_a / 64.0 * (e_rd_data + e_wr_data)
        weight_reads = acc.envm_bits / st.envm_bits_per_access  # weight_store=envm: 64-cell accesses
        return StageCost(
            mm_cycles=acc.mm_cycles,
            sfu_cycles=acc.sfu_passes / vec,
            dram_time_ns=acc.dram_bits / 8.0 / _DRAM_BYTES_PER_NS + acc.dram_streams * _DRAM_FIRST_NS,
            envm_time_ns=np.broadcast_to(envm_ns_, full),
            mac_pj=acc.macs_eff * st.mac_pj,
            sram_pj=acc.sram_pj + sfu_sram + extra_sram,
            sfu_pj=acc.sfu_passes * _SFU_PJ * scaling.node_energy_factor(node),
            dram_pj=acc.dram_bits * _DRAM_PJ_PER_BIT,
            envm_pj=np.broadcast_to(envm_pj_, full) + weight_reads * st.envm_read_pj_per_access,
            envm_stream_ns=weight_reads * st.envm_read_latency_ns / _ENVM_BANKS,
        )

    zero = np.zeros(full)
    return finish(pro, envm_pj, envm_ns, pro_sram_extra), finish(layer, zero, zero, 0.0)

