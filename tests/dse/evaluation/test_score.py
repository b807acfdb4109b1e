"""Trial evaluation on the real MiniLM and real SST-2 dev rows (the smoke study's prepared model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.config import load_study_config
from dse.evaluation import build_context, early_exit_points, layer_logits
from dse.modeling.batching import iter_batches
from dse.modeling.device import eval_batch_size
from dse.modeling.inference import dev_layer_logits, predictions

SMOKE = Path(__file__).resolve().parents[3] / "search_spaces" / "smoke.yaml"


@pytest.fixture(scope="module")
def ctx(shared_cache_dir: Path):  # noqa: ANN201
    return build_context(load_study_config(SMOKE), cache_dir=shared_cache_dir)  # the session's smoke fine-tune


@pytest.mark.integration
@pytest.mark.parametrize("batch_size", [1, 64])
def test_cached_logit_simulation_equals_real_early_exit(ctx, batch_size: int) -> None:  # noqa: ANN001
    """The exit rule applied to every layer's logits gives the same prediction and exit layer as
    real early-exit inference that stops computing at the exit layer, batched alike: the cache's
    64-row padded batches, or one sentence at a time as deployed. Against the cache, batch 1 may
    move a few sentences: other kernels round differently by ~1e-6, and where that crosses a
    rounding step of the design's 8-bit activations the entropy moves by up to ~0.1 nats."""
    spec = CompressionSpec(encoder_pruning=0.25, weight_bits=8, weight_exp_bits=4, attention_span=16)
    cached, _ = layer_logits(ctx, spec)
    model, _ = compress(ctx.model, spec, calibration=ctx.dvfs_rows, pad_id=ctx.pad_id)  # as the trial compressed it
    assert eval_batch_size("cpu") == 64  # the cache's batches
    logits = cached if batch_size == 64 else dev_layer_logits(model, ctx.dev, pad_id=ctx.pad_id, batch_size=batch_size)
    rows = torch.arange(len(ctx.dev))
    for threshold in (0.2, 0.5):
        _, sim_layers = early_exit_points(ctx.task, logits, ctx.dev.labels, threshold)
        real_pred = np.empty(len(ctx.dev), dtype=np.int64)
        real_layers = np.empty(len(ctx.dev), dtype=np.int64)
        for batch in iter_batches(ctx.dev, batch_size=batch_size, pad_id=ctx.pad_id):
            out, layers = model.early_exit_forward(batch.input_ids, batch.attention_mask,
                                                   batch.token_type_ids, threshold=threshold)
            real_pred[batch.rows] = predictions(out)
            real_layers[batch.rows] = layers.numpy()
        assert 1.0 < sim_layers.float().mean() < ctx.shape.num_layers  # the rule really exits early
        np.testing.assert_array_equal(real_layers, sim_layers.numpy())
        np.testing.assert_array_equal(real_pred, predictions(logits[sim_layers - 1, rows]))
        _, cached_layers = early_exit_points(ctx.task, cached, ctx.dev.labels, threshold)
        assert (cached_layers != sim_layers).sum() <= len(ctx.dev) // 50
