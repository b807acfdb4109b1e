"""The fine-tune caches read back safely: a damaged checkpoint is discarded, not a traceback (issue #16)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from dse.modeling.early_exit import EarlyExitModel
from dse.training.prepare import load_cached, load_checkpoint, save_checkpoint


class _Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _checkpoint(target: Path) -> EarlyExitModel:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)
    model = EarlyExitModel(BertModel(cfg), num_labels=2).eval()
    save_checkpoint(model, {"num_labels": 2}, target)
    return model


def _load(path: Path) -> EarlyExitModel:  # as load_prepared / train_compressed read their cache
    info = json.loads((path / "info.json").read_text())
    return load_checkpoint(path, info["num_labels"])


FILES = ["backbone/model.safetensors", "off_ramps.safetensors", "info.json", "backbone/config.json"]


@pytest.mark.parametrize("how", ["truncated", "garbage", "pickle"])
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_checkpoint_is_discarded(tmp_path: Path, name: str, how: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "prepared" / "sst2-key"
    model = _checkpoint(target)
    assert load_cached(target, _load, "fine-tuned model") is not None  # intact: loads
    path = target / name
    good = path.read_bytes()
    marker = tmp_path / "pwned"
    path.write_bytes({"truncated": good[: len(good) // 2], "garbage": bytes(range(256)) * 8,
                      "pickle": pickle.dumps({"weight": _Boom(marker)})}[how])
    assert load_cached(target, _load, "fine-tuned model") is None
    assert not target.exists()  # discarded: the caller fine-tunes again and rewrites it
    assert "damaged cached fine-tuned model" in caplog.text and str(target) in caplog.text
    assert not marker.exists()  # never unpickled
    _checkpoint(target)
    reloaded = load_cached(target, _load, "fine-tuned model")
    assert reloaded is not None
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_a_cuda_fine_tune_has_its_own_key_and_cpu_keys_are_unchanged(tmp_path: Path) -> None:
    # bf16 autocast on CUDA changes the weights: its checkpoint must not be read as the CPU one
    from dse.config import FinetuneConfig
    from dse.training.prepare import preparation_key

    (tmp_path / "config.json").write_text("{}")
    args = dict(model_source=str(tmp_path), task="sst2", max_seq_length=64, finetune=FinetuneConfig(),
                train_fingerprint="t", dev_fingerprint="d")
    cpu = preparation_key(**args)
    assert preparation_key(**args, device="cpu") == cpu  # the key of every model trained so far
    assert preparation_key(**args, device="cuda") == preparation_key(**args, device="cuda:1") != cpu


def test_a_checkpoint_is_saved_from_cpu_copies_of_the_weights(tmp_path: Path) -> None:
    model = EarlyExitModel(BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=32)), 2).to("cpu")
    save_checkpoint(model, {"num_labels": 2}, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", 2)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
