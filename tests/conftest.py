"""Shared fixtures: tiny random-weight BERT/ALBERT/MobileBERT models for fast unit tests, and the fine-tune
cache the real-model (integration) tests share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AlbertConfig, AlbertModel, BertConfig, BertModel, MobileBertConfig, MobileBertModel

from dse.modeling.early_exit import EarlyExitModel


def tiny_backbone(kind: str):  # noqa: ANN201
    torch.manual_seed(0)
    if kind == "bert":
        cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64)
        return BertModel(cfg)
    if kind == "mobilebert":
        # the released layout (bottlenecks, shared q/k bottleneck, NoNorm, trigram embeddings,
        # stacked FFNs, no pooler dense: classifier_activation=False), every width tiny. NoNorm
        # does not rescale: with the default 0.02 init every off-ramp is uniform, 0.15 spreads them.
        cfg = MobileBertConfig(vocab_size=100, embedding_size=16, hidden_size=32, intra_bottleneck_size=16,
                               num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                               num_feedforward_networks=2, max_position_embeddings=64, hidden_dropout_prob=0.1,
                               initializer_range=0.15, classifier_activation=False)
        return MobileBertModel(cfg)
    cfg = AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=4,
                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    return AlbertModel(cfg)


@pytest.fixture(params=["bert", "albert", "mobilebert"])
def tiny_model(request) -> EarlyExitModel:  # noqa: ANN001
    model = EarlyExitModel(tiny_backbone(request.param), num_labels=2)
    model.eval()
    return model


@pytest.fixture
def tiny_batch() -> dict[str, torch.Tensor]:
    """Five rows of different lengths, right-padded."""
    gen = torch.Generator().manual_seed(1)
    lengths = [12, 5, 9, 3, 12]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.randint(1, 100, (n,), generator=gen)
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DSE_CACHE_DIR`` for the real-model tests: the environment's (CI gives every run a fresh one,
    so preparation is exercised there), else one per test session; either way the tests of a session
    fine-tune each model once and reuse it."""
    return Path(os.environ.get("DSE_CACHE_DIR") or tmp_path_factory.mktemp("cache"))
