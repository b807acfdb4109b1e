"""Guards refuse to score a trial whose sampled compression knob did nothing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dse.compression.apply import compress, encoder_linears
from dse.compression.spec import CompressionSpec
from dse.evaluation.guards import InactiveKnob, check_activation_width, check_knobs_active, simulated_activation_bits
from dse.modeling.batching import EncodedSet


def _dev(lengths: list[int]) -> EncodedSet:
    rng = np.random.default_rng(0)
    ids = [[1, *rng.integers(2, 100, n - 2).tolist(), 2] for n in lengths]
    return EncodedSet(ids, [[0] * n for n in lengths], np.zeros(len(lengths), dtype=np.int64))


DEV = _dev([12, 5, 20, 9])


@pytest.mark.parametrize(("knob", "spec"), [
    ("encoder_pruning", CompressionSpec(encoder_pruning=0.5, weight_bits=8)),
    ("embedding_pruning", CompressionSpec(embedding_pruning=0.3, weight_bits=8)),
    ("weight_bits", CompressionSpec(weight_bits=6, weight_exp_bits=3)),
    ("attention_span", CompressionSpec(weight_bits=8, attention_span=4)),
    ("activation_bits", CompressionSpec(weight_bits=8, activation_bits=8)),
])
def test_active_compression_passes(tiny_model, knob: str, spec: CompressionSpec) -> None:  # noqa: ANN001
    # the compressed model passes; the same model with this knob's effect missing is refused, by name
    out, _ = compress(tiny_model, spec)
    check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    # every compression quantizes weights, so "weights never quantized" is the original model itself
    # (activations: fp32, no longer the default, which quantizes them to the charged 8 bits)
    off = 0 if knob == "activation_bits" else getattr(CompressionSpec(), knob)
    without = tiny_model if knob == "weight_bits" else compress(tiny_model, dataclasses.replace(spec, **{knob: off}))[0]
    with pytest.raises(InactiveKnob, match=knob):
        check_knobs_active(tiny_model, without, spec, dev=DEV, pad_id=0)


def test_all_knobs_at_once_pass(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.5, embedding_pruning=0.3, weight_bits=6, weight_exp_bits=3,
                           attention_span=4, activation_bits=8)
    out, achieved = compress(tiny_model, spec)
    check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    assert achieved  # compression reports what it did


def test_mask_that_never_reached_the_weights_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.5, weight_bits=8)
    # what a lost mask looks like: quantized, but not pruned
    out, _ = compress(tiny_model, CompressionSpec(weight_bits=8))
    with pytest.raises(InactiveKnob, match=r"encoder_pruning=0.5 but .* is only 0\.0"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_unquantized_tensor_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(weight_bits=6)
    out, _ = compress(tiny_model, spec)
    name, lin = next(iter(encoder_linears(out).items()))
    with torch.no_grad():
        lin.weight.copy_(encoder_linears(tiny_model)[name].weight)
    with pytest.raises(InactiveKnob, match=f"weight_bits=6 left {name} unchanged"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_too_many_levels_fails(tiny_model) -> None:  # noqa: ANN001
    out, _ = compress(tiny_model, CompressionSpec(weight_bits=8))
    with pytest.raises(InactiveKnob, match="distinct values"):
        check_knobs_active(tiny_model, out, CompressionSpec(weight_bits=4), dev=DEV, pad_id=0)


def test_span_covering_every_sentence_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(attention_span=20)
    out, _ = compress(tiny_model, spec)
    with pytest.raises(InactiveKnob, match="longest 20 tokens"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


def test_span_mask_that_is_not_applied_fails(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(attention_span=3)
    out, _ = compress(tiny_model, spec)
    out.spans.fill_(math.inf)  # the mask was lost (as EdgeBERT's eval path does at other batch sizes)
    # the probe restores the model's spans, then compares with and without: identical -> inactive
    with pytest.raises(InactiveKnob, match="did not change attention"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    assert math.isinf(out.spans.max().item())


def test_activation_quantizers_that_were_lost_fail(tiny_model) -> None:  # noqa: ANN001
    spec = CompressionSpec(weight_bits=8, activation_bits=8)
    out, _ = compress(tiny_model, spec)
    check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)
    out.activation_quantizers.pop().remove()
    with pytest.raises(InactiveKnob, match="activation_bits=8 quantizes"):
        check_knobs_active(tiny_model, out, spec, dev=DEV, pad_id=0)


# Hardware knobs that choose how the chip works: a non-default value must change the design's figures.
HW_TOKENS, HW_EXITS = np.array([12, 40, 7, 25]), np.array([1, 3, 2, 3])


def _shape():  # noqa: ANN202
    from hwmodels import ModelShape

    return ModelShape(num_layers=3, hidden_size=64, intermediate_size=128, num_heads=4, embedding_size=64,
                      vocab_size=500, max_positions=64, type_vocab_size=2, num_labels=2, shared_layers=False)


@pytest.mark.parametrize(("knob", "value", "extra"), [
    ("sparse_format", "dense", {}),
    ("sparse_format", "relative_index", {}),
    ("weight_store", "envm", {}),
    ("weight_store", "dram", {"sram_kb": 4096.0}),
    ("dvfs_layer1", "previous", {"dvfs": True, "latency_target_ms": 10.0}),
    ("dvfs_layer1", "min", {"dvfs": True, "latency_target_ms": 10.0}),
])
def test_active_hardware_knob_passes_and_lost_one_is_refused(knob: str, value: str, extra: dict) -> None:
    from dse.evaluation.guards import check_hardware_knobs_active
    from hwmodels import CompressionProfile, HardwareConfig, evaluate_hardware

    shape, profile = _shape(), CompressionProfile(encoder_density=0.3)
    hardware = HardwareConfig(**{knob: value, **extra})

    def result(hw: HardwareConfig):  # noqa: ANN202
        return evaluate_hardware(shape, tokens=HW_TOKENS, exit_layers=HW_EXITS, compression=profile, hardware=hw)

    check_hardware_knobs_active(shape, HW_TOKENS, HW_EXITS, None, profile, hardware, result(hardware))
    # what a knob lost on its way to the hardware model looks like: the default design's figures
    lost = result(hardware.model_copy(update={knob: KNOB_DEFAULTS[knob]}))
    with pytest.raises(InactiveKnob, match=f"{knob}={value} changed no figure"):
        check_hardware_knobs_active(shape, HW_TOKENS, HW_EXITS, None, profile, hardware, lost)


KNOB_DEFAULTS = {"sparse_format": "bitmask", "weight_store": "sram", "dvfs_layer1": "nominal"}


@pytest.mark.parametrize(("knobs", "reason"), [
    ({"dvfs_layer1": "previous"}, r"dvfs_layer1=previous changed no figure .* \(DVFS is off\)"),
    ({"dvfs_layer1": "min", "dvfs": True, "voltage_v": 0.5, "latency_target_ms": 100.0}, "dvfs_layer1=min"),
    ({"weight_store": "dram", "sram_kb": 1.0}, "weight_store=dram"),  # 1 KiB: the weights stream from DRAM anyway
])
def test_trial_with_an_inert_hardware_knob_is_refused(tmp_path, knobs: dict, reason: str) -> None:  # noqa: ANN001
    from dse.evaluation import evaluate_trial

    from ..tiny_eval import tiny_config, tiny_context, tiny_train_rows

    ctx = tiny_context(tmp_path, rows=8)
    ctx.dvfs_rows = tiny_train_rows()  # what DVFS fits its predictor on
    base = tiny_config().knob_values({})
    with pytest.raises(InactiveKnob, match=reason):
        evaluate_trial(ctx, {**base, **knobs})


@pytest.mark.parametrize("knobs", [
    {"sparse_format": "dense"}, {"sparse_format": "relative_index"}, {"weight_store": "envm"},
    {"weight_store": "dram"},
    {"dvfs_layer1": "previous", "dvfs": True, "latency_target_ms": 0.05},
    {"dvfs_layer1": "min", "dvfs": True, "latency_target_ms": 0.05},
])
def test_each_new_hardware_knob_changes_the_trial(tmp_path, knobs: dict) -> None:  # noqa: ANN001
    from dse.evaluation import evaluate_trial

    from ..tiny_eval import tiny_config, tiny_context, tiny_train_rows

    ctx = tiny_context(tmp_path, rows=8)
    ctx.dvfs_rows = tiny_train_rows()
    base = {**tiny_config().knob_values({}), **{k: v for k, v in knobs.items() if k not in KNOB_DEFAULTS}}
    before = evaluate_trial(ctx, base).metrics
    after = evaluate_trial(ctx, {**base, **knobs}).metrics
    changed = {k for k in ("energy_uj", "latency_ms", "area_mm2", "memory_mb") if after[k] != before[k]}
    assert changed, knobs
    if "sparse_format" in knobs:
        assert "memory_mb" in changed
    if knobs.get("weight_store") == "envm":
        assert after["area_mm2"] > before["area_mm2"]


@pytest.mark.parametrize(("knobs", "reason"), [
    ({"dvfs_layer1": "min"}, r"dvfs_layer1=min .*\(DVFS is off\)"),
    ({"weight_store": "dram", "sram_kb": 1.0}, r"weight_store=dram .*do not fit"),
])
def test_certainly_inert_hardware_knobs_fail_before_the_model_runs(knobs: dict, reason: str) -> None:
    from dse.evaluation import hardware_bounds

    from ..tiny_eval import tiny_config, tiny_context

    ctx = tiny_context(None, rows=4, baseline_points=50.0)
    base = tiny_config().knob_values({})
    with pytest.raises(InactiveKnob, match=reason):
        hardware_bounds(ctx, {**base, **knobs})
    hardware_bounds(ctx, {**base, **knobs, "dvfs": True, "sram_kb": 4096.0})  # where they act: bounds as usual


def test_the_default_design_simulates_the_activation_width_it_is_charged(tiny_model) -> None:  # noqa: ANN001
    # issue #15 item 3: the hardware model charges 8-bit activations by default, so the accuracy
    # side must run them through the 8-bit AdaptivFloat quantizer by default too
    from dse.config import KNOBS
    from dse.evaluation.score import compression_profile

    spec = CompressionSpec.from_knobs({n: k.default for n, k in KNOBS.items()})
    out, _ = compress(tiny_model, spec)
    assert simulated_activation_bits(out) == compression_profile(spec).activation_bits == 8
    assert simulated_activation_bits(tiny_model) == 0  # fp32
    out.activation_quantizers.pop().remove()  # one matmul input left in fp32: not an 8-bit datapath
    assert simulated_activation_bits(out) == 0


def test_a_design_measured_at_another_activation_width_is_refused(tmp_path) -> None:  # noqa: ANN001
    from dse.evaluation.cache import eval_key
    from dse.evaluation.score import score_design

    from ..tiny_eval import tiny_config, tiny_context

    check_activation_width(8, 8)
    with pytest.raises(InactiveKnob, match="costed with 8-bit activations but accuracy was measured with fp32"):
        check_activation_width(0, 8)
    knobs = tiny_config().knob_values({})
    ctx = tiny_context(tmp_path)
    score_design(ctx, knobs)
    spec = CompressionSpec.from_knobs(knobs)
    path = tmp_path / f"{eval_key(ctx, spec)}.npz"
    with np.load(path) as saved:  # the same entry, but its logits measured with 6-bit activations
        arrays = {**{k: saved[k] for k in saved.files}, "activation_bits": np.asarray(6)}
    np.savez(path, **arrays)
    with pytest.raises(InactiveKnob, match="costed with 8-bit activations but accuracy was measured with 6-bit"):
        score_design(tiny_context(tmp_path), knobs)


# ----- off-ramp design settings (preparation-level) -------------------------------------------
OFFRAMP_SETTINGS = {"offramp_pooling": "mean", "offramp_head": "linear", "offramp_training": "joint",
                    "offramp_distillation": 0.5}


def _prepared(finetune, pooling: str | None = None, head: str | None = None):  # noqa: ANN001, ANN202
    """A tiny BERT run through the real stage 1 + stage 2 of ``finetune``: the model and its evidence."""
    from dse.modeling.early_exit import EarlyExitModel
    from dse.training.prepare import fine_tune_off_ramps
    from tests.conftest import tiny_backbone
    from tests.dse.training.test_trainer import synthetic_rows

    model = EarlyExitModel(tiny_backbone("bert"), 2, pooling=pooling or finetune.offramp_pooling,
                           head=head or finetune.offramp_head)
    evidence, _ = fine_tune_off_ramps(model, synthetic_rows(), finetune, pad_id=0)
    return model.eval(), evidence


@pytest.mark.parametrize("knob", [None, *OFFRAMP_SETTINGS])
def test_every_off_ramp_setting_acts_and_an_inert_one_is_refused(knob: str | None, monkeypatch) -> None:  # noqa: ANN001
    """Each setting (alone, and all together) passes on a really prepared model; the same setting
    made inert — the model built without it, or the training step that carries it bypassed — is
    refused by name."""
    import dse.training.prepare as prepare
    from dse.evaluation.guards import check_offramp_design
    from tests.dse.training.test_trainer import FINETUNE

    settings = OFFRAMP_SETTINGS if knob is None else {knob: OFFRAMP_SETTINGS[knob]}
    finetune = FINETUNE.model_copy(update=settings)
    model, evidence = _prepared(finetune)
    check_offramp_design(model, finetune, evidence)
    if knob is None:
        return
    if knob == "offramp_pooling":
        model, evidence = _prepared(finetune, pooling="cls")
    elif knob == "offramp_head":
        model, evidence = _prepared(finetune, head="pooler")
    elif knob == "offramp_training":  # stage 1 handed only the final off-ramp to the optimiser
        real = prepare.stage1_parameters
        monkeypatch.setattr(prepare, "stage1_parameters", lambda m, f, **_: real(m, f))
        model, evidence = _prepared(finetune)
    else:  # stage 2 never received the setting
        model, evidence = _prepared(finetune.model_copy(update={"offramp_distillation": 0.0}))
    with pytest.raises(InactiveKnob, match=knob):
        check_offramp_design(model, finetune, evidence)


def test_distillation_lost_on_the_way_to_the_linear_solver_is_refused(monkeypatch) -> None:  # noqa: ANN001
    import dse.training.prepare as prepare
    from dse.evaluation.guards import check_offramp_design
    from tests.dse.training.test_trainer import FINETUNE

    finetune = FINETUNE.model_copy(update={"offramp_head": "linear", "offramp_distillation": 0.5})
    real = prepare.fit_linear_head
    monkeypatch.setattr(prepare, "fit_linear_head", lambda *a, **k: real(*a, **{**k, "teacher": None}))
    model, evidence = _prepared(finetune)
    with pytest.raises(InactiveKnob, match="offramp_distillation"):
        check_offramp_design(model, finetune, evidence)


def test_unstandardised_off_ramps_are_refused(monkeypatch) -> None:  # noqa: ANN001
    import dse.training.prepare as prepare
    from dse.evaluation.guards import check_offramp_design
    from tests.dse.training.test_trainer import FINETUNE

    monkeypatch.setattr(prepare, "standardize_off_ramps", lambda *a, **k: None)
    model, evidence = _prepared(FINETUNE)
    with pytest.raises(InactiveKnob, match="unstandardised"):
        check_offramp_design(model, FINETUNE, evidence)
