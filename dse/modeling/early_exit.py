"""BERT/ALBERT encoder with one entropy off-ramp per layer (DeeBERT/EdgeBERT style).

The encoder runs through our own functional layer loop over the Hugging Face submodules, so
that we control early exit (stop computing at the exit layer, any batch size), the hard
attention-span mask and activation hooks, while the weights stay in the HF modules
(``save_pretrained`` keeps working). ``tests/dse/modeling`` checks this loop against HF's own
forward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN

__all__ = ["EarlyExitModel", "OffRamp", "entropy", "simulate_early_exit"]


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


def _padding_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias ``[b, 1, 1, s]`` that hides padded keys."""
    bias = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    bias.masked_fill_(attention_mask == 0, torch.finfo(dtype).min)
    return bias[:, None, None, :]


class OffRamp(nn.Module):
    """Pooler (Linear + tanh on the [CLS] vector), dropout, classifier — EdgeBERT's highway."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.tanh(self.pooler(cls))))


class EarlyExitModel(nn.Module):
    """An HF ``BertModel``/``AlbertModel`` backbone plus one off-ramp after every layer.

    The off-ramp after the last layer is the model's final classifier. ``spans`` holds one hard
    attention span per layer and head (tokens, ``inf`` = unlimited): a query attends to a key
    only when their distance is within the span. The span is measured between positions
    (Sukhbaatar et al.'s relative form) rather than from the padded end as EdgeBERT's code
    does, so results never depend on padding or batch size.
    """

    def __init__(self, backbone: PreTrainedModel, num_labels: int) -> None:
        super().__init__()
        config = backbone.config
        if config.model_type not in ("bert", "albert"):
            raise ValueError(f"unsupported model type {config.model_type!r} (bert or albert)")
        self.backbone = backbone
        self.num_labels = num_labels
        self.num_layers: int = config.num_hidden_layers
        self.num_heads: int = config.num_attention_heads
        hidden = config.hidden_size
        self.off_ramps = nn.ModuleList(
            OffRamp(hidden, num_labels, config.hidden_dropout_prob) for _ in range(self.num_layers)
        )
        pooler = getattr(backbone, "pooler", None)
        for ramp in self.off_ramps:
            if isinstance(pooler, nn.Module):  # EdgeBERT copies the pretrained pooler into each
                dense = pooler.dense if hasattr(pooler, "dense") else pooler
                ramp.pooler.load_state_dict(dense.state_dict())
        self.register_buffer(
            "spans", torch.full((self.num_layers, self.num_heads), math.inf), persistent=False
        )
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
        if self.config.model_type == "bert":
            return [enc.layer[index]]
        group = int(index / (self.num_layers / self.config.num_hidden_groups))
        return list(enc.albert_layer_groups[group].albert_layers)

    def _attention(self, q_lin, k_lin, v_lin, h, bias, dropout_p):  # noqa: ANN001
        b, s, _ = h.shape
        shape = (b, s, self.num_heads, -1)
        q = q_lin(h).view(shape).transpose(1, 2)
        k = k_lin(h).view(shape).transpose(1, 2)
        v = v_lin(h).view(shape).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        return ctx.transpose(1, 2).reshape(b, s, -1)

    def _run_layer(self, index: int, h: torch.Tensor, pad_bias: torch.Tensor) -> torch.Tensor:
        bias = pad_bias
        span = self.spans[index]
        if torch.isfinite(span).any():
            s = h.shape[1]
            pos = torch.arange(s, device=h.device)
            dist = (pos[:, None] - pos[None, :]).abs().to(span.dtype)  # [s, s]
            allowed = dist[None] <= span[:, None, None]  # [heads, s, s]
            span_bias = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device)
            span_bias.masked_fill_(~allowed, torch.finfo(h.dtype).min)
            bias = pad_bias + span_bias[None]
        p = self.config.attention_probs_dropout_prob if self.training else 0.0
        hp = self.config.hidden_dropout_prob if self.training else 0.0
        for mod in self._layer_modules(index):
            if self.config.model_type == "bert":
                sa, ao = mod.attention.self, mod.attention.output
                ctx = self._attention(sa.query, sa.key, sa.value, h, bias, p)
                a = ao.LayerNorm(F.dropout(ao.dense(ctx), hp, self.training) + h)
                inter = self._act(mod.intermediate.dense(a))
                h = mod.output.LayerNorm(F.dropout(mod.output.dense(inter), hp, self.training) + a)
            else:
                att = mod.attention
                ctx = self._attention(att.query, att.key, att.value, h, bias, p)
                a = att.LayerNorm(h + F.dropout(att.dense(ctx), hp, self.training))
                ffn = mod.ffn_output(self._act(mod.ffn(a)))
                h = mod.full_layer_layer_norm(F.dropout(ffn, hp, self.training) + a)
        return h

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
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of every off-ramp: ``[layers, batch, num_labels]``."""
        return torch.stack(
            [
                ramp(h[:, 0])
                for ramp, h in zip(
                    self.off_ramps, self.hidden_states(input_ids, attention_mask, token_type_ids)
                )
            ]
        )

    def final_logits(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:  # noqa: ANN001
        """Logits of the last layer's classifier only (stage-1 training)."""
        *_, h = self.hidden_states(input_ids, attention_mask, token_type_ids)
        return self.off_ramps[-1](h[:, 0])

    def cls_features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:  # noqa: ANN001
        """[CLS] vectors after every layer: ``[layers, batch, hidden]`` (stage-2 training)."""
        return torch.stack(
            [h[:, 0] for h in self.hidden_states(input_ids, attention_mask, token_type_ids)]
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
        thr = torch.as_tensor(threshold, dtype=torch.float32).expand(self.num_layers)
        b = input_ids.shape[0]
        out_logits = torch.empty(b, self.num_labels)
        out_layer = torch.empty(b, dtype=torch.int64)
        alive = torch.arange(b)
        h = self._embed(input_ids, token_type_ids)
        pad_bias = _padding_bias(attention_mask, h.dtype)
        for index in range(self.num_layers):
            h = self._run_layer(index, h, pad_bias)
            logits = self.off_ramps[index](h[:, 0])
            done = entropy(logits) < thr[index]
            if index == self.num_layers - 1:
                done[:] = True
            out_logits[alive[done]] = logits[done].float()
            out_layer[alive[done]] = index + 1
            keep = ~done
            alive, h, pad_bias = alive[keep], h[keep], pad_bias[keep]
            if alive.numel() == 0:
                break
        return out_logits, out_layer
