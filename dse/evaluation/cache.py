"""The logits cache: a compression setting's per-layer dev logits, computed once per study.

Accuracy depends only on the compression knobs, so the dev pass keeps every off-ramp's logits
and caches them (in the context's memory and as ``<cache_dir>/<key>.npz``) under a key of the
accuracy-relevant sub-configuration (:func:`eval_key`); the exit threshold and every hardware
knob are applied afterwards to the cached logits without running the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import torch

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.evaluation.context import EvalContext, load_arrays, save_arrays, trial_model
from dse.evaluation.guards import check_knobs_active
from dse.modeling.device import model_device
from dse.modeling.inference import dev_layer_logits
from dse.training.trainer import CompressionTrainingConfig, training_key

__all__ = ["EVAL_VERSION", "cached_arrays", "eval_key", "layer_logits"]

EVAL_VERSION = 1


def eval_key(ctx: EvalContext, spec: CompressionSpec) -> str:
    """The cache key of ``spec``'s per-layer dev logits on ``ctx`` (recorded on trials as ``eval_key``).

    Not the device: dev passes run in fp32 everywhere, so CPU and GPU logits differ by float
    noise only, as they do between CPU thread counts (what a model *trained* on CUDA under bf16
    changes is in the prepared and trained keys)."""
    knobs = spec.as_dict()
    if not spec.training.is_noop:  # the trained model's own key also covers its hyper-parameters
        knobs["trained"] = training_key(ctx.prepared_key, spec.training, CompressionTrainingConfig(),
                                        model_device(ctx.model))
    blob = json.dumps(
        {"v": EVAL_VERSION, "prepared": ctx.prepared_key, "dev": ctx.dev_key, **knobs},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_arrays(ctx: EvalContext, name: str,
                   compute: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays cached as ``name``: from this context's memory, else ``<cache_dir>/<name>.npz``,
    else ``compute()`` (then saved atomically); and whether they came from a cache."""
    if name in ctx._memory:
        return ctx._memory[name], True
    path = ctx.cache_dir / f"{name}.npz" if ctx.cache_dir else None
    cached = load_arrays(path, ()) if path is not None else None  # a damaged file: recomputed
    if cached is not None:
        arrays, hit = cached, True
    else:
        arrays, hit = compute(), False
        if path is not None:
            save_arrays(path, arrays)
    ctx._memory[name] = arrays
    return arrays, hit


def layer_logits(ctx: EvalContext, spec: CompressionSpec) -> tuple[torch.Tensor, bool]:
    """Per-layer dev logits ``[layers, rows, labels]`` of the compressed model; cached."""
    def compute() -> dict[str, np.ndarray]:
        model = trial_model(ctx, spec.training)
        compressed, _ = compress(model, spec)
        check_knobs_active(model, compressed, spec, dev=ctx.dev, pad_id=ctx.pad_id)
        return {"logits": dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id).numpy()}

    arrays, hit = cached_arrays(ctx, eval_key(ctx, spec), compute)
    return torch.from_numpy(arrays["logits"]), hit
