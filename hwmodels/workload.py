"""Transformer shape as seen by the accelerator (BERT / ALBERT encoders with per-layer off-ramps).

Per encoder layer with S tokens, hidden H, FFN width F and P attended (query, key) pairs:
    Q, K, V, O projections   4 x (S x H) . (H x H)         4*S*H^2 MACs
    QK^T, AV (all heads)     2 x P*H                        MACs
    FFN                      (S x H).(H x F), (S x F).(F x H)  2*S*H*F MACs
    off-ramp                 pooler H*H (head "pooler"; none for "linear") + classifier H*C  MACs,
                             on [CLS] or on the token mean (pooling "mean": S*H more adds)
ALBERT adds the embedding projection (S x E).(E x H) once per sentence.

The attention span w is a query-key distance, the hard span of the span mask: query i attends
key j when |i - j| <= w (``dse.compression.span.hard_span_bias``). A sentence of S tokens then
has P = sum_i |{j : |i - j| <= w}| = S*(2w' + 1) - w'*(w' + 1) pairs, w' = min(floor(w), S - 1),
i.e. up to 2w + 1 keys per query, fewer near the sentence ends; P = S^2 without a span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def kept_pairs(tokens: np.ndarray, span: np.ndarray) -> np.ndarray:
    """``attended_pairs`` for float arrays already checked (tokens >= 1, span >= 0 or inf)."""
    w = np.floor(np.minimum(span, tokens - 1.0))  # the farthest kept distance inside the sentence
    return tokens * (2.0 * w + 1.0) - w * (w + 1.0)


def attended_pairs(tokens: Any, attention_span: Any = None) -> Any:
    """(query, key) pairs a span mask keeps in a sentence of ``tokens`` tokens: every (i, j) with
    ``|i - j| <= attention_span`` (None or inf = no mask: tokens^2). Broadcasts over arrays
    (float result); plain ints give an int."""
    s = np.asarray(tokens, dtype=float)
    if np.any(s < 1):
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    span = np.inf if attention_span is None else np.asarray(attention_span, dtype=float)
    if np.any(np.isnan(span)) or np.any(span < 0):
        raise ValueError(f"attention_span must be >= 0 (inf or None = full attention), got {attention_span}")
    pairs = kept_pairs(s, span)
    if np.ndim(pairs) == 0 and np.ndim(tokens) == 0 and float(pairs).is_integer():
        return int(pairs)
    return pairs


@dataclass(frozen=True)
class ModelShape:
    """Dimensions of a BERT-family encoder classifier."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    embedding_size: int  # = hidden_size for BERT; 128 for ALBERT
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    num_labels: int
    shared_layers: bool  # ALBERT shares one layer's weights across all layers
    offramp_head: str = "pooler"  # "pooler": Linear(H, H) + tanh before the classifier; "linear": classifier only
    offramp_pooling: str = "cls"  # the off-ramp reads the [CLS] vector, or the "mean" of the token vectors
    offramp_shared: bool = False  # one off-ramp head's weights serve every layer (stored once)

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "intermediate_size", "num_heads", "embedding_size",
                     "vocab_size", "max_positions", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelShape.{name} must be a positive integer, got {value!r}")
        for name in ("shared_layers", "offramp_shared"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelShape.{name} must be a bool, got {getattr(self, name)!r}")
        if self.offramp_head not in ("pooler", "linear"):
            raise ValueError(f"ModelShape.offramp_head must be 'pooler' or 'linear', got {self.offramp_head!r}")
        if self.offramp_pooling not in ("cls", "mean"):
            raise ValueError(f"ModelShape.offramp_pooling must be 'cls' or 'mean', got {self.offramp_pooling!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @classmethod
    def from_hf_config(cls, config: Any, num_labels: int, *, offramp_head: str = "pooler",
                       offramp_pooling: str = "cls", offramp_shared: bool = False) -> "ModelShape":
        """Read a transformers BertConfig/AlbertConfig (duck-typed attributes); the off-ramp design
        is not in it (default: EdgeBERT's pooler on [CLS], one head per layer)."""
        is_albert = getattr(config, "model_type", None) == "albert" and hasattr(config, "embedding_size")
        hidden = int(config.hidden_size)
        return cls(
            num_layers=int(config.num_hidden_layers),
            hidden_size=hidden,
            intermediate_size=int(config.intermediate_size),
            num_heads=int(config.num_attention_heads),
            embedding_size=int(config.embedding_size) if is_albert else hidden,
            vocab_size=int(config.vocab_size),
            max_positions=int(config.max_position_embeddings),
            type_vocab_size=int(getattr(config, "type_vocab_size", 2)),
            num_labels=int(num_labels),
            shared_layers=is_albert,
            offramp_head=offramp_head,
            offramp_pooling=offramp_pooling,
            offramp_shared=offramp_shared,
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def has_embedding_projection(self) -> bool:
        """ALBERT-style factorised embeddings need an E -> H projection."""
        return self.embedding_size != self.hidden_size

    @property
    def encoder_weights_per_layer(self) -> int:
        """Prunable matmul weights of one layer: 4*H^2 + 2*H*F (biases and LayerNorm not counted)."""
        h, f = self.hidden_size, self.intermediate_size
        return 4 * h * h + 2 * h * f

    @property
    def unique_encoder_layers(self) -> int:
        return 1 if self.shared_layers else self.num_layers

    @property
    def unique_encoder_weights(self) -> int:
        return self.encoder_weights_per_layer * self.unique_encoder_layers

    @property
    def embedding_entries(self) -> int:
        """(vocab + positions + token types) * E table entries."""
        return (self.vocab_size + self.max_positions + self.type_vocab_size) * self.embedding_size

    @property
    def projection_weights(self) -> int:
        return self.embedding_size * self.hidden_size if self.has_embedding_projection else 0

    @property
    def has_offramp_pooler(self) -> bool:
        return self.offramp_head == "pooler"

    @property
    def offramp_pooler_weights(self) -> int:
        """Pooler H*H of one off-ramp head (0 for a classifier-only head)."""
        return self.hidden_size * self.hidden_size if self.has_offramp_pooler else 0

    @property
    def offramp_weights_per_layer(self) -> int:
        """Pooler H*H (if any) + classifier H*C of one off-ramp (EdgeBERT highways).

        The off-ramp's input standardisation (a shift and a scale per feature) folds into its
        first matmul on a chip and, like biases, is not counted."""
        return self.offramp_pooler_weights + self.hidden_size * self.num_labels

    @property
    def offramp_weights(self) -> int:
        """Stored off-ramp weights: one head per layer, or one shared by every layer."""
        return self.offramp_weights_per_layer * (1 if self.offramp_shared else self.num_layers)

    def encoder_macs_per_layer(self, tokens: int, attention_span: int | None = None) -> int:
        """MACs of one encoder layer (no off-ramp) for ``tokens`` tokens; ``attention_span`` is the
        largest query-key distance attended (None = full attention)."""
        s, h, f = tokens, self.hidden_size, self.intermediate_size
        pairs = attended_pairs(s, attention_span)
        return 4 * s * h * h + 2 * pairs * h + 2 * s * h * f
