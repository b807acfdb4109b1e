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
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.evaluation.context import EvalContext, load_arrays, save_arrays, trial_model
from dse.evaluation.guards import check_knobs_active, simulated_activation_bits
from dse.modeling.device import model_device
from dse.modeling.early_exit import EarlyExitModel, entropy
from dse.modeling.inference import dev_layer_logits
from dse.training.trainer import CompressionTrainingConfig, training_key

__all__ = ["DESIGN_ARRAYS", "EVAL_VERSION", "cached_arrays", "design_arrays", "dvfs_train_entropy", "eval_key",
           "has_layer_logits", "layer_logits", "partial_layer_logits"]

# 2: activations quantized to the charged width by default; entries gained the DVFS training-row
# entropies and the simulated activation width (the key gained the DVFS rows).
# 3: static activation biases; the earlier off-ramps re-centred and tempered on the compressed model
# (dse.compression.offramp_calibration), both on the DVFS rows.
EVAL_VERSION = 3
DESIGN_ARRAYS = ("logits", "train_entropy", "activation_bits")  # an entry lacking one is damaged
log = logging.getLogger(__name__)


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


def _compressed(ctx: EvalContext, spec: CompressionSpec) -> EarlyExitModel:
    model = trial_model(ctx, spec.training)
    compressed, _ = compress(model, spec, calibration=ctx.dvfs_rows, pad_id=ctx.pad_id)
    check_knobs_active(model, compressed, spec, dev=ctx.dev, pad_id=ctx.pad_id)
    return compressed


def _train_entropy(ctx: EvalContext, compressed: EarlyExitModel) -> np.ndarray:
    """Off-ramp entropies ``[DVFS rows, layers]`` of ``compressed`` on the DVFS training rows:
    from its off-ramp calibration's logits on those rows (:func:`_compressed` calibrated on them)."""
    if compressed.calibration_logits is None:  # no DVFS rows
        return np.zeros((0, ctx.shape.num_layers), dtype=np.float32)
    return entropy(compressed.calibration_logits).T.numpy()


def _partial_path(ctx: EvalContext, key: str) -> Path | None:
    return ctx.cache_dir / f"{key}-partial.npz" if ctx.cache_dir else None


def _load_partial(ctx: EvalContext, key: str) -> dict[str, np.ndarray] | None:
    """The partial entry of ``key`` (memory, else disk), or None; a damaged one is discarded."""
    name = f"{key}-partial"
    if name in ctx._memory:
        return ctx._memory[name]
    path = _partial_path(ctx, key)
    arrays = load_arrays(path, ("rows", "logits")) if path is not None else None
    if arrays is None:
        return None
    rows, logits = arrays["rows"], arrays["logits"]
    n = len(ctx.dev)
    # the entry must describe distinct dev rows of this dev set, one logits column each
    if (rows.ndim != 1 or rows.dtype.kind not in "iu" or logits.ndim != 3 or logits.shape[1] != len(rows)
            or logits.shape[0] != ctx.shape.num_layers or len(np.unique(rows)) != len(rows)
            or (len(rows) and (rows.min() < 0 or rows.max() >= n)) or not np.isfinite(logits).all()):
        log.warning("%s: damaged partial logits (inconsistent rows or shape); discarded, computing again", path)
        assert path is not None
        path.unlink(missing_ok=True)
        return None
    ctx._memory[name] = arrays
    return arrays


def _save_partial(ctx: EvalContext, key: str, arrays: dict[str, np.ndarray]) -> None:
    ctx._memory[f"{key}-partial"] = arrays
    path = _partial_path(ctx, key)
    if path is not None:
        save_arrays(path, arrays)


def _drop_partial(ctx: EvalContext, key: str) -> None:
    ctx._memory.pop(f"{key}-partial", None)
    path = _partial_path(ctx, key)
    if path is not None:
        path.unlink(missing_ok=True)


def has_layer_logits(ctx: EvalContext, spec: CompressionSpec) -> bool:
    """Whether the full per-layer dev logits of ``spec`` are cached (memory or disk)."""
    key = eval_key(ctx, spec)
    return key in ctx._memory or (ctx.cache_dir is not None and (ctx.cache_dir / f"{key}.npz").is_file())


