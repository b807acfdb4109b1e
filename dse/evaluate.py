"""Score one trial: GLUE dev accuracy of the compressed model plus the accelerator model.

Accuracy depends only on the compression knobs, so the dev pass keeps every off-ramp's
logits and caches them by the accuracy-relevant sub-configuration; the exit threshold and
all hardware knobs are applied afterwards to the cached logits without running the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dse.compression.apply import CompressionSpec, compress
from dse.config import StudyConfig
from dse.data import load_glue, resolve_glue_dir, task_spec
from dse.errors import DataError
from dse.metrics import main_metric
from dse.modeling.batching import EncodedSet, encode_dataset
from dse.modeling.early_exit import EarlyExitModel, entropy, simulate_early_exit
from dse.modeling.loading import load_tokenizer, resolve_model_source
from dse.prepare import dev_layer_logits, predictions, prepare_model
from hwmodels import (
    CompressionProfile,
    HardwareConfig,
    ModelShape,
    evaluate_hardware,
    exit_layers_from_entropies,
    fit_exit_predictor,
)

__all__ = ["EVAL_VERSION", "EvalContext", "TrialOutcome", "build_context", "evaluate_trial"]

EVAL_VERSION = 1
DVFS_TRAIN_ROWS = 2000  # training sentences whose off-ramp entropies fit the DVFS predictor


@dataclass(frozen=True)
class TrialOutcome:
    metrics: dict[str, float]  # every name in dse.config.METRICS
    attrs: dict[str, Any]  # JSON-serialisable details recorded on the trial
    cache_hit: bool
    seconds: float


@dataclass
class EvalContext:
    """Everything a trial evaluation needs; built once per study (and once per Ray worker)."""

    task: str
    model: EarlyExitModel
    prepared_key: str
    dev: EncodedSet
    pad_id: int
    shape: ModelShape
    baseline_points: float  # main metric of the uncompressed model on this dev set, no exit
    cache_dir: Path | None
    train_entropy: np.ndarray | None = None  # [rows, layers] off-ramp entropies on train rows
    _memory: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def dev_key(self) -> str:
        h = hashlib.sha256()
        for ids in self.dev.input_ids:
            h.update(np.asarray(ids, dtype=np.int32).tobytes() + b"|")
        h.update(np.asarray(self.dev.labels).tobytes())
        return h.hexdigest()[:16]


def build_context(config: StudyConfig, *, cache_dir: Path | None) -> EvalContext:
    """Prepare (or load) the fine-tuned model and tokenize the study's dev rows."""
    spec = task_spec(config.task)
    source = resolve_model_source(config.model.name)
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    prepared = prepare_model(
        model_source=source, task=spec.name, glue_dir=glue_dir,
        max_seq_length=config.model.max_seq_length, finetune=config.finetune,
    )
    tokenizer = load_tokenizer(source)
    dev = encode_dataset(load_glue(spec.name, "dev", glue_dir=glue_dir), tokenizer,
                         max_length=config.model.max_seq_length)
    if config.data.dev_subset is not None and config.data.dev_subset < len(dev):
        rng = np.random.default_rng(config.data.seed)
        dev = dev.subset(np.sort(rng.choice(len(dev), config.data.dev_subset, replace=False)))
    ctx = EvalContext(
        task=spec.name, model=prepared.model, prepared_key=prepared.info.key, dev=dev,
        pad_id=tokenizer.pad_token_id or 0,
        shape=ModelShape.from_hf_config(prepared.model.config, num_labels=spec.num_labels),
        baseline_points=0.0, cache_dir=cache_dir,
    )
    uncompressed = dev_layer_logits(ctx.model, dev, pad_id=ctx.pad_id)
    ctx.baseline_points = 100 * main_metric(spec.name, predictions(uncompressed[-1]), dev.labels)
    try:
        train_ds = load_glue(spec.name, "train", glue_dir=glue_dir)
    except DataError:  # e.g. QNLI/MNLI offline: DVFS trials then fail with a clear reason
        train_ds = None
    if train_ds is not None:
        ctx.train_entropy = _train_entropy(ctx, train_ds, tokenizer, config.model.max_seq_length)
    return ctx


def _train_entropy(ctx: EvalContext, train_ds, tokenizer, max_length: int) -> np.ndarray:  # noqa: ANN001
    """Off-ramp entropies of a seeded train subset (what EdgeBERT fits its exit LUT on); cached."""
    path = ctx.cache_dir / f"train-entropy-{ctx.prepared_key}.npz" if ctx.cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["entropy"]
    train = encode_dataset(train_ds, tokenizer, max_length=max_length)
    if len(train) > DVFS_TRAIN_ROWS:
        train = train.subset(np.sort(np.random.default_rng(0).choice(len(train), DVFS_TRAIN_ROWS, replace=False)))
    ent = entropy(dev_layer_logits(ctx.model, train, pad_id=ctx.pad_id)).T.numpy()
    if path is not None:
        _atomic_save(path, {"entropy": ent})
    return ent


