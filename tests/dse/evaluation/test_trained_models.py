"""Training-time knobs in a trial: the fine-tuned model is trained once, cached, and really sparse."""

from __future__ import annotations

import numpy as np
import pytest

from dse.compression.apply import encoder_linears
from dse.compression.pruning import achieved_sparsity
from dse.compression.spec import CompressionSpec
from dse.config import KNOBS, FinetuneConfig
from dse.evaluation import EvalContext, TrainingSource, evaluate_trial
from dse.evaluation.context import trained_model
from dse.evaluation.score import compression_profile
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from hwmodels import ModelShape

FINETUNE = FinetuneConfig(train_subset=None, batch_size=8, offramp_train_subset=None, offramp_epochs=2)


def rows(n: int, seed: int) -> EncodedSet:
    rng = np.random.default_rng(seed)
    ids = [[2, *rng.integers(5, 100, rng.integers(3, 14)).tolist(), 3] for _ in range(n)]
    return EncodedSet(ids, [[0] * len(r) for r in ids], np.array([int(r[1] > 50) for r in ids]))


def context(model: EarlyExitModel, tmp_path) -> EvalContext:  # noqa: ANN001
    return EvalContext(task="sst2", model=model, prepared_key="tiny", dev=rows(12, 1), pad_id=0,
                       shape=ModelShape.from_hf_config(model.config, num_labels=2), baseline_points=50.0,
                       cache_dir=tmp_path / "logits",
                       training_source=TrainingSource(FINETUNE, rows=rows(40, 0), cache_dir=tmp_path / "cache"))


def knobs(**values) -> dict:  # noqa: ANN003
    return {**{name: knob.default for name, knob in KNOBS.items()}, **values}


def test_defaults_use_the_prepared_model_and_old_cache_keys(tiny_model, tmp_path) -> None:  # noqa: ANN001
    ctx = context(tiny_model, tmp_path)
    outcome = evaluate_trial(ctx, knobs(weight_bits=8))
    assert ctx._trained == {} and not (tmp_path / "cache").exists()
    assert "training" not in CompressionSpec.from_knobs(knobs()).as_dict()
    assert "trained_key" not in outcome.attrs


def test_training_knobs_train_once_and_hit_the_cache(tiny_model, tmp_path) -> None:  # noqa: ANN001
    trial = knobs(pruning_method="magnitude", train_pruning=0.5, span_init=4.0, distillation=True)
    ctx = context(tiny_model, tmp_path)
    first = evaluate_trial(ctx, trial)
    assert not first.cache_hit
    trained = trained_model(ctx, CompressionSpec.from_knobs(trial).training)
    assert not trained.cache_hit and first.attrs["trained_key"] == trained.info["key"]
    for name, lin in encoder_linears(trained.model).items():  # target sparsity in every matrix
        n = lin.weight.numel()
        assert achieved_sparsity(lin.weight) == pytest.approx(1 - round(0.5 * n) / n), name
    # a post-training knob or a cheap knob reuses the trained model
    second = evaluate_trial(ctx, {**trial, "weight_bits": 6, "exit_threshold": 0.3})
    assert second.attrs["trained_key"] == first.attrs["trained_key"] and len(ctx._trained) == 1
    # a new process (fresh context) loads the trained model from disk, and its logits from the cache
    fresh = context(tiny_model, tmp_path)
    again = evaluate_trial(fresh, trial)
    assert again.cache_hit and again.metrics == first.metrics
    assert trained_model(fresh, CompressionSpec.from_knobs(trial).training).cache_hit
    profile = compression_profile(CompressionSpec.from_knobs({**trial, "encoder_pruning": 0.2}), fresh)
    assert profile.encoder_density == pytest.approx(0.5)  # max(0.2 post-training, 0.5 trained)
    assert profile.attention_span is not None  # learned spans reach the hardware model
