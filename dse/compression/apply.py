"""Apply a trial's compression to a copy of the prepared model (post-training compression)."""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Sequence

import torch
from torch import nn

from dse.compression.adaptivfloat import (AdaptivFloatFormat, attach_activation_quantizers, exponent_bias,
                                          quantize_model_weights_)
from dse.compression.offramp_calibration import calibrate_off_ramps
from dse.compression.pruning import achieved_sparsity, magnitude_mask
from dse.compression.spec import CompressionSpec
from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.device import model_device
from dse.modeling.early_exit import EarlyExitModel

__all__ = ["activation_format", "attach_activation_quantization", "calibrate_activation_biases", "compress",
           "embedding_tables", "encoder_linears", "traceable_activation_quantization", "weight_format"]


def encoder_linears(model: EarlyExitModel) -> dict[str, nn.Linear]:
    """The matmul weights EdgeBERT masks: Q, K, V, attention output and both FFN matrices; for
    MobileBERT also its bottlenecks (input, shared q/k, output) and every stacked FFN's two
    matrices. The embedding projections (ALBERT's, MobileBERT's trigram one) are not encoder weights."""
    names = ("query", "key", "value", "attention.output.dense", "intermediate.dense",
             "output.dense", "attention.dense", "ffn", "ffn_output",
             "bottleneck.input.dense", "bottleneck.attention.dense", "output.bottleneck.dense")
    return {
        n: m for n, m in model.backbone.encoder.named_modules()
        if isinstance(m, nn.Linear) and n.endswith(names) and "embedding_hidden" not in n
    }


def embedding_tables(model: EarlyExitModel) -> dict[str, nn.Embedding]:
    """Word, position and token-type tables only (not LayerNorm, not projections)."""
    emb = model.backbone.embeddings
    return {
        n: getattr(emb, n)
        for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")
        if isinstance(getattr(emb, n, None), nn.Embedding)
    }


@torch.no_grad()
def compress(model: EarlyExitModel, spec: CompressionSpec, *, calibration: EncodedSet | None = None,
             pad_id: int = 0) -> tuple[EarlyExitModel, dict[str, float]]:
    """A compressed copy of ``model`` and what was achieved (sparsities, quantized tensors).

    Order: magnitude pruning (masks baked into the weights), then AdaptivFloat fake
    quantization of every linear weight and embedding table (zeros stay zero), then the
    hard attention-span mask; then, with ``calibration`` rows (a design's DVFS training rows):
    static activation biases calibrated on them (else dynamic, per call), and the standardised
    earlier off-ramps re-centred and tempered on the compressed model
    (:mod:`dse.compression.offramp_calibration`). The copy's ``calibration_logits`` holds every
    off-ramp's logits on the calibration rows after that, ``[layers, rows, labels]`` (None
    without rows).
    """
    ranks = _sorted_magnitudes(model) if spec.encoder_pruning > 0 or spec.embedding_pruning > 0 else {}
    out = copy.deepcopy(model)
    out.eval()
    report: dict[str, float] = {}
    linears = encoder_linears(out)
    tables = embedding_tables(out)
    if spec.encoder_pruning > 0:
        for name, lin in linears.items():
            lin.weight.mul_(magnitude_mask(lin.weight, sparsity=spec.encoder_pruning, sorted_abs=ranks[f"e.{name}"]))
    if spec.embedding_pruning > 0:
        for name, emb in tables.items():
            emb.weight.mul_(magnitude_mask(emb.weight, sparsity=spec.embedding_pruning, sorted_abs=ranks[f"t.{name}"]))
    report["encoder_sparsity"] = _mean_sparsity([m.weight for m in linears.values()])
    report["embedding_sparsity"] = _mean_sparsity([m.weight for m in tables.values()])

    fmt = weight_format(spec)
    table_ids = {id(m) for m in tables.values()}
    biases = quantize_model_weights_(
        out, fmt, include=lambda _n, m: isinstance(m, nn.Linear) or id(m) in table_ids
    )
    report["quantized_tensors"] = float(len(biases))
    # The knob can only shorten spans a compression-aware fine-tune learned (inf = none learned).
    out.spans.clamp_(max=math.inf if spec.attention_span >= 512 else float(spec.attention_span))
    fmt_a = activation_format(spec)
    static = None
    if fmt_a is not None and calibration is not None and len(calibration) > 0:
        static = calibrate_activation_biases(out, fmt_a, calibration, pad_id=pad_id)
    report["activation_quantizers"] = float(len(attach_activation_quantization(out, spec, biases=static)))
    report["static_activation_biases"] = float(len(static or []))
    done, out.calibration_logits = calibrate_off_ramps(model, out, calibration, pad_id=pad_id)
    report |= {k: float(v) for k, v in done.items()}
    return out, report


def weight_format(spec: CompressionSpec) -> AdaptivFloatFormat:
    """The AdaptivFloat format every quantized weight and embedding table of ``spec`` uses."""
    return AdaptivFloatFormat(total_bits=spec.weight_bits, exp_bits=spec.weight_exp_bits,
                              variant=spec.weight_format)  # type: ignore[arg-type]


