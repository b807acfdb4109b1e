"""BERT/ALBERT/MobileBERT encoder with one entropy off-ramp per layer (DeeBERT/EdgeBERT style).

The encoder runs through our own functional layer loop over the Hugging Face submodules, so
that we control early exit (stop computing at the exit layer, any batch size), the hard
and adaptive attention-span masks and activation hooks, while the weights stay in the HF modules
(``save_pretrained`` keeps working). ``tests/dse/modeling`` checks this loop against HF's own
forward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN

from dse.modeling.span import AdaptiveSpan, hard_span_bias, renormalized_probs

__all__ = ["SUPPORTED_MODEL_TYPES", "EarlyExitModel", "OffRamp", "OffRampHead", "OffRampPooling", "entropy",
           "load_off_ramps", "pool_hidden", "simulate_early_exit"]

SUPPORTED_MODEL_TYPES = ("bert", "albert", "mobilebert")
OffRampPooling = Literal["cls", "mean"]
OffRampHead = Literal["pooler", "linear"]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) over the last axis.

    EdgeBERT computes ln(sum e^x) - sum(x e^x)/sum(e^x), which is the same quantity; this
    log-softmax form is its numerically stable equivalent. Upper bound: ln(num_classes).
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def simulate_early_exit(
    layer_logits: torch.Tensor, threshold: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exit decision from cached per-layer logits ``[layers, n, classes]``.

    A sentence exits after the first layer whose off-ramp entropy is strictly below the
    threshold (scalar or one value per layer); otherwise it runs all layers. Returns the
    exiting off-ramp's logits ``[n, classes]`` and the 1-based exit layer ``[n]``.
    """
    ent = entropy(layer_logits)  # [layers, n]
    thr = torch.as_tensor(threshold, dtype=ent.dtype)
    exits = ent < (thr.reshape(-1, 1) if thr.ndim else thr)
    exits[-1] = True  # the last layer always "exits"
    exit_idx = exits.to(torch.int8).argmax(dim=0)  # first True
    logits = layer_logits[exit_idx, torch.arange(layer_logits.shape[1])]
    return logits, exit_idx.to(torch.int64) + 1


def _span_key(attention_name: str) -> str:
    """``ModuleDict`` key of an attention module's span (keys may not contain dots)."""
    return attention_name.replace(".", "__")


def _padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias ``[b, 1, 1, s]`` that hides padded keys."""
    bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    bias.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)
    return bias[:, None, None, :]


def pool_hidden(h: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """An off-ramp's input ``[b, hidden]`` from a layer's output ``[b, s, hidden]``: the [CLS]
    vector, or the mean of the vectors of the real (unpadded) tokens."""
    if pooling == "cls":
        return h[:, 0]
    m = attention_mask[:, :, None].to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class OffRamp(nn.Module):
    """Input standardisation, pooler (Linear + tanh; ``head="pooler"``, EdgeBERT's highway) or
    none (``head="linear"``), dropout, classifier.

    ``input_shift``/``input_scale`` (buffers, identity unless set) standardise the pooled vector
    per feature, ``(x - shift) * scale``, before the first matmul. Stage 2 sets them from the
    training rows' features: an early layer's [CLS] vector varies across sentences by ~1e-3 per
    feature on top of a large fixed offset, far below what the off-ramp's weights can learn to
    resolve (see ``docs/compression.md``). The affine folds into the first matmul on a chip; it
    is kept apart here so that weight quantization sees well-scaled weights.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, head: OffRampHead = "pooler") -> None:
        super().__init__()
        if head not in ("pooler", "linear"):
            raise ValueError(f"unknown off-ramp head {head!r} (pooler or linear)")
        self.head = head
        self.register_buffer("input_shift", torch.zeros(hidden_size))
        self.register_buffer("input_scale", torch.ones(hidden_size))
        self.pooler = nn.Linear(hidden_size, hidden_size) if head == "pooler" else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = (pooled - self.input_shift) * self.input_scale
        if self.pooler is not None:
            x = torch.tanh(self.pooler(x))
        return self.classifier(self.dropout(x))


def load_off_ramps(ramps: nn.ModuleList, state: dict[str, torch.Tensor]) -> None:
    """Load off-ramp weights; files written before the input standardisation existed lack its
    buffers, which then stay the identity."""
    state = dict(state)
    for i, ramp in enumerate(ramps):
        state.setdefault(f"{i}.input_shift", torch.zeros_like(ramp.input_shift))
        state.setdefault(f"{i}.input_scale", torch.ones_like(ramp.input_scale))
    ramps.load_state_dict(state)


