"""End-to-end per-sentence latency/energy, DVFS and validation points V5, V6."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels import (CompressionProfile, DesignBatch, HardwareConfig, HardwareResult, ModelShape,
                      evaluate_configs, evaluate_hardware, evaluate_hardware_batch)

KEYS = {"mac", "sram", "envm", "dram", "leakage", "sfu", "overhead"}


def run(shape: ModelShape, tokens, exits, comp: CompressionProfile | None = None, hw: HardwareConfig | None = None,
        predicted=None) -> HardwareResult:
    return evaluate_hardware(shape, tokens=np.asarray(tokens), exit_layers=np.asarray(exits),
                             compression=comp or CompressionProfile(), hardware=hw or HardwareConfig(),
                             predicted_exit_layers=None if predicted is None else np.asarray(predicted))


def test_result_structure(minilm: ModelShape) -> None:
    r = run(minilm, [16, 64], [2, 6])
    assert set(r.energy_breakdown_pj) == KEYS
    assert r.latency_ns.shape == r.energy_pj.shape == r.voltage_v.shape == (2,)
    assert np.allclose(sum(r.energy_breakdown_pj.values()), r.energy_pj)
    assert set(r.area_breakdown_mm2) == {"pe_array", "sram", "envm", "sfu", "ldo_adpll", "overhead"}
    assert r.area_mm2 == pytest.approx(sum(r.area_breakdown_mm2.values()))
    assert r.memory_bytes == r.weight_storage_bytes + r.embedding_storage_bytes
    assert r.fraction_target_met == 1.0 and r.valid and r.invalid_reason is None


def test_minilm_sane_range(minilm: ModelShape) -> None:
    tokens = np.array([8, 16, 32, 64, 128, 256, 512])
    r = run(minilm, tokens, np.full(7, 6))
    assert np.all(np.isfinite(r.energy_pj)) and np.all(np.isfinite(r.latency_ns))
    assert np.all(r.energy_pj > 1e6 * 10) and np.all(r.energy_pj < 1e6 * 1e5)   # 10 uJ .. 100 mJ
    assert np.all(r.latency_ns > 1e4) and np.all(r.latency_ns < 1e8)             # 10 us .. 100 ms at 1 GHz
    # S=128: 6 layers of 4*128*384^2 + 2*128*128*384 + 2*128*384*1536 = 238,026,752 MACs/layer / 256
    # = 929,792 cycles ~ 0.93 ms per layer -> ~5.6 ms, plus SFU / off-ramps
    assert r.latency_ns[4] * 1e-6 == pytest.approx(6 * 0.93, rel=0.15)
    assert 0.3 < r.mean_latency_ms < 100 and 10 < r.mean_energy_uj < 1e5


def test_energy_rises_with_bits_tokens_and_layers(minilm: ModelShape) -> None:
    low = run(minilm, [64], [3], CompressionProfile(weight_bits=4, activation_bits=4, weight_exp_bits=2))
    high = run(minilm, [64], [3], CompressionProfile(weight_bits=16, activation_bits=16))
    assert high.energy_pj[0] > low.energy_pj[0]
    tok = run(minilm, [16, 32, 64, 128], [3, 3, 3, 3])
    assert np.all(np.diff(tok.energy_pj) > 0) and np.all(np.diff(tok.latency_ns) > 0)
    lay = run(minilm, [64] * 6, [1, 2, 3, 4, 5, 6])
    assert np.all(np.diff(lay.energy_pj) > 0) and np.all(np.diff(lay.latency_ns) > 0)


def test_lower_voltage_lowers_energy_and_raises_latency(albert_base: ModelShape) -> None:
    hw = HardwareConfig(sram_kb=16_384)  # weights resident: no voltage-independent DRAM term
    nominal = run(albert_base, [128], [12], CompressionProfile(encoder_density=0.4), hw)
    low = run(albert_base, [128], [12], CompressionProfile(encoder_density=0.4), hw.model_copy(update={"voltage_v": 0.6}))
    assert low.latency_ns[0] > nominal.latency_ns[0]
    assert low.energy_breakdown_pj["mac"][0] / nominal.energy_breakdown_pj["mac"][0] == pytest.approx((0.6 / 0.8) ** 2)
    assert low.energy_pj[0] < nominal.energy_pj[0]
    assert low.frequency_mhz[0] == pytest.approx(575.0, rel=0.01)


def test_sparsity_lowers_energy_not_latency(minilm: ModelShape) -> None:
    dense = run(minilm, [64], [6])
    sparse = run(minilm, [64], [6], CompressionProfile(encoder_density=0.3))
    assert sparse.energy_pj[0] < dense.energy_pj[0]
    hw = HardwareConfig(sram_kb=16_384)  # compute-bound, so only clock gating vs skipping matters
    gated = run(minilm, [64], [6], CompressionProfile(encoder_density=0.3), hw)
    dense_r = run(minilm, [64], [6], CompressionProfile(), hw)
    skipped = run(minilm, [64], [6], CompressionProfile(encoder_density=0.3), hw.model_copy(update={"zero_skipping": True}))
    assert gated.latency_ns[0] == pytest.approx(dense_r.latency_ns[0])
    assert skipped.latency_ns[0] < gated.latency_ns[0]


def test_weights_not_fitting_add_dram_energy(minilm: ModelShape) -> None:
    small = run(minilm, [64], [6], hw=HardwareConfig(sram_kb=64))
    big = run(minilm, [64], [6], hw=HardwareConfig(sram_kb=32_768))
    assert not small.weights_fit_in_sram and big.weights_fit_in_sram
    assert small.energy_breakdown_pj["dram"][0] > 0 and big.energy_breakdown_pj["dram"][0] == 0


def test_attention_span_saves_energy(albert_base: ModelShape) -> None:
    full = run(albert_base, [128], [6])
    span = run(albert_base, [128], [6], CompressionProfile(attention_span=32))
    assert span.energy_pj[0] < full.energy_pj[0] and span.latency_ns[0] < full.latency_ns[0]


def test_volatile_sram_store_leaks_more_than_envm(minilm: ModelShape) -> None:
    rram = run(minilm, [64], [6], hw=HardwareConfig(envm_cell="rram_slc"))
    sram = run(minilm, [64], [6], hw=HardwareConfig(envm_cell="sram"))
    assert sram.energy_breakdown_pj["leakage"][0] > 10 * rram.energy_breakdown_pj["leakage"][0]
    assert sram.area_breakdown_mm2["envm"] > rram.area_breakdown_mm2["envm"]


def test_invalid_cell_is_reported(albert_base: ModelShape) -> None:
    r = run(albert_base, [64], [3], hw=HardwareConfig(envm_cell="fefet"))  # 4.2 MiB > 1 MiB validated
    assert not r.valid and "fefet" in r.invalid_reason and "-1" in r.invalid_reason
    ok = run(albert_base, [64], [3], CompressionProfile(embedding_density=0.1, weight_bits=4, weight_exp_bits=2),
             HardwareConfig(envm_cell="fefet"))  # 3,905,792 * (0.4 + 1) / 8 = 0.65 MiB
    assert ok.valid


def test_dvfs_meets_target_with_lowest_voltage(albert_base: ModelShape) -> None:
    fixed = run(albert_base, [128], [12])
    hw = HardwareConfig(dvfs=True, latency_target_ms=fixed.mean_latency_ms)
    r = run(albert_base, [128, 128, 128], [12, 6, 3], hw=hw)
    assert r.target_met.all()
    assert r.voltage_v[0] == pytest.approx(0.8)
    assert r.voltage_v[2] < r.voltage_v[1] < 0.8
    assert np.all(np.diff(r.energy_pj) < 0)
    # the chosen point is the lowest grid voltage meeting the target: one 25 mV step lower misses it
    # t_lower = t(layer 1 at 0.8 V, incl. prologue) + 5 us + (l - 1) * t_layer(V* - 25 mV)
    t_first = run(albert_base, [128], [1]).latency_ns[0]
    for exits, v in zip([6, 3], r.voltage_v[1:]):
        if v - 0.025 < 0.5:
            continue
        slow = HardwareConfig(voltage_v=v - 0.025)
        t_layer = run(albert_base, [128], [2], hw=slow).latency_ns[0] - run(albert_base, [128], [1], hw=slow).latency_ns[0]
        assert t_first + 5000 + (exits - 1) * t_layer > hw.latency_target_ms * 1e6


def test_dvfs_unreachable_target_runs_at_nominal_and_is_flagged(minilm: ModelShape) -> None:
    r = run(minilm, [128], [6], hw=HardwareConfig(dvfs=True, latency_target_ms=0.01, voltage_v=0.6))
    assert r.voltage_v[0] == pytest.approx(0.8) and not r.target_met[0]


def test_dvfs_underprediction_can_miss_target(albert_base: ModelShape) -> None:
    fixed = run(albert_base, [128], [12])
    hw = HardwareConfig(dvfs=True, latency_target_ms=0.6 * fixed.mean_latency_ms)
    oracle = run(albert_base, [128], [6], hw=hw)
    wrong = run(albert_base, [128], [6], hw=hw, predicted=[2])
    assert oracle.target_met[0] and not wrong.target_met[0]
    assert wrong.voltage_v[0] < oracle.voltage_v[0]


def test_switch_time_is_charged(albert_base: ModelShape) -> None:
    hw = HardwareConfig(dvfs=True, latency_target_ms=100.0)
    r = run(albert_base, [128], [3], hw=hw)
    assert r.voltage_v[0] == pytest.approx(0.5)
    # layer 1 (and the prologue) at 0.8 V, the 5 us switch, then layers 2-3 at 0.5 V, each timed
    # from fixed-voltage runs without DVFS
    first = run(albert_base, [128], [1]).latency_ns[0]
    slow = HardwareConfig(voltage_v=0.5)
    t_layer_05 = (run(albert_base, [128], [2], hw=slow).latency_ns[0]
                  - run(albert_base, [128], [1], hw=slow).latency_ns[0])
    assert r.latency_ns[0] == pytest.approx(first + 5_000.0 + 2 * t_layer_05, rel=1e-9)


def test_batch_matches_single_and_broadcasts(minilm: ModelShape) -> None:
    comps = [CompressionProfile(), CompressionProfile(encoder_density=0.5, weight_bits=6)]
    hws = [HardwareConfig(), HardwareConfig(dvfs=True, latency_target_ms=2.0, envm_cell="pcm", vmac_lanes=8)]
    tokens, exits = np.array([20, 70, 128]), np.array([1, 4, 6])
    batch = evaluate_configs(minilm, tokens=tokens, exit_layers=exits, compressions=comps, hardwares=hws)
    assert batch.energy_pj.shape == (2, 3) and len(batch) == 2
    for k in range(2):
        single = run(minilm, tokens, exits, comps[k], hws[k])
        assert np.allclose(single.energy_pj, batch.energy_pj[k]) and np.allclose(single.latency_ns, batch.latency_ns[k])
        assert single.area_mm2 == pytest.approx(batch.area_mm2[k])
    per_design = evaluate_hardware_batch(minilm, tokens=np.stack([tokens, tokens]), exit_layers=np.stack([exits, exits]),
                                         designs=DesignBatch.from_configs(comps, hws))
    assert np.allclose(per_design.energy_pj, batch.energy_pj)


@pytest.mark.parametrize("tokens, exits, message", [
    ([0], [1], "tokens must be within 1..512"),
    ([600], [1], "tokens must be within 1..512"),
    ([64], [7], "exit_layers must be within 1..6"),
    ([64, 32], [1], "same number of sentences"),
    ([1.5], [1], "tokens must hold integers"),
])
def test_bad_sentence_inputs_raise(minilm: ModelShape, tokens, exits, message) -> None:
    with pytest.raises(ValueError, match=message):
        run(minilm, tokens, exits)


# V5 (hw-constants §8): EdgeBERT's headline energy ratios (MICRO'21 abstract: up to 7x lower energy
# than no early exit, 2.5x lower than latency-unbounded early exit), by the procedure of §8 on the
# model's EdgeBERT defaults: ALBERT-base, S = 128; (a) 12 layers at 0.8 V; (b) exit after 3.9 layers
# on average (STP's SST-2 figure) at 0.8 V; (c) the exits of (b) with DVFS to (a)'s latency, layer 1
# at the nominal 0.8 V as EdgeBERT's controller runs it; the model's whole per-sentence energy.
# Tolerance: hw-constants §8's bands, (a)/(c) in 5-9 and (b)/(c) in 2.0-3.0. The model misses both:
# with the default 64 KiB buffer no ALBERT weight set fits, and the weights streamed from DRAM
# (21.3 of (a)'s 26.7 mJ per sentence) cost the same at every voltage.
def _v5_runs(albert_base: ModelShape) -> tuple[HardwareResult, HardwareResult, HardwareResult]:
    tokens = np.full(10, 128)
    exits_b = np.array([4] * 9 + [3])  # mean 3.9
    a = run(albert_base, tokens, np.full(10, 12))
    b = run(albert_base, tokens, exits_b)
    c = run(albert_base, tokens, exits_b, hw=HardwareConfig(dvfs=True, latency_target_ms=a.mean_latency_ms))
    return a, b, c


def test_v5_procedure_meets_its_latency_target(albert_base: ModelShape) -> None:
    _, _, c = _v5_runs(albert_base)
    assert c.target_met.all() and np.all(c.voltage_v < 0.8)


@pytest.mark.validation
@pytest.mark.parametrize(("ratio", "low", "high"), [
    pytest.param("a/c", 5.0, 9.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model gives (a)/(c) = 3.38, EdgeBERT up to 7x (band 5-9)")),
    pytest.param("b/c", 2.0, 3.0, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="model gives (b)/(c) = 1.10, EdgeBERT 2.5x (band 2.0-3.0)")),
])
def test_validation_v5_edgebert_headline_ratios(albert_base: ModelShape, ratio: str, low: float,
                                                high: float) -> None:
    a, b, c = _v5_runs(albert_base)
    value = {"a/c": a.mean_energy_uj / c.mean_energy_uj, "b/c": b.mean_energy_uj / c.mean_energy_uj}[ratio]
    assert low <= value <= high


# V6 (hw-constants §8): measured efficiency of the comparable chips: FlexASR (16nm, AdaptivFloat NLP,
# JSSC'23) 2.6-7.8 TFLOPs/W across its operating points, and EdgeBERT's 12nm successor STP
# (ISSCC'23) 18.1 TFLOPs/W peak with FP4 MACs. The model's 2 * MACs / (MAC + SRAM + overhead + SFU +
# leakage energy) for the 16x16 AF8 PU (2 MiB buffer; off-chip DRAM and eNVM excluded; SRAM includes
# writes of streamed weights) at both ends of its voltage range must lie within 2.6-18.1: no less
# efficient than FlexASR's least efficient point, a node older, and no more than STP's FP4 peak.
# (hw-constants §8 rounds the band to 2-20.) Model: 3.3 at 0.8 V, 7.9 at 0.5 V.
@pytest.mark.validation
@pytest.mark.parametrize("voltage_v", [0.8, 0.5])
def test_validation_v6_efficiency_envelope(albert_base: ModelShape, voltage_v: float) -> None:
    r = run(albert_base, [128], [12], CompressionProfile(encoder_density=0.4),
            HardwareConfig(sram_kb=2048, voltage_v=voltage_v))
    macs = 12 * albert_base.encoder_macs_per_layer(128)
    core_pj = sum(r.energy_breakdown_pj[k][0] for k in ("mac", "sram", "overhead", "sfu", "leakage"))
    tflops_per_w = 2 * macs / (core_pj * 1e-12) / 1e12
    assert 2.6 <= tflops_per_w <= 18.1


# DVFS layer-1 policy (dvfs_layer1): nominal (voltage_v), previous (the rail left by the previous
# sentence), min (0.50 V)
def _dvfs(policy: str, target_ms: float = 100.0, voltage_v: float = 0.8) -> HardwareConfig:
    return HardwareConfig(dvfs=True, latency_target_ms=target_ms, dvfs_layer1=policy, voltage_v=voltage_v)


def test_layer1_min_runs_layer1_at_the_floor(albert_base: ModelShape) -> None:
    nominal = run(albert_base, [128, 128], [1, 3], hw=_dvfs("nominal"))
    low = run(albert_base, [128, 128], [1, 3], hw=_dvfs("min"))
    # a sentence leaving after layer 1 is exactly the fixed 0.5 V design's
    fixed = run(albert_base, [128], [1], hw=HardwareConfig(voltage_v=0.5))
    assert low.latency_ns[0] == pytest.approx(fixed.latency_ns[0], rel=1e-12)
    assert low.energy_pj[0] == pytest.approx(fixed.energy_pj[0], rel=1e-12)
    assert low.voltage_v[0] == pytest.approx(0.5)
    # against nominal: less energy, more time; the 3-layer sentence needs no switch (V* = 0.5 V too)
    assert np.all(low.energy_pj < nominal.energy_pj) and np.all(low.latency_ns > nominal.latency_ns)
    slow = HardwareConfig(voltage_v=0.5)
    assert low.latency_ns[1] == pytest.approx(run(albert_base, [128], [3], hw=slow).latency_ns[0], rel=1e-12)


def test_layer1_min_with_a_tight_deadline_raises_the_rest(albert_base: ModelShape) -> None:
    fixed = run(albert_base, [128], [12]).mean_latency_ms
    low = run(albert_base, [128], [12], hw=_dvfs("min", target_ms=1.3 * fixed))
    nominal = run(albert_base, [128], [12], hw=_dvfs("nominal", target_ms=1.3 * fixed))
    assert low.target_met[0] and nominal.target_met[0]
    assert low.voltage_v[0] > nominal.voltage_v[0]  # a slow layer 1 leaves less time for the rest


def test_layer1_previous_starts_where_the_last_sentence_left(albert_base: ModelShape) -> None:
    tokens, exits = [128] * 4, [3, 3, 1, 3]
    nominal = run(albert_base, tokens, exits, hw=_dvfs("nominal"))
    prev = run(albert_base, tokens, exits, hw=_dvfs("previous"))
    # the first sentence starts at voltage_v: as nominal
    assert prev.latency_ns[0] == nominal.latency_ns[0] and prev.energy_pj[0] == nominal.energy_pj[0]
    # the rail is then at 0.5 V: later sentences run every layer at 0.5 V, with no switch
    slow = HardwareConfig(voltage_v=0.5)
    for i in (1, 2, 3):
        same = run(albert_base, [128], [exits[i]], hw=slow)
        assert prev.latency_ns[i] == pytest.approx(same.latency_ns[0], rel=1e-12)
        assert prev.energy_pj[i] == pytest.approx(same.energy_pj[0], rel=1e-12)
        assert prev.energy_pj[i] < nominal.energy_pj[i]
    # order matters: the same sentences with the one exiting after layer 1 first
    swapped = run(albert_base, [128] * 4, [1, 3, 3, 3], hw=_dvfs("previous"))
    # sentence 0 exits at layer 1 and never switches: sentence 1 starts at 0.8 V again
    assert swapped.latency_ns[1] == nominal.latency_ns[0]


def test_layer1_policy_needs_dvfs(albert_base: ModelShape) -> None:
    for policy in ("previous", "min"):
        off = run(albert_base, [128, 64], [3, 2], hw=HardwareConfig(dvfs_layer1=policy))
        base = run(albert_base, [128, 64], [3, 2])
        assert np.array_equal(off.energy_pj, base.energy_pj) and np.array_equal(off.latency_ns, base.latency_ns)


def test_layer1_policies_in_one_batch_match_single_runs(minilm: ModelShape) -> None:
    tokens, exits = np.array([20, 64, 9, 33]), np.array([2, 6, 1, 4])
    hws = [_dvfs(p, target_ms=t) for p in ("nominal", "previous", "min") for t in (0.3, 5.0)]
    batch = evaluate_configs(minilm, tokens=tokens, exit_layers=exits, compressions=CompressionProfile(), hardwares=hws)
    for k, hw in enumerate(hws):
        single = run(minilm, tokens, exits, hw=hw)
        assert np.allclose(batch.latency_ns[k], single.latency_ns, rtol=1e-12)
        assert np.allclose(batch.energy_pj[k], single.energy_pj, rtol=1e-12)
