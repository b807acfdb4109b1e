"""Calibrating the earlier off-ramps on a compressed model (dse.compression.offramp_calibration)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from dse.compression.apply import compress, encoder_linears
from dse.compression.offramp_calibration import TEMPERATURE_EXPONENTS
from dse.compression.spec import CompressionSpec
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import dev_layer_logits, layer_features
from dse.training.prepare import standardize_off_ramps
from tests.conftest import tiny_backbone

SPEC = CompressionSpec(encoder_pruning=0.5, weight_bits=4, weight_exp_bits=3)  # drifts the features


def rows(n: int = 48, seed: int = 0) -> EncodedSet:
    rng = np.random.default_rng(seed)
    ids = [[2, *rng.integers(5, 100, rng.integers(3, 11)).tolist(), 3] for _ in range(n)]
    return EncodedSet(ids, [[0] * len(r) for r in ids], rng.integers(0, 2, n))


def standardised(model: EarlyExitModel) -> EarlyExitModel:
    """``model`` with its earlier off-ramps standardised on training features, as stage 2 leaves them."""
    standardize_off_ramps(model.off_ramps[:-1], layer_features(model, rows(seed=1), 0)[:-1], keep_function=False)
    return model


def mean_inputs(model: EarlyExitModel, calibration: EncodedSet) -> torch.Tensor:
    return layer_features(model, calibration, 0).double().mean(1)


def test_compressed_off_ramps_see_the_reference_mean_input_on_the_calibration_rows(tiny_model) -> None:  # noqa: ANN001
    model, calibration = standardised(tiny_model), rows()
    plain, plain_report = compress(model, SPEC)
    calibrated, report = compress(model, SPEC, calibration=calibration, pad_id=0)
    earlier = model.num_layers - 1
    assert plain_report["recentred_off_ramps"] == 0 and report["recentred_off_ramps"] == earlier

    reference, compressed = mean_inputs(model, calibration), mean_inputs(calibrated, calibration)
    assert not torch.allclose(reference[:earlier], compressed[:earlier], atol=1e-3)  # the drift is real
    for i in range(earlier):  # standardised input (x - shift) has the reference's mean again
        before = reference[i] - model.off_ramps[i].input_shift.double()
        after = compressed[i] - calibrated.off_ramps[i].input_shift.double()
        torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    # only the earlier off-ramps' shifts and classifiers move: every other weight, the scales and
    # the final off-ramp stay; a classifier moves by a power of two
    for (name, a), (_, b) in zip(calibrated.state_dict().items(), plain.state_dict().items(), strict=True):
        earlier_ramp = name.startswith("off_ramps.") and int(name.split(".")[1]) < earlier
        if earlier_ramp and name.endswith("input_shift"):
            continue
        if earlier_ramp and ".classifier." in name:
            ratio = (a[b != 0] / b[b != 0]).unique()
            assert len(ratio) == 1 and math.log2(float(ratio)).is_integer(), name
            continue
        assert torch.equal(a, b), name


def test_an_overconfident_off_ramp_is_tempered_to_the_best_power_of_two(tiny_model) -> None:  # noqa: ANN001
    model, calibration = standardised(tiny_model), rows()
    with torch.no_grad():
        model.off_ramps[0].classifier.weight.mul_(64.0)  # far too sure of itself
        model.off_ramps[0].classifier.bias.mul_(64.0)
    calibrated, report = compress(model, SPEC, calibration=calibration, pad_id=0)
    assert report["tempered_off_ramps"] >= 1
    untempered = compress(model, SPEC)[0].off_ramps[0].classifier.weight  # re-centring leaves the classifier
    ratio = (calibrated.off_ramps[0].classifier.weight / untempered).detach().unique()
    assert len(ratio) == 1
    k = -math.log2(float(ratio))
    assert k.is_integer() and k >= 2  # softened by at least 4x
    feats = layer_features(calibrated, calibration, 0)[0]
    with torch.no_grad():
        before = calibrated.off_ramps[0](feats) * 2.0**k  # the logits before tempering
    labels = torch.as_tensor(calibration.labels)
    loss = {j: float(F.cross_entropy(before / 2.0**j, labels)) for j in TEMPERATURE_EXPONENTS}
    assert min(loss, key=loss.__getitem__) == k  # the best power of two on the calibration rows


def test_the_calibration_logits_are_the_calibrated_models_own(tiny_model) -> None:  # noqa: ANN001
    """A design's DVFS entropies come from these logits instead of another pass over the rows."""
    calibration = rows()
    for model in (standardised(copy.deepcopy(tiny_model)), tiny_model):  # with and without off-ramps to calibrate
        calibrated, _ = compress(model, SPEC, calibration=calibration, pad_id=0)
        torch.testing.assert_close(calibrated.calibration_logits, dev_layer_logits(calibrated, calibration, pad_id=0),
                                   rtol=0, atol=1e-5)
    assert compress(tiny_model, SPEC)[0].calibration_logits is None


def test_off_ramps_that_are_not_standardised_are_left_alone(tiny_model) -> None:  # noqa: ANN001
    plain, _ = compress(tiny_model, SPEC)
    calibrated, report = compress(tiny_model, SPEC, calibration=rows(), pad_id=0)
    assert report["recentred_off_ramps"] == report["tempered_off_ramps"] == 0
    for a, b in zip(calibrated.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_no_calibration_rows_no_calibration(tiny_model) -> None:  # noqa: ANN001
    model = standardised(tiny_model)
    _, report = compress(model, SPEC, calibration=EncodedSet([], [], np.zeros(0, dtype=np.int64)), pad_id=0)
    assert report["recentred_off_ramps"] == report["tempered_off_ramps"] == 0


def test_regression_off_ramps_are_recentred_not_tempered() -> None:
    model = standardised(EarlyExitModel(tiny_backbone("bert"), num_labels=1).eval())
    calibration = rows()
    calibration = EncodedSet(calibration.input_ids, calibration.token_type_ids,
                             np.linspace(0, 5, len(calibration)).astype(np.float32))
    _, report = compress(model, SPEC, calibration=calibration, pad_id=0)
    assert report["recentred_off_ramps"] == model.num_layers - 1 and report["tempered_off_ramps"] == 0


def test_the_reference_means_follow_in_place_updates_of_the_model(tiny_model) -> None:  # noqa: ANN001
    model, calibration = standardised(tiny_model), rows()
    compress(model, SPEC, calibration=calibration, pad_id=0)  # caches the reference means
    with torch.no_grad():
        next(iter(encoder_linears(model).values())).weight.mul_(1.5)  # a fine-tune step, say
    calibrated, _ = compress(model, SPEC, calibration=calibration, pad_id=0)
    reference, compressed = mean_inputs(model, calibration), mean_inputs(calibrated, calibration)
    for i in range(model.num_layers - 1):
        before = reference[i] - model.off_ramps[i].input_shift.double()
        after = compressed[i] - calibrated.off_ramps[i].input_shift.double()
        torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