class EarlyExitModel(nn.Module):
    """An HF ``BertModel``/``AlbertModel``/``MobileBertModel`` backbone plus one off-ramp after every layer.

    The off-ramp after the last layer is the model's final classifier. Every off-ramp reads the
    ``pooling`` of its layer's output (``cls``: the [CLS] vector, EdgeBERT; ``mean``: the mean
    of the token vectors) through a ``head`` (``pooler``: Linear + tanh, then the classifier;
    ``linear``: the classifier only). ``spans`` holds one hard
    attention span per layer and head (tokens, ``inf`` = unlimited): a query attends to a key
    only when their distance is within the span. The span is measured between positions
    (Sukhbaatar et al.'s relative form) rather than from the padded end as EdgeBERT's code
    does, so results never depend on padding or batch size.

    ``adaptive_spans`` (empty unless :meth:`attach_adaptive_spans` was called) holds one
    learnable :class:`AdaptiveSpan` per attention module — one per layer for BERT and MobileBERT,
    one per shared attention for ALBERT. In training mode its soft mask multiplies the attention
    probabilities after softmax; in eval mode its hard span (combined with ``spans`` by
    minimum) masks the scores. :meth:`bake_adaptive_spans` writes the learned hard spans into
    ``spans`` and drops the modules.
    """

    def __init__(self, backbone: PreTrainedModel, num_labels: int, *, pooling: OffRampPooling = "cls",
                 head: OffRampHead = "pooler") -> None:
        super().__init__()
        config = backbone.config
        if config.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model type {config.model_type!r} (bert, albert or mobilebert)")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown off-ramp pooling {pooling!r} (cls or mean)")
        self.pooling: OffRampPooling = pooling
        self.head: OffRampHead = head
        self.backbone = backbone
        self.num_labels = num_labels
        self.num_layers: int = config.num_hidden_layers
        self.num_heads: int = config.num_attention_heads
        hidden = config.hidden_size
        self.off_ramps = nn.ModuleList(
            OffRamp(hidden, num_labels, config.hidden_dropout_prob, head) for _ in range(self.num_layers)
        )
        # EdgeBERT copies the pretrained pooler into each off-ramp (BERT: pooler.dense; ALBERT: the
        # pooler is the Linear; MobileBERT with classifier_activation=False has none to copy)
        pooler = getattr(backbone, "pooler", None)
        dense = getattr(pooler, "dense", pooler)
        for ramp in self.off_ramps:
            if isinstance(dense, nn.Linear) and ramp.pooler is not None:
                ramp.pooler.load_state_dict(dense.state_dict())
        self.register_buffer(
            "spans", torch.full((self.num_layers, self.num_heads), math.inf), persistent=False
        )
        self.adaptive_spans = nn.ModuleDict()
        self._act = ACT2FN[config.hidden_act]

    @property
    def config(self):  # noqa: ANN201 - the HF config object
        return self.backbone.config

    # ----- encoder ---------------------------------------------------------------------------
    def _embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        h = bb.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        if self.config.model_type == "albert":
            h = bb.encoder.embedding_hidden_mapping_in(h)
        return h

    def _layer_modules(self, index: int) -> list[nn.Module]:
        """The module(s) computing encoder layer ``index`` (ALBERT: shared group layers)."""
        enc = self.backbone.encoder
        if self.config.model_type != "albert":
            return [enc.layer[index]]
        group = int(index / (self.num_layers / self.config.num_hidden_groups))
        return list(enc.albert_layer_groups[group].albert_layers)

    def _attention_names(self, index: int) -> list[str]:
        """Backbone names of the attention module(s) of layer ``index``, parallel to ``_layer_modules``."""
        if self.config.model_type != "albert":
            return [f"encoder.layer.{index}.attention.self"]
        group = int(index / (self.num_layers / self.config.num_hidden_groups))
        return [f"encoder.albert_layer_groups.{group}.albert_layers.{j}.attention"
                for j in range(self.config.inner_group_num)]

    def attention_modules(self) -> dict[str, nn.Module]:
        """Every distinct attention module by backbone name (ALBERT: the shared ones once)."""
        names = dict.fromkeys(n for i in range(self.num_layers) for n in self._attention_names(i))
        return {n: self.backbone.get_submodule(n) for n in names}

    def attach_adaptive_spans(self, *, max_span_tokens: int, ramp_tokens: int, init_tokens: float) -> nn.ModuleDict:
        """One learnable span per head of every distinct attention module (replaces any attached)."""
        self.adaptive_spans = nn.ModuleDict({
            _span_key(n): AdaptiveSpan(self.num_heads, max_span_tokens=max_span_tokens,
                                       ramp_tokens=ramp_tokens, init_tokens=init_tokens)
            for n in self.attention_modules()
        }).to(self.spans.device)
        return self.adaptive_spans

    @torch.no_grad()
    def bake_adaptive_spans(self) -> torch.Tensor:
        """Write the learned hard spans into ``spans`` (minimum with what is there); drop the modules.

        An ALBERT layer with several inner attentions gets the largest of their spans, since
        ``spans`` holds one row per layer position; with ``inner_group_num = 1`` (every
        released ALBERT) this is exact.
        """
        for index in range(self.num_layers):
            learned = [self.adaptive_spans[_span_key(n)].hard_spans()
                       for n in self._attention_names(index) if _span_key(n) in self.adaptive_spans]
            if learned:
                self.spans[index] = torch.minimum(self.spans[index], torch.stack(learned).amax(0))
        self.adaptive_spans = nn.ModuleDict()
        return self.spans.clone()

    def _attention(self, q_lin, k_lin, v_lin, h, bias, dropout_p, soft_mask=None, *, qk_input=None):  # noqa: ANN001
        """Multi-head attention of the layer input ``h``; ``qk_input`` (MobileBERT's shared bottleneck)
        feeds the query and key projections instead of ``h``."""
        b, s, _ = h.shape
        shape = (b, s, self.num_heads, -1)
        qk = h if qk_input is None else qk_input
        q = q_lin(qk).view(shape).transpose(1, 2)
        k = k_lin(qk).view(shape).transpose(1, 2)
        v = v_lin(h).view(shape).transpose(1, 2)
        if soft_mask is None:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        else:  # the adaptive span mask acts after softmax, so the fused kernel cannot be used
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
            probs = renormalized_probs(torch.softmax(scores, dim=-1), soft_mask[None])
            ctx = F.dropout(probs, dropout_p, self.training) @ v
        return ctx.transpose(1, 2).reshape(b, s, -1)

    def _span_masks(self, index: int, name: str, s: int, pad_bias: torch.Tensor):  # noqa: ANN202
        """(additive bias, soft mask or None) for one attention module of layer ``index``."""
        spans = self.spans[index]
        key = _span_key(name)
        adaptive = self.adaptive_spans[key] if key in self.adaptive_spans else None
        soft = None
        if adaptive is not None:
            if self.training:
                soft = adaptive.soft_mask(s)
            else:
                spans = torch.minimum(spans, adaptive.hard_spans())
        span_bias = hard_span_bias(spans, s, pad_bias.dtype)
        if span_bias is None:
            return pad_bias, soft
        # finfo.min + finfo.min is -inf; a row with no visible key would then softmax to NaN
        return (pad_bias + span_bias).clamp(min=torch.finfo(pad_bias.dtype).min), soft

    def _run_layer(self, index: int, h: torch.Tensor, pad_bias: torch.Tensor) -> torch.Tensor:
        s = h.shape[1]
        p = self.config.attention_probs_dropout_prob if self.training else 0.0
        hp = self.config.hidden_dropout_prob if self.training else 0.0
        for mod, name in zip(self._layer_modules(index), self._attention_names(index), strict=True):
            bias, soft = self._span_masks(index, name, s, pad_bias)
            if self.config.model_type == "bert":
                sa, ao = mod.attention.self, mod.attention.output
                ctx = self._attention(sa.query, sa.key, sa.value, h, bias, p, soft)
                a = ao.LayerNorm(F.dropout(ao.dense(ctx), hp, self.training) + h)
                inter = self._act(mod.intermediate.dense(a))
                h = mod.output.LayerNorm(F.dropout(mod.output.dense(inter), hp, self.training) + a)
            elif self.config.model_type == "mobilebert":
                h = self._run_mobilebert_layer(mod, h, bias, p, hp, soft)
            else:
                att = mod.attention
                ctx = self._attention(att.query, att.key, att.value, h, bias, p, soft)
                a = att.LayerNorm(h + F.dropout(att.dense(ctx), hp, self.training))
                ffn = mod.ffn_output(self._act(mod.ffn(a)))
                h = mod.full_layer_layer_norm(F.dropout(ffn, hp, self.training) + a)
        return h

    def _run_mobilebert_layer(self, mod: nn.Module, h: torch.Tensor, bias: torch.Tensor, p: float, hp: float,
                              soft: torch.Tensor | None) -> torch.Tensor:
        """One ``MobileBertLayer``, as HF's forward: bottlenecks H -> B around the block, attention
        (q/k from the shared bottleneck, v from the layer input in the released configuration), the
        stacked FFNs, the last FFN and the output bottleneck B -> H with its residual. The norms are
        the modules' own (``NoNorm`` or ``LayerNorm``, by ``normalization_type``)."""
        cfg = self.config
        sa, ao = mod.attention.self, mod.attention.output
        if cfg.use_bottleneck:
            layer_input = mod.bottleneck.input(h)
            if cfg.use_bottleneck_attention:
                ctx = self._attention(sa.query, sa.key, sa.value, layer_input, bias, p, soft)
            elif cfg.key_query_shared_bottleneck:
                ctx = self._attention(sa.query, sa.key, sa.value, h, bias, p, soft,
                                      qk_input=mod.bottleneck.attention(h))
            else:
                ctx = self._attention(sa.query, sa.key, sa.value, h, bias, p, soft)
            a = ao.LayerNorm(ao.dense(ctx) + layer_input)  # HF has no dropout here with bottlenecks
        else:
            ctx = self._attention(sa.query, sa.key, sa.value, h, bias, p, soft)
            a = ao.LayerNorm(F.dropout(ao.dense(ctx), hp, self.training) + h)
        for ffn in getattr(mod, "ffn", []):  # the stacked FFNs (num_feedforward_networks - 1)
            a = ffn.output.LayerNorm(ffn.output.dense(self._act(ffn.intermediate.dense(a))) + a)
        out = mod.output
        y = out.dense(self._act(mod.intermediate.dense(a)))
        if not cfg.use_bottleneck:
            return out.LayerNorm(F.dropout(y, hp, self.training) + a)
        y = out.LayerNorm(y + a)
        return out.bottleneck.LayerNorm(F.dropout(out.bottleneck.dense(y), hp, self.training) + h)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        num_layers: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield the hidden states ``[b, s, hidden]`` after each encoder layer in turn."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        h = self._embed(input_ids, token_type_ids)
        pad_bias = _padding_bias(attention_mask, h.dtype)
        for index in range(num_layers or self.num_layers):
            h = self._run_layer(index, h, pad_bias)
            yield h

    # ----- heads -----------------------------------------------------------------------------
    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The off-ramp input ``[b, hidden]`` of a layer output ``[b, s, hidden]`` (see :func:`pool_hidden`)."""
        return pool_hidden(h, attention_mask, self.pooling)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of every off-ramp: ``[layers, batch, num_labels]``."""
        return torch.stack(
            [
                ramp(self.pool(h, attention_mask))
                for ramp, h in zip(
                    self.off_ramps, self.hidden_states(input_ids, attention_mask, token_type_ids)
                )
            ]
        )

    def final_logits(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:  # noqa: ANN001
        """Logits of the last layer's classifier only (stage-1 training)."""
        *_, h = self.hidden_states(input_ids, attention_mask, token_type_ids)
        return self.off_ramps[-1](self.pool(h, attention_mask))

    def pooled_features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:  # noqa: ANN001
        """Every layer's off-ramp input (pooled): ``[layers, batch, hidden]`` (stage-2 training)."""
        return torch.stack(
            [self.pool(h, attention_mask) for h in self.hidden_states(input_ids, attention_mask, token_type_ids)]
        )

    @torch.no_grad()
    def early_exit_forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        *,
        threshold: float | torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real early-exit inference: rows leave the batch at their exit layer.

        Returns the exiting logits ``[b, num_labels]`` and the 1-based exit layer ``[b]``.
        Works for any batch size (unlike DeeBERT's scalar ``if``), because exited rows are
        dropped from the running batch instead of stopping the whole batch.
        """
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        device = input_ids.device
        thr = torch.as_tensor(threshold, dtype=torch.float32, device=device).expand(self.num_layers)
        b = input_ids.shape[0]
        out_logits = torch.empty(b, self.num_labels, device=device)
        out_layer = torch.empty(b, dtype=torch.int64, device=device)
        alive = torch.arange(b, device=device)
        h = self._embed(input_ids, token_type_ids)
        mask = attention_mask
        pad_bias = _padding_bias(mask, h.dtype)
        for index in range(self.num_layers):
            h = self._run_layer(index, h, pad_bias)
            logits = self.off_ramps[index](self.pool(h, mask))
            done = entropy(logits) < thr[index]
            if index == self.num_layers - 1:
                done[:] = True
            out_logits[alive[done]] = logits[done].float()
            out_layer[alive[done]] = index + 1
            keep = ~done
            alive, h, mask, pad_bias = alive[keep], h[keep], mask[keep], pad_bias[keep]
            if alive.numel() == 0:
                break
        return out_logits, out_layer
