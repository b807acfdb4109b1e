"""The logits cache: a compression setting's per-layer dev logits, computed once per study.

Accuracy depends only on the compression knobs, so the dev pass keeps every off-ramp's logits
and caches them (in the context's memory and as ``<cache_dir>/<key>.npz``) under a key of the
accuracy-relevant sub-configuration (:func:`eval_key`); the exit threshold and every hardware
knob are applied afterwards to the cached logits without running the model. Next to the logits
the entry keeps what else only that model can tell: its off-ramp entropies on the DVFS training
rows (each design's exit predictor is fitted on its own model) and the activation width its
forward pass simulated (the guard against costing another one).
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
from dse.evaluation.guards import check_knobs_active, simulated_activation_bits
from dse.modeling.device import model_device
from dse.modeling.early_exit import entropy
from dse.modeling.inference import dev_layer_logits
from dse.training.trainer import CompressionTrainingConfig, training_key

__all__ = ["DESIGN_ARRAYS", "EVAL_VERSION", "cached_arrays", "design_arrays", "eval_key", "layer_logits"]

# 2: activations quantized to the charged width by default; entries gained the DVFS training-row
# entropies and the simulated activation width (the key gained the DVFS rows).
EVAL_VERSION = 2
DESIGN_ARRAYS = ("logits", "train_entropy", "activation_bits")  # an entry lacking one is damaged


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
        {"v": EVAL_VERSION, "prepared": ctx.prepared_key, "dev": ctx.dev_key, "dvfs": ctx.dvfs_key, **knobs},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_arrays(ctx: EvalContext, name: str, compute: Callable[[], dict[str, np.ndarray]],
                  names: tuple[str, ...] = ()) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays cached as ``name``: from this context's memory, else ``<cache_dir>/<name>.npz``,
    else ``compute()`` (then saved atomically); and whether they came from a cache. A file
    lacking one of ``names`` is damaged: discarded and computed again."""
    if name in ctx._memory:
        return ctx._memory[name], True
    path = ctx.cache_dir / f"{name}.npz" if ctx.cache_dir else None
    cached = load_arrays(path, names) if path is not None else None  # a damaged file: recomputed
    if cached is not None:
        arrays, hit = cached, True
    else:
        arrays, hit = compute(), False
        if path is not None:
            save_arrays(path, arrays)
    ctx._memory[name] = arrays
    return arrays, hit


def design_arrays(ctx: EvalContext, spec: CompressionSpec) -> tuple[dict[str, np.ndarray], bool]:
    """``spec``'s compressed model, run once and cached: ``logits`` ``[layers, dev rows, labels]``,
    ``train_entropy`` ``[DVFS rows, layers]`` (off-ramp entropies on the context's DVFS training
    rows; no rows when it has none) and ``activation_bits`` (the activation width its forward
    pass simulated: 0 = fp32)."""
    def compute() -> dict[str, np.ndarray]:
        model = trial_model(ctx, spec.training)
        compressed, _ = compress(model, spec)
        check_knobs_active(model, compressed, spec, dev=ctx.dev, pad_id=ctx.pad_id)
        logits = dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id).numpy()
        if ctx.dvfs_rows is None:
            train_entropy = np.zeros((0, logits.shape[0]), dtype=np.float32)
        else:
            train_entropy = entropy(dev_layer_logits(compressed, ctx.dvfs_rows, pad_id=ctx.pad_id)).T.numpy()
        return {"logits": logits, "train_entropy": train_entropy,
                "activation_bits": np.asarray(simulated_activation_bits(compressed), dtype=np.int64)}

    return cached_arrays(ctx, eval_key(ctx, spec), compute, DESIGN_ARRAYS)


def layer_logits(ctx: EvalContext, spec: CompressionSpec) -> tuple[torch.Tensor, bool]:
    """Per-layer dev logits ``[layers, rows, labels]`` of the compressed model; cached."""
    arrays, hit = design_arrays(ctx, spec)
    return torch.from_numpy(arrays["logits"]), hit
