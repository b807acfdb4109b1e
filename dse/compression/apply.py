"""Apply a trial's compression to a copy of the prepared model (post-training compression)."""

from __future__ import annotations

import copy
import math
import weakref

import torch
from torch import nn

from dse.compression.adaptivfloat import AdaptivFloatFormat, attach_activation_quantizers, quantize_model_weights_
from dse.compression.pruning import achieved_sparsity, magnitude_mask
from dse.compression.spec import CompressionSpec
from dse.modeling.early_exit import EarlyExitModel

__all__ = ["activation_format", "attach_activation_quantization", "compress", "embedding_tables", "encoder_linears",
           "weight_format"]


def encoder_linears(model: EarlyExitModel) -> dict[str, nn.Linear]:
    """The matmul weights EdgeBERT masks: Q, K, V, attention output and both FFN matrices."""
    names = ("query", "key", "value", "attention.output.dense", "intermediate.dense",
             "output.dense", "attention.dense", "ffn", "ffn_output")
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
def compress(model: EarlyExitModel, spec: CompressionSpec) -> tuple[EarlyExitModel, dict[str, float]]:
    """A compressed copy of ``model`` and what was achieved (sparsities, quantized tensors).

    Order: magnitude pruning (masks baked into the weights), then AdaptivFloat fake
    quantization of every linear weight and embedding table (zeros stay zero), then the
    hard attention-span mask.
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
    report["activation_quantizers"] = float(len(attach_activation_quantization(out, spec)))
    # The knob can only shorten spans a compression-aware fine-tune learned (inf = none learned).
    out.spans.clamp_(max=math.inf if spec.attention_span >= 512 else float(spec.attention_span))
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


def attach_activation_quantization(model: EarlyExitModel, spec: CompressionSpec) -> list:
    """Forward hooks quantizing the input of every encoder matmul (per call, bias from max |x|);
    the handles, one per distinct linear (ALBERT's shared ones once)."""
    fmt = activation_format(spec)
    if fmt is None:
        return []
    ids = {id(m) for m in encoder_linears(model).values()}
    handles = attach_activation_quantizers(model.backbone.encoder, fmt, include=lambda _n, m: id(m) in ids)
    model.activation_quantizers = handles  # what the guards check
    model.activation_format = fmt
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