def activation_format(spec: CompressionSpec) -> AdaptivFloatFormat | None:
    """Activations use the weights' AdaptivFloat variant and exponent width (at most
    ``activation_bits - 1``), ``activation_bits`` wide (None for 0: fp32, which no study design
    has: the hardware model charges a 4..16-bit datapath, and the guards refuse a mismatch)."""
    if spec.activation_bits == 0:
        return None
    return AdaptivFloatFormat(total_bits=spec.activation_bits,
                              exp_bits=min(spec.weight_exp_bits, spec.activation_bits - 1),
                              variant=spec.weight_format)


def _activation_linears(model: EarlyExitModel) -> list[nn.Linear]:
    """The encoder matmuls whose inputs are quantized, in the order their biases are listed
    (``model.backbone.encoder.named_modules()``: ALBERT's shared ones once)."""
    ids = {id(m) for m in encoder_linears(model).values()}
    return [m for _n, m in model.backbone.encoder.named_modules() if id(m) in ids]


@torch.no_grad()
def calibrate_activation_biases(model: EarlyExitModel, fmt: AdaptivFloatFormat, rows: EncodedSet, *,
                                pad_id: int) -> list[int]:
    """One static AdaptivFloat bias per quantized matmul input of ``model`` (as it is: weights
    already quantized, spans applied), from ``max |x|`` of that input over ``rows`` (a design's
    DVFS training rows, never a scored row). With static biases a sentence's result no longer
    depends on the sentences it is batched with, nor on the batch size of the device it runs on."""
    linears = _activation_linears(model)
    amax = [0.0] * len(linears)

    def recorder(i: int):  # noqa: ANN202
        def hook(_module: nn.Module, args: tuple) -> None:
            amax[i] = max(amax[i], float(args[0].detach().abs().max()))
        return hook

    handles = [m.register_forward_pre_hook(recorder(i)) for i, m in enumerate(linears)]
    try:
        was_training = model.training
        model.eval()
        device = model_device(model)
        for batch in iter_batches(rows, batch_size=64, pad_id=pad_id):
            batch = batch.to(device)
            model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return [exponent_bias(torch.tensor([a]), fmt) for a in amax]


def attach_activation_quantization(model: EarlyExitModel, spec: CompressionSpec, *,
                                   biases: Sequence[int] | None = None) -> list:
    """Forward hooks quantizing the input of every encoder matmul; the handles, one per distinct
    linear (ALBERT's shared ones once). ``biases``: static ones
    (:func:`calibrate_activation_biases`), else per call from max |x| (dynamic)."""
    return _attach(model, activation_format(spec), biases, in_float_ops=False)


def traceable_activation_quantization(model: EarlyExitModel) -> None:
    """Swap ``model``'s activation quantizers (in place) for ones written in float operations
    alone, which ``torch.onnx.export`` and ``torch.jit.trace`` carry into a graph: a deployable
    then computes the chip's activations, as its trial did. Without static biases (a per-batch
    scale no deployable could reproduce) the quantizers are only removed."""
    for handle in getattr(model, "activation_quantizers", []):
        handle.remove()
    model.activation_quantizers = []
    biases = getattr(model, "activation_biases", None)
    if biases is not None:
        _attach(model, model.activation_format, biases, in_float_ops=True)


def _attach(model: EarlyExitModel, fmt: AdaptivFloatFormat | None, biases: Sequence[int] | None, *,
            in_float_ops: bool) -> list:
    if fmt is None:
        return []
    ids = {id(m) for m in _activation_linears(model)}
    handles = attach_activation_quantizers(model.backbone.encoder, fmt, include=lambda _n, m: id(m) in ids,
                                           biases=biases, in_float_ops=in_float_ops)
    model.activation_quantizers = handles  # what the guards check
    model.activation_format = fmt
    model.activation_biases = None if biases is None else [int(b) for b in biases]  # exported with the design
    return handles


# Sorted |w| of each prunable tensor of a source model, reused by every trial that prunes it.
_RANKS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, ...], dict[str, torch.Tensor]]]" = (
    weakref.WeakKeyDictionary())


def _sorted_magnitudes(model: EarlyExitModel) -> dict[str, torch.Tensor]:
    """|w| sorted ascending per prunable tensor, cached per model; refreshed if a weight changed."""
    tensors = {f"e.{n}": m.weight for n, m in encoder_linears(model).items()}
    tensors |= {f"t.{n}": m.weight for n, m in embedding_tables(model).items()}
    versions = tuple(w._version for w in tensors.values())  # bumped by every in-place update
    cached = _RANKS.get(model)
    if cached is None or cached[0] != versions:
        cached = (versions, {k: w.detach().abs().reshape(-1).sort().values for k, w in tensors.items()})
        _RANKS[model] = cached
    return cached[1]


def _mean_sparsity(weights: list[torch.Tensor]) -> float:
    total = sum(w.numel() for w in weights)
    return sum(achieved_sparsity(w) * w.numel() for w in weights) / total if total else 0.0
