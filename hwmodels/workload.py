"""Transformer shape as seen by the accelerator (BERT / ALBERT / MobileBERT encoders with per-layer off-ramps).

Per encoder layer with S tokens, hidden H, FFN width F and P attended (query, key) pairs:
    Q, K, V, O projections   4 x (S x H) . (H x H)         4*S*H^2 MACs
    QK^T, AV (all heads)     2 x P*H                        MACs
    FFN                      (S x H).(H x F), (S x F).(F x H)  2*S*H*F MACs
    off-ramp                 pooler H*H (head "pooler"; none for "linear") + classifier H*C  MACs,
                             on [CLS] or on the token mean (pooling "mean": S*H more adds)
ALBERT adds the embedding projection (S x E).(E x H) once per sentence.

MobileBERT runs each layer at a bottleneck width B < H (``bottleneck_size``): an input bottleneck
H -> B (the attention residual), with ``attention_input="shared_bottleneck"`` (the released
models) one more H -> B feeding Q and K while V reads the layer input H; Q, K: B -> B, V: H -> B,
O: B -> B; ``num_feedforward_networks`` FFNs B -> F -> B in a row; an output bottleneck B -> H.
Attention products then count 2 x P*B. Its word table is E wide, looked up with its neighbours
(``trigram_input``) and projected 3E -> H; its position and type tables are H wide
(``embedding_projection="word"``). Biases and norm parameters are not weights here.

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
    """Dimensions of a BERT-family encoder classifier (BERT, ALBERT, MobileBERT)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    embedding_size: int  # = hidden_size for BERT; 128 for ALBERT and MobileBERT (the word table's width)
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    num_labels: int
    shared_layers: bool  # ALBERT shares one layer's weights across all layers
    offramp_head: str = "pooler"  # "pooler": Linear(H, H) + tanh before the classifier; "linear": classifier only
    offramp_pooling: str = "cls"  # the off-ramp reads the [CLS] vector, or the "mean" of the token vectors
    offramp_shared: bool = False  # one off-ramp head's weights serve every layer (stored once)
    # MobileBERT (the defaults are BERT/ALBERT): the layer's inner width B (0 = no bottleneck, B = H)
    bottleneck_size: int = 0
    # what Q, K, V read: "hidden" (the layer input), "bottleneck" (all the input bottleneck),
    # "shared_bottleneck" (Q, K a second H -> B bottleneck, V the layer input)
    attention_input: str = "hidden"
    num_feedforward_networks: int = 1  # FFNs in a row per layer (MobileBERT: 4)
    # "sum": the E-wide sum of the three tables is projected E -> H when E != H (ALBERT);
    # "word": only the word vector is projected, the position and type tables are H wide (MobileBERT)
    embedding_projection: str = "sum"
    trigram_input: bool = False  # the projection reads a word and its two neighbours: 3E -> H
    normalization: str = "layer_norm"  # "no_norm": MobileBERT's elementwise affine instead of LayerNorm

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "intermediate_size", "num_heads", "embedding_size",
                     "vocab_size", "max_positions", "type_vocab_size", "num_labels", "num_feedforward_networks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelShape.{name} must be a positive integer, got {value!r}")
        if isinstance(self.bottleneck_size, bool) or not isinstance(self.bottleneck_size, int) \
                or self.bottleneck_size < 0:
            raise ValueError(f"ModelShape.bottleneck_size must be an integer >= 0, got {self.bottleneck_size!r}")
        for name in ("shared_layers", "offramp_shared", "trigram_input"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelShape.{name} must be a bool, got {getattr(self, name)!r}")
        if self.attention_input not in ("hidden", "bottleneck", "shared_bottleneck"):
            raise ValueError("ModelShape.attention_input must be 'hidden', 'bottleneck' or 'shared_bottleneck', "
                             f"got {self.attention_input!r}")
        if self.attention_input != "hidden" and not self.bottleneck_size:
            raise ValueError(f"ModelShape.attention_input {self.attention_input!r} needs a bottleneck_size")
        if self.embedding_projection not in ("sum", "word"):
            raise ValueError("ModelShape.embedding_projection must be 'sum' or 'word', "
                             f"got {self.embedding_projection!r}")
        if self.normalization not in ("layer_norm", "no_norm"):
            raise ValueError(f"ModelShape.normalization must be 'layer_norm' or 'no_norm', got {self.normalization!r}")
        if self.offramp_head not in ("pooler", "linear"):
            raise ValueError(f"ModelShape.offramp_head must be 'pooler' or 'linear', got {self.offramp_head!r}")
        if self.offramp_pooling not in ("cls", "mean"):
            raise ValueError(f"ModelShape.offramp_pooling must be 'cls' or 'mean', got {self.offramp_pooling!r}")
        if self.attention_size % self.num_heads:
            name = "bottleneck_size" if self.bottleneck_size else "hidden_size"
            raise ValueError(f"{name} {self.attention_size} is not divisible by num_heads {self.num_heads}")

    @classmethod
    def from_hf_config(cls, config: Any, num_labels: int, *, offramp_head: str = "pooler",
                       offramp_pooling: str = "cls", offramp_shared: bool = False) -> "ModelShape":
        """Read a transformers BertConfig/AlbertConfig/MobileBertConfig (duck-typed attributes); the
        off-ramp design is not in it (default: EdgeBERT's pooler on [CLS], one head per layer)."""
        model_type = getattr(config, "model_type", None)
        is_albert = model_type == "albert" and hasattr(config, "embedding_size")
        hidden = int(config.hidden_size)
        mobile = {}
        if model_type == "mobilebert":
            bottleneck = bool(getattr(config, "use_bottleneck", True))
            if not bottleneck:
                attention = "hidden"
            elif getattr(config, "use_bottleneck_attention", False):
                attention = "bottleneck"
            elif getattr(config, "key_query_shared_bottleneck", True):
                attention = "shared_bottleneck"
            else:
                attention = "hidden"
            trigram = bool(getattr(config, "trigram_input", True))
            mobile = {
                "bottleneck_size": int(config.intra_bottleneck_size) if bottleneck else 0,
                "attention_input": attention,
                "num_feedforward_networks": int(getattr(config, "num_feedforward_networks", 4)),
                "embedding_projection": "word",
                "trigram_input": trigram,
                "normalization": str(getattr(config, "normalization_type", "no_norm")),
                "embedding_size": int(config.embedding_size),
            }
        return cls(**{
            "num_layers": int(config.num_hidden_layers),
            "hidden_size": hidden,
            "intermediate_size": int(config.intermediate_size),
            "num_heads": int(config.num_attention_heads),
            "embedding_size": int(config.embedding_size) if is_albert else hidden,
            "vocab_size": int(config.vocab_size),
            "max_positions": int(config.max_position_embeddings),
            "type_vocab_size": int(getattr(config, "type_vocab_size", 2)),
            "num_labels": int(num_labels),
            "shared_layers": is_albert,
            "offramp_head": offramp_head,
            "offramp_pooling": offramp_pooling,
            "offramp_shared": offramp_shared,
        } | mobile)

    @property
    def attention_size(self) -> int:
        """Width of Q, K, V, the attention output and the FFNs: B with a bottleneck, else H."""
        return self.bottleneck_size or self.hidden_size

    @property
    def head_dim(self) -> int:
        return self.attention_size // self.num_heads

    @property
    def has_embedding_projection(self) -> bool:
        """Factorised embeddings (ALBERT: E != H; MobileBERT: also a trigram input) need a projection to H."""
        if self.embedding_projection == "word":
            return self.trigram_input or self.embedding_size != self.hidden_size
        return self.embedding_size != self.hidden_size

    @property
    def attention_matrices(self) -> list[tuple[int, int]]:
        """(inputs, outputs) of one layer's prunable matrices up to the attention output, in the
        order the accelerator runs its cost terms: BERT/ALBERT Q, K, V, O (each H x H); MobileBERT
        first its input bottleneck (and shared Q/K bottleneck), then Q, K, V, O at width B."""
        h, b = self.hidden_size, self.attention_size
        if not self.bottleneck_size:
            return [(h, b)] * 4
        qk_in = h if self.attention_input == "hidden" else b
        v_in = b if self.attention_input == "bottleneck" else h
        shared = [(h, b)] if self.attention_input == "shared_bottleneck" else []
        return [(h, b), *shared, (qk_in, b), (qk_in, b), (v_in, b), (b, b)]

    @property
    def ffn_matrices(self) -> list[tuple[int, int]]:
        """(inputs, outputs) of one layer's FFN matrices (each FFN up B x F, down F x B) and, with a
        bottleneck, the output bottleneck B x H."""
        b, f = self.attention_size, self.intermediate_size
        out = [(b, self.hidden_size)] if self.bottleneck_size else []
        return [(b, f), (f, b)] * self.num_feedforward_networks + out

    @property
    def encoder_matrices(self) -> list[tuple[int, int]]:
        """(inputs, outputs) of every prunable matrix of one layer (BERT: Q, K, V, O, FFN up, FFN down)."""
        return self.attention_matrices + self.ffn_matrices

    @property
    def encoder_weights_per_layer(self) -> int:
        """Prunable matmul weights of one layer: 4*H^2 + 2*H*F for BERT/ALBERT, the sum over
        :attr:`encoder_matrices` in general (biases and norms not counted)."""
        return sum(m * n for m, n in self.encoder_matrices)

    @property
    def unique_encoder_layers(self) -> int:
        return 1 if self.shared_layers else self.num_layers

    @property
    def unique_encoder_weights(self) -> int:
        return self.encoder_weights_per_layer * self.unique_encoder_layers

    @property
    def embedding_row_widths(self) -> list[tuple[int, int]]:
        """(rows, width) looked up per token: 3 rows of E (word, position, type) for BERT/ALBERT;
        MobileBERT one E-wide word row and two H-wide ones."""
        if self.embedding_projection == "word":
            return [(1, self.embedding_size), (2, self.hidden_size)]
        return [(3, self.embedding_size)]

    @property
    def embedding_entries(self) -> int:
        """(vocab + positions + token types) * E table entries (MobileBERT: positions and types x H)."""
        if self.embedding_projection == "word":
            tables_h = self.max_positions + self.type_vocab_size
            return self.vocab_size * self.embedding_size + tables_h * self.hidden_size
        return (self.vocab_size + self.max_positions + self.type_vocab_size) * self.embedding_size

    @property
    def embedding_sum_size(self) -> int:
        """Width at which the three embeddings are summed and normalised: E (then projected), or H."""
        return self.hidden_size if self.embedding_projection == "word" else self.embedding_size

    @property
    def projection_input_size(self) -> int:
        """Input width of the embedding projection: E, or 3E with a trigram input."""
        return self.embedding_size * (3 if self.trigram_input else 1)

    @property
    def projection_weights(self) -> int:
        return self.projection_input_size * self.hidden_size if self.has_embedding_projection else 0

    @property
    def norm_elements_per_token(self) -> int:
        """Elements normalised per token in one layer: 2H for BERT/ALBERT (two LayerNorms);
        MobileBERT one per bottleneck output, after attention, after each FFN and after the output
        bottleneck."""
        if not self.bottleneck_size:
            return (1 + self.num_feedforward_networks) * self.hidden_size
        b = self.attention_size
        bottlenecks = 2 if self.attention_input == "shared_bottleneck" else 1
        return (bottlenecks + 1 + self.num_feedforward_networks) * b + self.hidden_size

    @property
    def residual_elements_per_token(self) -> int:
        """Residual additions per token in one layer: 2H for BERT/ALBERT; MobileBERT one after
        attention and after each FFN at width B, and the output bottleneck's at H."""
        if not self.bottleneck_size:
            return (1 + self.num_feedforward_networks) * self.hidden_size
        return (1 + self.num_feedforward_networks) * self.attention_size + self.hidden_size

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
        if not self.bottleneck_size and self.num_feedforward_networks == 1:
            return 4 * s * h * h + 2 * pairs * h + 2 * s * h * f
        return s * self.encoder_weights_per_layer + 2 * pairs * self.attention_size
