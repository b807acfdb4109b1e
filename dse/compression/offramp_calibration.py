"""Calibrating the earlier off-ramps on a compressed model: re-centring, then temperature.

Stage 2 standardises each earlier off-ramp's input with the training features' mean and standard
deviation (``dse.training.prepare.standardize_off_ramps``). Some features barely vary across
sentences (the [CLS] vector after layer 1 of MiniLM moves by about 1e-3), so their scales reach
10^3 to 10^4, and what weight and activation quantization or pruning change in them is blown up
with them:

* **Re-centring.** The systematic part of that change moves every sentence by many standard
  deviations the same way, and the off-ramp answers one class with full confidence (entropy early
  exit then sends every sentence out at layer 1 at chance accuracy). As bias correction does for
  quantized networks (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
  Correction", ICCV 2019), each standardised off-ramp's ``input_shift`` moves by the mean
  difference between the compressed and the uncompressed model's inputs over calibration rows.
* **Temperature.** The per-sentence part makes the off-ramps overconfident: confidently wrong
  predictions exit early. Each earlier off-ramp's logits are divided by the power of two
  ``T = 2^k`` (k in -3..8) with the lowest cross-entropy on the calibration rows (temperature
  scaling, Guo et al., ICML 2017), folded into its classifier's weights and bias: a power of two
  keeps AdaptivFloat-quantized weights exactly representable (the per-tensor exponent bias moves).

The calibration rows are a design's DVFS training rows, never a scored row. The final off-ramp and
every other weight are left as they are. Regression off-ramps (one output) get no temperature.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from dse.modeling.batching import EncodedSet
from dse.modeling.device import model_device
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import layer_features

__all__ = ["TEMPERATURE_EXPONENTS", "calibrate_off_ramps", "calibrate_off_ramps_on_features",
           "standardised_off_ramps"]

TEMPERATURE_EXPONENTS = range(-3, 9)  # T = 2^k: from sharpening 8x to softening 256x


@torch.no_grad()
def calibrate_off_ramps(reference: EarlyExitModel, compressed: EarlyExitModel, rows: EncodedSet | None, *,
                        pad_id: int) -> tuple[dict[str, int], torch.Tensor | None]:
    """Re-centre, then temper, each standardised earlier off-ramp of ``compressed`` (in place) on
    ``rows``. Returns how many off-ramps each step changed, and every off-ramp's logits on
    ``rows`` after the calibration, ``[layers, rows, labels]`` on the CPU (None without rows): a
    design's DVFS entropies come from them, without another pass over the rows."""
    if rows is None or len(rows) == 0:
        return {"recentred_off_ramps": 0, "tempered_off_ramps": 0}, None
    feats = layer_features(compressed, rows, pad_id)
    means = _reference_means(reference, rows, pad_id) if standardised_off_ramps(compressed) else None
    return calibrate_off_ramps_on_features(compressed, feats, means, torch.tensor(rows.labels))


@torch.no_grad()
def calibrate_off_ramps_on_features(model: EarlyExitModel, feats: torch.Tensor, reference_means: torch.Tensor | None,
                                    labels: torch.Tensor) -> tuple[dict[str, int], torch.Tensor]:
    """:func:`calibrate_off_ramps` on off-ramp inputs ``feats`` ``[layers, rows, hidden]`` that a
    datapath computed (a deployable's, say), against ``reference_means`` ``[layers, hidden]`` (the
    reference datapath's mean inputs on the same rows; None: no standardised off-ramp)."""
    done = {"recentred_off_ramps": 0, "tempered_off_ramps": 0}
    feats = feats.to(model_device(model), torch.float32)
    for i in standardised_off_ramps(model):
        ramp = model.off_ramps[i]
        drift = feats[i].double().mean(0).cpu() - reference_means[i]
        ramp.input_shift.add_(drift.to(ramp.input_shift.device, ramp.input_shift.dtype))
        done["recentred_off_ramps"] += 1
        if model.num_labels == 1:
            continue
        logits = ramp(feats[i]).float().cpu()
        loss = {k: float(F.cross_entropy(logits / 2.0**k, labels.long())) for k in TEMPERATURE_EXPONENTS}
        k = min(loss, key=loss.__getitem__)
        if k != 0:
            ramp.classifier.weight.mul_(2.0**-k)
            ramp.classifier.bias.mul_(2.0**-k)
            done["tempered_off_ramps"] += 1
    return done, torch.stack([ramp(f).float().cpu() for ramp, f in zip(model.off_ramps, feats)])


def standardised_off_ramps(model: EarlyExitModel) -> list[int]:
    """The earlier off-ramps whose input stage 2 standardised."""
    return [i for i, ramp in enumerate(model.off_ramps[:-1]) if not torch.all(ramp.input_scale == 1.0)]


# The uncompressed model's mean inputs, once per (model, rows) and not once per trial: refreshed
# when a parameter or buffer of the model changed in place (its version counter moved).
_REFERENCE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], EncodedSet, int, torch.Tensor]]" = (
    weakref.WeakKeyDictionary())


def _reference_means(model: EarlyExitModel, rows: EncodedSet, pad_id: int) -> torch.Tensor:
    versions = tuple(t._version for t in model.state_dict(keep_vars=True).values())
    cached = _REFERENCE.get(model)
    if cached is None or cached[0] != versions or cached[1] is not rows or cached[2] != pad_id:
        cached = (versions, rows, pad_id, layer_features(model, rows, pad_id).double().mean(1).cpu())
        _REFERENCE[model] = cached
    return cached[3]
