"""Shared model shapes for the hardware-model tests."""

from __future__ import annotations

import pytest

from hwmodels import ModelShape


@pytest.fixture
def albert_base() -> ModelShape:
    # ALBERT-base-v2: H=768, F=3072, E=128, 12 shared layers, 30000-token vocabulary
    return ModelShape(num_layers=12, hidden_size=768, intermediate_size=3072, num_heads=12, embedding_size=128,
                      vocab_size=30000, max_positions=512, type_vocab_size=2, num_labels=2, shared_layers=True)


@pytest.fixture
def minilm() -> ModelShape:
    # all-MiniLM-L6 style BERT: 6 layers, H=384, F=1536, 12 heads, vocab 30522, 512 positions
    return ModelShape(num_layers=6, hidden_size=384, intermediate_size=1536, num_heads=12, embedding_size=384,
                      vocab_size=30522, max_positions=512, type_vocab_size=2, num_labels=2, shared_layers=False)
