"""Guards refuse to score a trial whose sampled compression knob did nothing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from dse.compression.apply import compress, encoder_linears
from dse.compression.spec import CompressionSpec
from dse.evaluation.guards import InactiveKnob, check_knobs_active
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
    without = tiny_model if knob == "weight_bits" else compress(
        tiny_model, dataclasses.replace(spec, **{knob: getattr(CompressionSpec(), knob)}))[0]
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
