"""An early-exit model's steps as modules that exporters trace: the embedding step, each encoder
layer with its off-ramp, and the attention bias they build from the mask. The ONNX, LiteRT and
TorchScript deployables all run these, so each runs the model's own forward code."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from dse.compression.apply import traceable_activation_quantization
from dse.modeling.early_exit import EarlyExitModel, pool_hidden

__all__ = ["EmbedStep", "LayerStep", "attention_bias", "traceable_copy"]

LOW = float(torch.finfo(torch.float32).min)  # the additive bias that hides a key


def attention_bias(attention_mask: torch.Tensor, spans: Optional[torch.Tensor]) -> torch.Tensor:
    """The padding and attention-span bias ``[b, heads, s, s]`` of ``attention_mask`` ``[b, s]``,
    with ``spans`` ``[heads]`` (inf: unlimited), computed in the graph for any sequence length;
    without ``spans``, the padding bias ``[b, 1, 1, s]`` alone (as the model has it when no span
    is limited)."""
    low = -3.4028234663852886e38  # LOW, written here: TorchScript (the legacy format) reads no global
    s = attention_mask.shape[1]
    pad = torch.zeros(attention_mask.shape, dtype=torch.float32).masked_fill(attention_mask == 0, low)
    if spans is None:
        return pad[:, None, None, :]
    pos = torch.arange(s)
    dist = (pos[:, None] - pos[None, :]).abs().float()
    span = torch.zeros(dist.shape, dtype=torch.float32)[None].masked_fill(dist[None] > spans[:, None, None], low)
    return (pad[:, None, None, :] + span[None]).clamp(min=low)


class EmbedStep(nn.Module):
    """``(input_ids, token_type_ids) -> hidden [b, s, H]``: the model's own embedding step."""

    def __init__(self, model: EarlyExitModel) -> None:
        super().__init__()
        self.backbone = model.backbone.embeddings  # registered: the tables become initializers
        if model.config.model_type == "albert":
            self.mapping = model.backbone.encoder.embedding_hidden_mapping_in
        self.__dict__["_model"] = model  # unregistered: only what _embed reads is exported

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.__dict__["_model"]._embed(input_ids, token_type_ids)


class LayerStep(nn.Module):
    """``(hidden, attention_mask) -> (hidden', logits)``: layer ``index`` and its off-ramp on the
    model's pooling of the layer output (the span per head is a constant of the graph)."""

    def __init__(self, model: EarlyExitModel, index: int, spans: torch.Tensor) -> None:
        super().__init__()
        self.mods = nn.ModuleList(model._layer_modules(index))
        self.ramp = model.off_ramps[index]
        self.register_buffer("spans", spans.float().clone())  # [heads]; inf = unlimited
        # decided here, not in the graph: no span bias at all when no head is limited (a fixed-length
        # converter would otherwise store a [heads, s, s] constant of zeros)
        self.limited = bool(torch.isfinite(spans).any())
        self.__dict__["_model"] = model
        self.index = index

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.__dict__["_model"]
        bias = attention_bias(attention_mask, self.spans if self.limited else None)
        h = model._run_layer(self.index, hidden, bias)
        return h, self.ramp(pool_hidden(h, attention_mask, model.pooling)).float()


def traceable_copy(model: EarlyExitModel) -> EarlyExitModel:
    """An eval copy whose AdaptivFloat activation quantizers are written in traceable float
    operations, and whose layers take the bias as given (the steps build padding + span bias
    themselves: the model's own span mask branches on the sequence length in Python, which a
    graph with a dynamic length cannot hold)."""
    model = copy.deepcopy(model).eval()
    traceable_activation_quantization(model)
    model.__dict__["_span_masks"] = lambda index, name, s, pad_bias: (pad_bias, None)
    return model
