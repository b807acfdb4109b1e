"""Compression-aware fine-tune on tiny random models and synthetic rows: targets, cache, sharing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AlbertConfig, AlbertModel

from dse.compression.apply import embedding_tables, encoder_linears
from dse.compression.pruning import achieved_sparsity
from dse.compression.spec import TrainingSpec
from dse.config import FinetuneConfig
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from dse.training.trainer import CompressionTrainingConfig, train_compressed, training_key

FINETUNE = FinetuneConfig(train_subset=None, batch_size=8, offramp_train_subset=None, offramp_epochs=2)
ROOT = Path(__file__).resolve().parents[3]
# the staged ALBERT tokenizer, found like the GLUE folder: $DSE_ALBERT_DIR, else beside the repository
ALBERT_DIR = Path(os.environ.get("DSE_ALBERT_DIR") or ROOT.parent / "shared" / "data" / "models" / "albert-base-v2")


def albert_dir() -> Path:
    """The tokenizer folder; missing: a skip on a laptop, a failure in CI (where it must be staged)."""
    if not (ALBERT_DIR / "spiece.model").is_file():
        message = f"staged ALBERT tokenizer missing at {ALBERT_DIR} (set DSE_ALBERT_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return ALBERT_DIR


def synthetic_rows(n: int = 40, vocab: int = 100) -> EncodedSet:
    rng = np.random.default_rng(0)
    ids = [[2, *rng.integers(5, vocab, rng.integers(3, 11)).tolist(), 3] for _ in range(n)]
    labels = np.array([int(row[1] > vocab // 2) for row in ids])  # learnable from one token
    return EncodedSet(ids, [[0] * len(r) for r in ids], labels)


class Loader:
    """Counts how often the trainer asks for training rows (it must not on a cache hit)."""

    def __init__(self, rows: EncodedSet) -> None:
        self.rows, self.calls = rows, 0

    def __call__(self) -> tuple[EncodedSet, int]:
        self.calls += 1
        return self.rows, 0


def batch_of(rows: EncodedSet) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows.input_ids)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows.input_ids):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("method", ["magnitude", "movement"])
def test_trains_to_target_sparsity_and_hits_the_cache(tiny_model: EarlyExitModel, tmp_path, method) -> None:  # noqa: ANN001
    rows = synthetic_rows()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    spec = TrainingSpec(pruning_method=method, train_pruning=0.6, train_embedding_pruning=0.3,
                        span_init=2.0, distillation=True)
    config = CompressionTrainingConfig(max_span_tokens=16, span_ramp_tokens=2)
    loader = Loader(rows)
    kwargs = dict(parent_key="parent0", task="sst2", spec=spec, finetune=FINETUNE, train_rows=loader,
                  config=config, cache_dir=tmp_path)
    first = train_compressed(tiny_model, **kwargs)
    assert not first.cache_hit and loader.calls == 1
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())  # parent untouched
    for name, lin in encoder_linears(first.model).items():
        n = lin.weight.numel()  # exactly round(0.4 n) weights kept per matrix
        assert achieved_sparsity(lin.weight) == pytest.approx(1 - round(0.4 * n) / n)
    assert all(abs(s - 0.6) < 0.01 for s in first.info["matrix_sparsity"].values())
    for emb in embedding_tables(first.model).values():
        assert achieved_sparsity(emb.weight) >= 0.3 - 1 / emb.weight.numel()
    assert torch.isfinite(first.model.spans).all() and first.info["spans"] == first.model.spans.tolist()
    assert len(first.model.adaptive_spans) == 0  # baked

    second = train_compressed(tiny_model, **kwargs)
    assert second.cache_hit and loader.calls == 1 and second.path == first.path
    batch = batch_of(rows)
    assert torch.allclose(second.model(**batch), first.model(**batch), atol=1e-5)
    assert torch.equal(second.model.spans, first.model.spans)
    other = train_compressed(tiny_model, **{**kwargs, "spec": spec.model_copy(update={"train_pruning": 0.5})})
    assert not other.cache_hit and other.path != first.path


def test_global_topk_meets_the_overall_target(tmp_path) -> None:  # noqa: ANN001
    from tests.conftest import tiny_backbone

    model = EarlyExitModel(tiny_backbone("bert"), 2).eval()
    spec = TrainingSpec(pruning_method="movement", train_pruning=0.5)
    out = train_compressed(model, parent_key="p", task="sst2", spec=spec, finetune=FINETUNE,
                           train_rows=Loader(synthetic_rows()), cache_dir=tmp_path,
                           config=CompressionTrainingConfig(global_topk=True))
    weights = [lin.weight for lin in encoder_linears(out.model).values()]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert zeros / total == pytest.approx(0.5, abs=1 / total + 1e-9)


def test_training_spec_canonical_forms() -> None:
    assert TrainingSpec().is_noop
    assert TrainingSpec(train_epochs=3).is_noop  # nothing to train: epochs do not matter
    assert TrainingSpec(pruning_method="magnitude").is_noop  # a method without a target
    assert TrainingSpec(train_pruning=0.5).is_noop  # a target without a method
    assert not TrainingSpec(distillation=True).is_noop
    knobs = {"pruning_method": "movement", "train_pruning": 0.5, "span_init": 0.0, "exit_threshold": 0.2}
    spec = TrainingSpec.from_knobs(knobs)
    assert spec == TrainingSpec(pruning_method="movement", train_pruning=0.5)
    config = CompressionTrainingConfig()
    assert training_key("a", spec, config) != training_key("b", spec, config)
    assert training_key("a", TrainingSpec(pruning_method="none", train_pruning=0.3, distillation=True), config) \
        == training_key("a", TrainingSpec(distillation=True), config)
    # where it trained: bf16 autocast on CUDA changes the weights; CPU keys stay as they were
    assert training_key("a", spec, config, "cpu") == training_key("a", spec, config)
    assert training_key("a", spec, config, "cuda:0") == training_key("a", spec, config, "cuda") \
        != training_key("a", spec, config)


def test_noop_spec_is_refused(tiny_model: EarlyExitModel, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="trains nothing"):
        train_compressed(tiny_model, parent_key="p", task="sst2", spec=TrainingSpec(), finetune=FINETUNE,
                         train_rows=Loader(synthetic_rows()), cache_dir=tmp_path)


def test_albert_shares_masks_and_spans_with_the_real_tokenizer(tmp_path) -> None:  # noqa: ANN001
    """One shared layer applied 4 times: 6 masks, one span set, 4 off-ramps (one per position)."""
    from datasets import Dataset
    from transformers import AlbertTokenizer

    from dse.modeling.batching import encode_dataset

    tokenizer = AlbertTokenizer.from_pretrained(str(albert_dir()))
    texts = ["a gripping, beautifully acted film", "dull and far too long", "the best movie of the year",
             "a tedious mess", "warm, funny and moving", "i want my money back"] * 6
    ds = Dataset.from_dict({"text_a": texts, "text_b": [""] * len(texts), "label": [1, 0, 1, 0, 1, 0] * 6})
    rows = encode_dataset(ds, tokenizer, max_length=32)
    assert rows.input_ids[1][:2] == [2, tokenizer.convert_tokens_to_ids("▁dull")]  # real pieces, not <unk>
    torch.manual_seed(0)
    backbone = AlbertModel(AlbertConfig(vocab_size=tokenizer.vocab_size, embedding_size=16, hidden_size=32,
                                        num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
                                        max_position_embeddings=64))
    model = EarlyExitModel(backbone, 2).eval()
    assert len(model.off_ramps) == 4
    spec = TrainingSpec(pruning_method="movement", train_pruning=0.5, span_init=3.0)
    out = train_compressed(model, parent_key="albert", task="sst2", spec=spec, finetune=FINETUNE,
                           train_rows=lambda: (rows, tokenizer.pad_token_id),
                           config=CompressionTrainingConfig(max_span_tokens=32, span_ramp_tokens=4),
                           cache_dir=tmp_path)
    assert len(out.info["matrix_sparsity"]) == 6  # per shared matrix, not per layer position
    layer = out.model.backbone.encoder.albert_layer_groups[0].albert_layers[0]
    for lin in (layer.attention.query, layer.attention.key, layer.attention.value, layer.attention.dense,
                layer.ffn, layer.ffn_output):
        assert achieved_sparsity(lin.weight) == pytest.approx(0.5, abs=1 / lin.weight.numel())
    spans = out.model.spans
    assert torch.isfinite(spans).all() and (spans == spans[0]).all()  # one shared attention
    assert not torch.equal(out.model.off_ramps[0].classifier.weight, out.model.off_ramps[1].classifier.weight)
    logits = out.model(**batch_of(rows))
    assert logits.shape == (4, len(texts), 2) and torch.isfinite(logits).all()


def test_frozen_embeddings_stay_the_parents_in_both_fine_tunes(tiny_model: EarlyExitModel, tmp_path) -> None:  # noqa: ANN001
    """A multi-task study's tasks share one embedding table: neither fine-tune may move it."""
    from dse.training.prepare import _stage1, preparation_key

    rows = synthetic_rows()
    frozen = FINETUNE.model_copy(update={"freeze_embeddings": True})
    emb_before = {k: v.clone() for k, v in tiny_model.backbone.embeddings.state_dict().items()}
    enc_before = {k: v.clone() for k, v in tiny_model.backbone.encoder.state_dict().items()}
    _stage1(tiny_model, rows, frozen, pad_id=0)
    assert all(torch.equal(emb_before[k], v) for k, v in tiny_model.backbone.embeddings.state_dict().items())
    assert not all(torch.equal(enc_before[k], v) for k, v in tiny_model.backbone.encoder.state_dict().items())
    out = train_compressed(tiny_model, parent_key="frozen", task="sst2", finetune=frozen, train_rows=Loader(rows),
                           spec=TrainingSpec(pruning_method="magnitude", train_pruning=0.5), cache_dir=tmp_path)
    assert all(torch.equal(emb_before[k], v) for k, v in out.model.backbone.embeddings.state_dict().items())
    # the fine-tuned model's identity depends on the option only when it is on (older keys stay valid)
    keys = {f: preparation_key(model_source="m", task="sst2", max_seq_length=64, finetune=f,
                               train_fingerprint="a", dev_fingerprint="b") for f in (FINETUNE, frozen)}
    assert keys[FINETUNE] != keys[frozen]