def design_arrays(ctx: EvalContext, spec: CompressionSpec) -> tuple[dict[str, np.ndarray], bool]:
    """``spec``'s compressed model, run once and cached: ``logits`` ``[layers, dev rows, labels]``,
    ``train_entropy`` ``[DVFS rows, layers]`` (off-ramp entropies on the context's DVFS training
    rows; no rows when it has none) and ``activation_bits`` (the activation width its forward
    pass simulated: 0 = fp32). Dev rows a staged evaluation already scored (the partial entry)
    are not run again."""
    key = eval_key(ctx, spec)

    def compute() -> dict[str, np.ndarray]:
        compressed = _compressed(ctx, spec)
        partial = _load_partial(ctx, key)
        if partial is None:
            logits = dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id).numpy()
        else:
            seen = partial["rows"].astype(np.int64)
            rest = np.setdiff1d(np.arange(len(ctx.dev)), seen)
            logits = np.empty((ctx.shape.num_layers, len(ctx.dev), partial["logits"].shape[2]), dtype=np.float32)
            logits[:, seen] = partial["logits"]
            if len(rest):
                logits[:, rest] = dev_layer_logits(compressed, ctx.dev.subset(rest), pad_id=ctx.pad_id).numpy()
        return {"logits": logits, "train_entropy": _train_entropy(ctx, compressed),
                "activation_bits": np.asarray(simulated_activation_bits(compressed), dtype=np.int64)}

    arrays, hit = cached_arrays(ctx, key, compute, DESIGN_ARRAYS)
    if not hit:
        _drop_partial(ctx, key)  # the full entry holds its rows now
    return arrays, hit


def dvfs_train_entropy(ctx: EvalContext, spec: CompressionSpec) -> np.ndarray:
    """``spec``'s model's off-ramp entropies ``[DVFS rows, layers]`` on the DVFS training rows,
    without the full dev pass when it is not cached yet (a staged evaluation's DVFS designs):
    from the full entry, else computed once and kept in memory."""
    key = eval_key(ctx, spec)
    if has_layer_logits(ctx, spec):
        return design_arrays(ctx, spec)[0]["train_entropy"]
    name = f"{key}-dvfs"
    if name not in ctx._memory:
        ctx._memory[name] = {"train_entropy": _train_entropy(ctx, _compressed(ctx, spec))}
    return ctx._memory[name]["train_entropy"]


def layer_logits(ctx: EvalContext, spec: CompressionSpec) -> tuple[torch.Tensor, bool]:
    """Per-layer dev logits ``[layers, rows, labels]`` of the compressed model; cached."""
    arrays, hit = design_arrays(ctx, spec)
    return torch.from_numpy(arrays["logits"]), hit


def partial_layer_logits(ctx: EvalContext, spec: CompressionSpec, rows: np.ndarray) -> torch.Tensor:
    """Per-layer logits ``[layers, len(rows), labels]`` of dev rows ``rows`` only; cached.

    Served from the full entry when there is one; else from the partial entry, running the
    model on the rows it lacks (and extending the entry with them).
    """
    key = eval_key(ctx, spec)
    rows = np.asarray(rows, dtype=np.int64)
    if has_layer_logits(ctx, spec):
        return layer_logits(ctx, spec)[0][:, torch.as_tensor(rows)]
    partial = _load_partial(ctx, key)
    seen = partial["rows"].astype(np.int64) if partial is not None else np.zeros(0, dtype=np.int64)
    missing = np.setdiff1d(rows, seen)
    if len(missing):
        fresh = dev_layer_logits(_compressed(ctx, spec), ctx.dev.subset(missing), pad_id=ctx.pad_id).numpy()
        old = partial["logits"] if partial is not None else np.zeros((fresh.shape[0], 0, fresh.shape[2]), np.float32)
        partial = {"rows": np.concatenate([seen, missing]), "logits": np.concatenate([old, fresh], axis=1)}
        _save_partial(ctx, key, partial)
    assert partial is not None
    position = {int(r): i for i, r in enumerate(partial["rows"])}
    return torch.from_numpy(partial["logits"][:, [position[int(r)] for r in rows]])
