"""Preparation learns: on a task a tiny model can learn (the label is a token's presence), every
off-ramp of the prepared model is accurate on dev rows, and distillation changes the weights.

Written against the public API only (``prepare_model``, ``train_compressed``), so it holds for
any off-ramp training that works; the thresholds are generous on purpose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizer

from dse.compression.spec import TrainingSpec
from dse.config import FinetuneConfig
from dse.modeling.batching import encode_dataset
from dse.modeling.inference import dev_layer_logits, predictions
from dse.training.prepare import load_train_rows, prepare_model
from dse.training.trainer import train_compressed

WORDS = [f"w{i}" for i in range(40)]
FINETUNE = FinetuneConfig(train_subset=None, epochs=6, batch_size=16, learning_rate=2e-3, max_train_seq_length=16,
                          offramp_train_subset=None, offramp_epochs=30, offramp_learning_rate=3e-3)


def _sentences(n: int, seed: int) -> list[tuple[str, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = list(rng.choice(WORDS, int(rng.integers(4, 9))))
        label = i % 2
        if label:  # the label is the presence of one token, anywhere in the sentence
            words.insert(int(rng.integers(0, len(words) + 1)), "zebra")
        out.append((" ".join(words), label))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny random BERT with its own word-level vocabulary, and a synthetic SST-2 folder."""
    root = tmp_path_factory.mktemp("learn")
    model_dir = root / "tiny-bert"
    model_dir.mkdir()
    vocab = model_dir / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zebra", *WORDS]) + "\n")
    BertTokenizer(str(vocab), do_lower_case=True).save_pretrained(model_dir)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + 1 + len(WORDS), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(model_dir)
    glue = root / "glue" / "SST-2"
    glue.mkdir(parents=True)
    for split, n, seed in (("train", 400, 0), ("dev", 100, 1)):
        (glue / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in _sentences(n, seed)))
    return model_dir, root / "glue"


def test_every_offramp_learns_and_distillation_changes_the_weights(world: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, glue = world
    prepared = prepare_model(model_source=str(model_dir), task="sst2", glue_dir=glue, max_seq_length=32,
                             finetune=FINETUNE, cache_dir=tmp_path)
    # every off-ramp, measured here on the dev rows (not the numbers preparation reports)
    from datasets import Dataset

    dev = _sentences(100, 1)
    rows = encode_dataset(Dataset.from_dict({"text_a": [s for s, _ in dev], "text_b": [""] * len(dev),
                                             "label": [y for _, y in dev]}),
                          BertTokenizer.from_pretrained(str(model_dir)), max_length=32)
    logits = dev_layer_logits(prepared.model, rows, pad_id=0)
    accuracy = [float((predictions(layer) == rows.labels).mean()) for layer in logits]
    assert len(accuracy) == 3 and min(accuracy) >= 0.9, accuracy

    before = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    distilled = train_compressed(
        prepared.model, parent_key=prepared.info.key, task="sst2", spec=TrainingSpec(distillation=True),
        finetune=FINETUNE, cache_dir=tmp_path / "trained",
        train_rows=lambda: load_train_rows(model_source=str(model_dir), task="sst2", glue_dir=glue, finetune=FINETUNE))
    after = distilled.model.state_dict()
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert changed, "distillation left every weight as it was"
    assert all(torch.equal(v, prepared.model.state_dict()[k]) for k, v in before.items())  # the teacher is untouched
