"""Backbone and config loading: the model types the early-exit model runs, and a clear refusal of others."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config

from dse.errors import ModelError
from dse.modeling.loading import load_backbone, load_model_config
from tests.conftest import tiny_backbone


@pytest.mark.parametrize("kind", ["bert", "albert", "mobilebert"])
def test_a_saved_backbone_loads_back(kind: str, tmp_path: Path) -> None:
    original = tiny_backbone(kind)
    original.save_pretrained(tmp_path)
    loaded = load_backbone(str(tmp_path))
    assert type(loaded) is type(original) and loaded.config.model_type == kind
    state = original.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    assert load_model_config(str(tmp_path / "config.json")).model_type == kind


def test_other_model_types_are_one_line_errors(tmp_path: Path) -> None:
    GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"model type 'gpt2' is not BERT, ALBERT or MobileBERT$"):
        load_model_config(str(tmp_path))
