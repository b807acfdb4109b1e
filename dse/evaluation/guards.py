"""Guards: before a trial is scored, check that every compression knob it sampled is active,
and that the prepared model's off-ramp design settings (``finetune.offramp_*``) acted.

A knob that silently does nothing (a mask that never reaches the weights, a span mask skipped
at some batch size, as in EdgeBERT's own code, a quantizer that leaves tensors untouched) would
make the study credit a design with savings it does not have. Each check raises
:class:`InactiveKnob` with a reason that names the knob.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from dse.compression.apply import embedding_tables, encoder_linears
from dse.compression.spec import CompressionSpec
from dse.config import FinetuneConfig
from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.early_exit import EarlyExitModel

__all__ = ["InactiveKnob", "SPARSITY_TOLERANCE", "check_knobs_active", "check_offramp_design"]

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
        distinct = int(torch.unique(sample).numel())
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
    batch = next(iter_batches(dev.subset(row), batch_size=1, pad_id=pad_id))
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