def _cache_key(ctx: EvalContext, spec: CompressionSpec) -> str:
    blob = json.dumps(
        {"v": EVAL_VERSION, "prepared": ctx.prepared_key, "dev": ctx.dev_key, **spec.as_dict()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _atomic_save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def layer_logits(ctx: EvalContext, spec: CompressionSpec) -> tuple[torch.Tensor, bool]:
    """Per-layer dev logits ``[layers, rows, labels]`` of the compressed model; cached."""
    key = _cache_key(ctx, spec)
    if key in ctx._memory:
        return ctx._memory[key], True
    path = ctx.cache_dir / f"{key}.npz" if ctx.cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            logits = torch.from_numpy(data["logits"])
        hit = True
    else:
        compressed, _ = compress(ctx.model, spec)
        logits = dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id)
        if path is not None:
            _atomic_save(path, {"logits": logits.numpy()})
        hit = False
    ctx._memory[key] = logits
    return logits, hit


def evaluate_trial(ctx: EvalContext, knobs: dict[str, Any]) -> TrialOutcome:
    """Metrics of one design point given every knob's value (see ``StudyConfig.knob_values``)."""
    start = time.perf_counter()
    spec = CompressionSpec.from_knobs(knobs)
    logits, hit = layer_logits(ctx, spec)
    exit_logits, exit_layers = simulate_early_exit(logits, float(knobs["exit_threshold"]))
    points = 100 * main_metric(ctx.task, predictions(exit_logits), ctx.dev.labels)

    profile = CompressionProfile(
        encoder_density=1.0 - spec.encoder_pruning,
        embedding_density=1.0 - spec.embedding_pruning,
        weight_bits=spec.weight_bits,
        weight_exp_bits=spec.weight_exp_bits,
        attention_span=None if spec.attention_span >= 512 else spec.attention_span,
    )
    dvfs = bool(knobs["dvfs"])
    hardware = HardwareConfig(
        vmac_lanes=int(knobs["vmac_lanes"]), vector_size=int(knobs["vector_size"]),
        sram_kb=float(knobs["sram_kb"]), envm_cell=str(knobs["envm_cell"]),
        voltage_v=float(knobs["voltage_v"]), dvfs=dvfs,
        latency_target_ms=float(knobs["latency_target_ms"]),
    )
    predicted = None
    if dvfs:  # EdgeBERT: predict the exit layer from layer 1's entropy with a LUT fitted on train
        if ctx.train_entropy is None:
            raise InvalidDesign("DVFS needs training-set entropies, and this task has no train split")
        threshold = float(knobs["exit_threshold"])
        predictor = fit_exit_predictor(
            ctx.train_entropy[:, 0], exit_layers_from_entropies(ctx.train_entropy, threshold)
        )
        predicted = predictor.predict(entropy(logits[0]).numpy())
    hw = evaluate_hardware(
        ctx.shape, tokens=ctx.dev.lengths, exit_layers=exit_layers.numpy(),
        compression=profile, hardware=hardware, predicted_exit_layers=predicted,
    )
    if not hw.valid:
        raise InvalidDesign(hw.invalid_reason or "invalid hardware design")
    metrics = {
        "accuracy": points,
        "accuracy_drop": ctx.baseline_points - points,
        "energy_uj": float(hw.mean_energy_uj),
        "latency_ms": float(hw.mean_latency_ms),
        "p95_latency_ms": float(hw.p95_latency_ms),
        "area_mm2": float(hw.area_mm2),
        "memory_mb": float(hw.memory_bytes) / 1e6,
        "avg_exit_layer": float(exit_layers.float().mean()),
        "target_met_fraction": float(hw.fraction_target_met),
    }
    attrs = {
        "energy_breakdown_uj": {k: float(np.mean(v)) / 1e6 for k, v in hw.energy_breakdown_pj.items()},
        "weights_fit_in_sram": bool(hw.weights_fit_in_sram),
        "exit_layer_histogram": np.bincount(exit_layers.numpy(), minlength=ctx.shape.num_layers + 1)[1:].tolist(),
        "eval_key": _cache_key(ctx, spec),
    }
    return TrialOutcome(metrics, attrs, hit, time.perf_counter() - start)


class InvalidDesign(ValueError):
    """The hardware model rejects the design (e.g. an eNVM configuration a source marks invalid)."""
