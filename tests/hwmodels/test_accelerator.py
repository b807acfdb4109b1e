"""Cycle, traffic, storage and area equations of the accelerator model (hw-constants §7.2, §7.3, §7.6)."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import CompressionProfile, DesignBatch, HardwareConfig, ModelShape, compute, sram, techdata
from hwmodels.accelerator import design_static, matmul_cycles, matmul_sram_accesses, stage_costs


def _layer(shape: ModelShape, tokens: int, comp: CompressionProfile | None = None, hw: HardwareConfig | None = None):
    designs = DesignBatch.from_configs(comp or CompressionProfile(), hw or HardwareConfig())
    static = design_static(shape, designs)
    prologue, layer = stage_costs(shape, designs, static, np.array([[tokens]]))
    return static, prologue, layer


def test_matmul_cycles_hand_cases() -> None:
    # full tiles: 16 * (128/16) * (768/16) * (768/16) = 16*8*48*48 = 294,912 = 128*768*768/256
    assert matmul_cycles(128, 768, 768, 16, 16) == 294_912
    # ragged: N0=20 -> ceil(20/16)=2 row blocks, M=17 -> 2, N1=33 lanes=16 -> 3: 16*2*2*3 = 192 cycles
    assert matmul_cycles(20, 17, 33, 16, 16) == 192


def test_sram_access_counts_hand_case() -> None:
    # R_A = 128*768*ceil(768/16) = 4,718,592 ; R_W = 768*768*ceil(128/16) = 4,718,592 ; W_O = 128*768 = 98,304
    r_a, r_w, w_o = matmul_sram_accesses(128, 768, 768, 16, 16)
    assert (r_a, r_w, w_o) == (4_718_592, 4_718_592, 98_304)


# V3 (hw-constants §8): the Timeloop + Accelergy Eyeriss-like reference layer (40nm, int16;
# timeloop-accelergy-exercises ref-output/int16/timeloop-mapper.stats.txt and ERT_summary.yaml,
# hw-constants §2.3): C=128, M=256, P=Q=56, R=S=3, 924,844,032 MACs on 168 PEs = 12 x 14.
EYERISS_MACS = 128 * 256 * 56 * 56 * 3 * 3
# published energy per MAC of each action and energy per access (so accesses per MAC = their ratio)
EYERISS_PJ_PER_MAC = {"mac": 2.20, "weight_spad": 1.61, "psum_spad": 0.52, "ifmap_spad": 0.24, "glb": 0.71}
EYERISS_PJ_PER_ACCESS = {"mac": 2.20, "weight_spad": 1.59, "psum_spad": 0.25, "ifmap_spad": 0.25, "glb": 18.80}
EYERISS_DRAM_WORDS = 3_883_008  # 16-bit words
EYERISS_TOTAL_UJ = 5382.31


@pytest.mark.validation
def test_validation_v3_timeloop_eyeriss_cycles() -> None:
    # the model's matmul cycles for the layer as (M*P*R x C*S).(C*S x Q) on V = 12, L = 14:
    # 12 * 3584 * 32 * 4 = 5,505,024, Timeloop's count at utilisation 1.00 (exact)
    assert EYERISS_MACS == 924_844_032
    assert matmul_cycles(256 * 56 * 3, 128 * 3, 56, lanes=14, vector=12) == 5_505_024


def _model_eyeriss_pj_per_access() -> dict[str, float]:
    """The model's own energy per action at 40nm/0.8V (how it takes Aladdin/Accelergy 40nm data):
    an int16 MAC with its registers, and its SRAM read law for the 192 x 16b weight scratchpad,
    the 16 x 16b psum / ifmap register files and the 128 KB global buffer, 16-bit accesses."""
    spad_kb, rf_kb = 192 * 2 / 1024, 16 * 2 / 1024
    return {"mac": float(compute.mac_energy_pj("int", 16, 16, node_nm=40, voltage_v=0.8)),
            "weight_spad": float(sram.read_energy_pj(spad_kb, 16, node_nm=40)),
            "psum_spad": float(sram.read_energy_pj(rf_kb, 16, node_nm=40)),
            "ifmap_spad": float(sram.read_energy_pj(rf_kb, 16, node_nm=40)),
            "glb": float(sram.read_energy_pj(128, 16, node_nm=40))}


# Tolerance ±1%: hw-constants §8's V3 tolerance "given the same counts"; the counts here are the
# reference's, the energies per action the model's.
@pytest.mark.validation
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="model gives 3099.8 uJ (3.35 pJ/MAC) for the layer, Timeloop/Accelergy 5382.31 uJ "
                          "(5.82 pJ/MAC), -42%: the model's 40nm int16 MAC is 1.28 pJ (reference 2.20) and its "
                          "SRAM law gives 10.9 pJ per 16-bit GLB word (reference 18.8)")
def test_validation_v3_timeloop_eyeriss_energy() -> None:
    model = _model_eyeriss_pj_per_access()
    accesses = {k: EYERISS_MACS * EYERISS_PJ_PER_MAC[k] / EYERISS_PJ_PER_ACCESS[k] for k in EYERISS_PJ_PER_MAC}
    dram_pj = EYERISS_DRAM_WORDS * 16 * techdata.number("dram", "lpddr4", "energy_pj_per_bit")
    total_uj = (sum(accesses[k] * model[k] for k in model) + dram_pj) * 1e-6
    assert total_uj == pytest.approx(EYERISS_TOTAL_UJ, rel=0.01)


@pytest.mark.validation
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="model gives 1.28 pJ for an int16 MAC at 40nm, Timeloop/Accelergy 2.20 pJ (-42%)")
def test_validation_v3_timeloop_eyeriss_mac_energy() -> None:
    assert _model_eyeriss_pj_per_access()["mac"] == pytest.approx(EYERISS_PJ_PER_MAC["mac"], rel=0.01)


@pytest.mark.validation
def test_validation_v7_albert_dense_latency(albert_base: ModelShape) -> None:
    # 12 layers x 931,135,488 MACs / 256 MAC/cycle = 43,646,976 cycles = 43.6 ms at 1 GHz (u_pipe = 1)
    s, h, f, nh, dh = 128, 768, 3072, 12, 64
    per_layer = (4 * matmul_cycles(s, h, h, 16, 16) + nh * matmul_cycles(s, dh, s, 16, 16)
                 + nh * matmul_cycles(s, s, dh, 16, 16) + matmul_cycles(s, h, f, 16, 16) + matmul_cycles(s, f, h, 16, 16))
    assert 12 * per_layer == 43_646_976
    assert 12 * per_layer / 1e9 * 1e3 == pytest.approx(43.6, abs=0.05)
    # the model's layer adds off-ramp pooler 16*1*48*48 = 36,864, classifier 16*1*48*1 = 768 and
    # fill 3*16 = 48 cycles on each of 32 matmuls (4 proj + 2x12 heads + 2 FFN + 2 off-ramp) = 1,536
    _, _, layer = _layer(albert_base, 128)
    assert layer.mm_cycles[0, 0] == per_layer + 36_864 + 768 + 1_536


def test_sparsity_gates_energy_not_cycles(albert_base: ModelShape) -> None:
    _, _, dense = _layer(albert_base, 128)
    _, _, sparse = _layer(albert_base, 128, CompressionProfile(encoder_density=0.5))
    assert sparse.mm_cycles[0, 0] == dense.mm_cycles[0, 0]
    assert sparse.mac_pj[0, 0] < dense.mac_pj[0, 0]
    # weight-matmul MACs 905,969,664 of 931,135,488 (+ off-ramp 591,360) are gated: factor 0.5 + 0.5*0.04 = 0.52
    weight_macs = 4 * 128 * 768 ** 2 + 2 * 128 * 768 * 3072
    other_macs = 2 * 128 * 128 * 768 + 768 * 768 + 768 * 2
    expected = (weight_macs * 0.52 + other_macs) / (weight_macs + other_macs)
    assert sparse.mac_pj[0, 0] / dense.mac_pj[0, 0] == pytest.approx(expected, rel=1e-9)


def test_zero_skipping_cuts_cycles(albert_base: ModelShape) -> None:
    comp = CompressionProfile(encoder_density=0.5)
    _, _, gated = _layer(albert_base, 128, comp)
    _, _, skipped = _layer(albert_base, 128, comp, HardwareConfig(zero_skipping=True))
    # weight matmuls x min(1, 0.5 * 1.2) = 0.6 ; attention, off-ramps unchanged
    weight_cycles = (4 * 128 * 768 ** 2 + 2 * 128 * 768 * 3072) / 256
    assert gated.mm_cycles[0, 0] - skipped.mm_cycles[0, 0] == pytest.approx(0.4 * weight_cycles)
    assert skipped.mac_pj[0, 0] < gated.mac_pj[0, 0]


def test_single_buffering_triples_matmul_cycles(albert_base: ModelShape) -> None:
    _, _, db = _layer(albert_base, 128)
    _, _, sb = _layer(albert_base, 128, hw=HardwareConfig(double_buffered=False))
    fill = 32 * 48
    assert (sb.mm_cycles[0, 0] - fill) == pytest.approx(3 * (db.mm_cycles[0, 0] - fill), rel=1e-6)


def test_weight_storage_and_fit_hand_case(albert_base: ModelShape) -> None:
    # values 7,077,888 * (8 + 3/16) + mask 7,077,888 + dense (12 off-ramps 7,096,320 + projection 98,304) * 8
    # = 57,950,208 + 7,077,888 + 57,556,992 = 122,585,088 bits = 15,323,136 bytes
    static, _, _ = _layer(albert_base, 128)
    assert static.weight_storage_bytes[0, 0] == pytest.approx(15_323_136)
    assert not static.weights_fit_in_sram[0, 0]
    # value bits 115,507,200 -> need 14,100 KiB of data buffer; masks fit in 1/8 of it
    big, _, _ = _layer(albert_base, 128, hw=HardwareConfig(sram_kb=14_100))
    small, _, _ = _layer(albert_base, 128, hw=HardwareConfig(sram_kb=14_099))
    assert big.weights_fit_in_sram[0, 0] and not small.weights_fit_in_sram[0, 0]


def test_dram_streaming_only_when_weights_do_not_fit(albert_base: ModelShape) -> None:
    _, _, streamed = _layer(albert_base, 128)
    _, _, resident = _layer(albert_base, 128, hw=HardwareConfig(sram_kb=16_384))
    assert resident.dram_pj[0, 0] == 0.0 and streamed.dram_pj[0, 0] > 0.0
    # Q projection: 768*768 weights * (8 + 1 + 3/16) bits * ceil(128*768*8 / (8*65536)) = 2 chunks
    q_bits = 768 * 768 * (8 + 1 + 3 / 16) * 2
    assert streamed.dram_pj[0, 0] > 4 * q_bits * 8.0


def test_embedding_fetch_hand_case(albert_base: ModelShape) -> None:
    # row = 128 entries * (8 + 1) bits = 1152 bits; MLC2 access = 128 bits -> 9 accesses; 3 rows/token
    # 128 tokens -> 3456 accesses; embeddings 3,905,792 * 9 / 8 = 4,394,016 B = 4.19 MiB
    static, prologue, _ = _layer(albert_base, 128)
    from hwmodels import envm_cell
    arr = envm_cell("rram_mlc2").array(4_394_016 / 2 ** 20)
    assert static.embedding_storage_bytes[0, 0] == pytest.approx(4_394_016)
    assert prologue.envm_pj[0, 0] == pytest.approx(3456 * arr.read_energy_pj_per_access[0])
    assert prologue.envm_time_ns[0, 0] == pytest.approx(3456 * arr.read_latency_ns[0])


def test_area_breakdown(albert_base: ModelShape) -> None:
    static, _, _ = _layer(albert_base, 128)
    parts = {k: float(v[0, 0]) for k, v in static.area_breakdown_mm2.items()}
    # PE array: 256 * 114.74 um2 * 2.5 = 0.0734 mm2 ; SRAM (64 + 8 + 4) KiB * 8192 * 0.06 um2 = 0.0374 mm2
    assert parts["pe_array"] == pytest.approx(0.0734, rel=1e-2)
    assert parts["sram"] == pytest.approx(0.0374, rel=1e-2)
    assert parts["overhead"] == pytest.approx(0.3 * sum(v for k, v in parts.items() if k != "overhead"))
    assert 0.5 < float(static.area_mm2[0, 0]) < 2.0


@pytest.fixture
def mobilebert_base() -> ModelShape:
    # google/mobilebert-uncased: H=512, B=128, E=128 with a trigram projection, F=512, 4 FFNs, 24 layers
    return ModelShape(num_layers=24, hidden_size=512, intermediate_size=512, num_heads=4, embedding_size=128,
                      vocab_size=30522, max_positions=512, type_vocab_size=2, num_labels=2, shared_layers=False,
                      bottleneck_size=128, attention_input="shared_bottleneck", num_feedforward_networks=4,
                      embedding_projection="word", trigram_input=True, normalization="no_norm")


def test_mobilebert_layer_charges_the_workload_macs(mobilebert_base: ModelShape) -> None:
    # dense (no pruning): the MAC energy is E_MAC per MAC of the layer and its pooler + classifier off-ramp
    static, prologue, layer = _layer(mobilebert_base, 128)
    macs = mobilebert_base.encoder_macs_per_layer(128) + mobilebert_base.offramp_weights_per_layer
    assert layer.mac_pj[0, 0] / static.mac_pj[0, 0] == pytest.approx(macs, rel=1e-12)
    # the prologue's only matmul is the trigram projection 3E -> H of every token
    assert prologue.mac_pj[0, 0] / static.mac_pj[0, 0] == pytest.approx(128 * 3 * 128 * 512, rel=1e-12)
    # storage: the 24 distinct layers' weights at 8 bits + 3/16 bias bits per value + 1 mask bit
    # (bitmask, d = 1), the off-ramps and the projection dense at 8 bits
    encoder = 24 * 835_584 * (8 + 3 / 16 + 1)
    dense = (mobilebert_base.offramp_weights + 3 * 128 * 512) * 8
    assert static.weight_storage_bytes[0, 0] == pytest.approx((encoder + dense) / 8)


def test_mobilebert_embedding_fetch_reads_one_narrow_and_two_wide_rows(mobilebert_base: ModelShape) -> None:
    # word row 128 entries * 9 bits = 1152 bits -> 9 MLC2 accesses; position and type rows
    # 512 * 9 = 4608 bits -> 36 each: 81 accesses a token, 10,368 for 128 tokens
    static, prologue, _ = _layer(mobilebert_base, 128)
    from hwmodels import envm_cell
    emb_bytes = (30522 * 128 + 514 * 512) * 9 / 8
    assert static.embedding_storage_bytes[0, 0] == pytest.approx(emb_bytes)
    arr = envm_cell("rram_mlc2").array(emb_bytes / 2 ** 20)
    assert prologue.envm_pj[0, 0] == pytest.approx(10_368 * arr.read_energy_pj_per_access[0])
