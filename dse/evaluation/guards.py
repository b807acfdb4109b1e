"""Guards: before a trial is scored, check that every compression knob it sampled is active,
and that the prepared model's off-ramp design settings (``finetune.offramp_*``) acted.

A knob that silently does nothing (a mask that never reaches the weights, a span mask skipped
at some batch size, as in EdgeBERT's own code, a quantizer that leaves tensors untouched) would
make the study credit a design with savings it does not have. Each check raises
:class:`InactiveKnob` with a reason that names the knob. :func:`check_activation_width` refuses a
design whose accuracy was measured with another activation format than the hardware model
charges (:func:`simulated_activation_bits` reads the width off the model that was run).

Hardware knobs that only choose how the chip works (:data:`GUARDED_HARDWARE_KNOBS`: the sparse
storage format, where the weights live, DVFS's layer-1 voltage) are checked on the hardware
model instead: a non-default value must change some figure of the design (latency, energy, area
or storage) against the same design with that knob at its default; e.g. ``dvfs_layer1`` does
nothing without DVFS, and ``weight_store: dram`` nothing where the weights never fit in SRAM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dse.compression.apply import embedding_tables, encoder_linears
from dse.compression.spec import CompressionSpec
from dse.config import KNOBS, FinetuneConfig
from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.device import model_device
from dse.modeling.early_exit import EarlyExitModel
from hwmodels import BatchResult, CompressionProfile, HardwareConfig, HardwareResult, ModelShape, evaluate_configs

__all__ = ["GUARDED_HARDWARE_KNOBS", "InactiveKnob", "SPARSITY_TOLERANCE", "check_activation_width",
           "check_hardware_knobs_active", "check_knobs_active", "check_offramp_design", "inert_hardware_knobs",
           "simulated_activation_bits"]

GUARDED_HARDWARE_KNOBS = ("sparse_format", "weight_store", "dvfs_layer1")

# Magnitude pruning keeps exactly round((1 - s) * n) weights per matrix; allow one weight of
# rounding plus a little slack for ties before calling a mask inactive.
SPARSITY_TOLERANCE = 0.005
SAMPLE = 65536  # entries per tensor whose distinct values are counted


class InactiveKnob(ValueError):
    """A sampled knob had no effect on the model; the trial must not be scored."""


def _unique(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """ALBERT shares layers: check each shared matrix once."""
    seen: set[int] = set()
    out = {}
    for name, m in modules.items():
        if id(m) not in seen:
            seen.add(id(m))
            out[name] = m
    return out


def _check_pruned(knob: str, target: float, after: dict[str, nn.Module]) -> None:
    for name, m in after.items():
        w = m.weight
        achieved = 1.0 - int(torch.count_nonzero(w)) / w.numel()
        if achieved < target - SPARSITY_TOLERANCE:
            raise InactiveKnob(f"{knob}={target:g} but {name} is only {achieved:.3f} sparse")


def _check_quantized(spec: CompressionSpec, before: dict[str, nn.Module], after: dict[str, nn.Module]) -> None:
    levels = 2 ** spec.weight_bits
    for name, m in after.items():
        w = m.weight
        if torch.equal(w, before[name].weight):
            raise InactiveKnob(f"weight_bits={spec.weight_bits} left {name} unchanged")
        # A strided sample keeps this linear-time on the 11.7M-entry word table; an
        # unquantized fp32 tensor shows far more than 2^bits distinct values in it anyway.
        flat = w.reshape(-1)
        sample = flat[:: max(1, flat.numel() // SAMPLE)]
        # numpy: torch.unique on 65k floats was ~40x slower (about 10 % of a model trial, profiled)
        distinct = int(np.unique(sample.detach().cpu().numpy()).size)
        if distinct > levels:
            raise InactiveKnob(f"weight_bits={spec.weight_bits} but {name} holds {distinct} distinct "
                               f"values (at most {levels} fit)")


@torch.no_grad()
def _check_span(spec: CompressionSpec, model: EarlyExitModel, dev: EncodedSet, pad_id: int) -> None:
    longest = int(max(dev.lengths))
    if spec.attention_span >= longest:
        raise InactiveKnob(f"attention_span={spec.attention_span} covers every dev sentence "
                           f"(longest {longest} tokens): the span mask would do nothing")
    # Probe the real forward path with the longest sentence, once with the span and once without,
    # at batch size 1: the mask must change the first layer's output.
    row = np.array([int(np.argmax(dev.lengths))])
    batch = next(iter_batches(dev.subset(row), batch_size=1, pad_id=pad_id)).to(model_device(model))
    ids, mask, types = batch.input_ids, batch.attention_mask, batch.token_type_ids
    with_span = next(model.hidden_states(ids, mask, types, num_layers=1))
    saved = model.spans.clone()
    try:
        model.spans.fill_(math.inf)
        without = next(model.hidden_states(ids, mask, types, num_layers=1))
    finally:
        model.spans.copy_(saved)
    if torch.allclose(with_span, without):
        raise InactiveKnob(f"attention_span={spec.attention_span} did not change attention")


def check_knobs_active(
    original: EarlyExitModel, compressed: EarlyExitModel, spec: CompressionSpec, *,
    dev: EncodedSet, pad_id: int,
) -> None:
    """Raise :class:`InactiveKnob` if a compression knob of ``spec`` did not act on ``compressed``."""
    lin_before, lin_after = encoder_linears(original), _unique(encoder_linears(compressed))
    emb_before, emb_after = embedding_tables(original), embedding_tables(compressed)
    if spec.encoder_pruning > 0:
        _check_pruned("encoder_pruning", spec.encoder_pruning, lin_after)
    if spec.embedding_pruning > 0:
        _check_pruned("embedding_pruning", spec.embedding_pruning, emb_after)
    _check_quantized(spec, {**lin_before, **emb_before}, {**lin_after, **emb_after})
    if spec.attention_span < 512:
        _check_span(spec, compressed, dev, pad_id)
    if spec.activation_bits:
        hooked = len(getattr(compressed, "activation_quantizers", []))
        if hooked != len(lin_after):
            raise InactiveKnob(f"activation_bits={spec.activation_bits} quantizes {hooked} of "
                               f"{len(lin_after)} encoder matmul inputs")


def _figures(hw: HardwareResult) -> tuple[np.ndarray, ...]:
    return (np.asarray(hw.latency_ns), np.asarray(hw.energy_pj), np.asarray(hw.area_mm2),
            np.asarray(hw.memory_bytes), np.asarray(hw.target_met))


def inert_hardware_knobs(shape: ModelShape, tokens: np.ndarray, exit_layers: np.ndarray,
                         predicted_exit_layers: np.ndarray | None, profiles: Sequence[CompressionProfile],
                         hardwares: Sequence[HardwareConfig],
                         results: BatchResult | Sequence[HardwareResult]) -> list[tuple[str, ...]]:
    """Per design of ``results`` (the hardware model's results for ``profiles``/``hardwares``), the
    guarded hardware knobs set away from their default that change none of its figures."""
    def result(i: int) -> HardwareResult:
        return results.design(i) if isinstance(results, BatchResult) else results[i]

    out: list[list[str]] = [[] for _ in hardwares]
    for knob in GUARDED_HARDWARE_KNOBS:
        default = KNOBS[knob].default
        rows = [i for i, h in enumerate(hardwares) if getattr(h, knob) != default]
        if not rows:
            continue
        alt = evaluate_configs(shape, tokens=tokens, exit_layers=exit_layers,
                               compressions=[profiles[i] for i in rows],
                               hardwares=[hardwares[i].model_copy(update={knob: default}) for i in rows],
                               predicted_exit_layers=predicted_exit_layers)
        for j, i in enumerate(rows):
            if all(np.array_equal(a, b) for a, b in zip(_figures(result(i)), _figures(alt.design(j)))):
                out[i].append(knob)
    return [tuple(k) for k in out]


def check_hardware_knobs_active(shape: ModelShape, tokens: np.ndarray, exit_layers: np.ndarray,
                                predicted_exit_layers: np.ndarray | None, profile: CompressionProfile,
                                hardware: HardwareConfig, result: HardwareResult) -> None:
    """Raise :class:`InactiveKnob` if a guarded hardware knob of ``hardware`` changed nothing."""
    inert = inert_hardware_knobs(shape, tokens, exit_layers, predicted_exit_layers, [profile], [hardware], [result])[0]
    if inert:
        knob = inert[0]
        hint = " (DVFS is off)" if knob == "dvfs_layer1" and not hardware.dvfs else ""
        raise InactiveKnob(f"{knob}={getattr(hardware, knob)} changed no figure of this design against "
                           f"{knob}={KNOBS[knob].default}{hint}")


def simulated_activation_bits(model: EarlyExitModel) -> int:
    """The activation width ``model``'s forward pass simulates: the AdaptivFloat width quantizing
    the input of every encoder matmul, or 0 (fp32) when some or all of them are not quantized."""
    fmt = getattr(model, "activation_format", None)
    hooked = len(getattr(model, "activation_quantizers", []))
    if fmt is None or hooked != len(_unique(encoder_linears(model))):
        return 0
    return int(fmt.total_bits)


def check_activation_width(simulated_bits: int, charged_bits: int) -> None:
    """Refuse a design whose accuracy was measured with activations of another width than the
    hardware model charges it for (``simulated_bits`` 0: fp32, which no datapath here has)."""
    if int(simulated_bits) != int(charged_bits):
        measured = "fp32 activations" if simulated_bits == 0 else f"{int(simulated_bits)}-bit activations"
        raise InactiveKnob(f"activation_bits: the hardware is costed with {int(charged_bits)}-bit activations but "
                           f"accuracy was measured with {measured}")


def check_offramp_design(model: EarlyExitModel, finetune: FinetuneConfig, evidence: Mapping[str, int]) -> None:
    """Raise :class:`InactiveKnob` if a prepared model does not carry its off-ramp settings.

    ``evidence``: what preparation counted where each setting acts
    (:attr:`dse.training.prepare.PreparedInfo.offramp_evidence`): the earlier off-ramps that
    stage 1 moved (joint training moves all, two-stage none), that stage 2 standardised (all),
    and whose stage-2 loss had the distillation term (all when ``offramp_distillation`` > 0).
    """
    earlier = model.num_layers - 1
    if model.pooling != finetune.offramp_pooling:
        raise InactiveKnob(f"offramp_pooling={finetune.offramp_pooling} but the off-ramps read {model.pooling}")
    poolers = sum(ramp.pooler is not None for ramp in model.off_ramps)
    if model.head != finetune.offramp_head or poolers != (len(model.off_ramps) if model.head == "pooler" else 0):
        raise InactiveKnob(f"offramp_head={finetune.offramp_head} but {poolers} of {len(model.off_ramps)} "
                           "off-ramps have a pooler")
    plain = [i + 1 for i, ramp in enumerate(model.off_ramps[:-1])
             if torch.all(ramp.input_scale == 1.0) and torch.all(ramp.input_shift == 0.0)]
    if plain:
        raise InactiveKnob(f"stage 2 left the input of off-ramp(s) {plain} unstandardised")

    def count(name: str) -> int:
        return int(evidence.get(name, -1))

    moved = count("stage1_trained_off_ramps")
    if moved != (earlier if finetune.offramp_training == "joint" else 0):
        raise InactiveKnob(f"offramp_training={finetune.offramp_training} but stage 1 trained {moved} of the "
                           f"{earlier} earlier off-ramps")
    distilled = count("distilled_off_ramps")
    if distilled != (earlier if finetune.offramp_distillation > 0 else 0):
        raise InactiveKnob(f"offramp_distillation={finetune.offramp_distillation:g} but {distilled} of the "
                           f"{earlier} earlier off-ramps were trained with the distillation term")
