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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from dse.compression.apply import CompressionSpec, compress, embedding_tables, weight_format
from dse.compression.envm_faults import bits_per_cell, cell_error_prob, inject_table_faults
from dse.compression.span import span_for_hardware
from dse.config import FaultsConfig, FinetuneConfig, StudyConfig, TaskSettings
from dse.data import load_task_split, resolve_glue_dir, task_spec
from dse.errors import DataError, DSEError
from dse.guards import check_knobs_active
from dse.metrics import main_metric
from dse.modeling.batching import EncodedSet, encode_dataset
from dse.modeling.early_exit import EarlyExitModel, entropy, simulate_early_exit
from dse.modeling.loading import load_tokenizer, resolve_model_source
from dse.prepare import PreparedModel, dev_layer_logits, load_train_rows, predictions, prepare_model
from dse.training.spec import TrainingSpec
from dse.training.trainer import CompressionTrainingConfig, TrainedModel, train_compressed, training_key
from hwmodels import (
    CompressionProfile,
    HardwareConfig,
    HardwareResult,
    ModelShape,
    evaluate_hardware,
    exit_layers_from_entropies,
    fit_exit_predictor,
)

__all__ = ["EVAL_VERSION", "FAULTS_VERSION", "DesignScore", "EvalContext", "FaultOutcome", "SentenceResults",
           "TrialOutcome", "build_context", "build_task_context", "early_exit_points", "evaluate_trial",
           "fault_outcome", "faulty_layer_logits", "load_dev_set", "prepare_for_study", "score_design",
           "sentence_results",
           "TrainingSource", "check_task_data", "study_trial_model", "trained_model", "trial_model"]

EVAL_VERSION = 1
FAULTS_VERSION = 1  # bump when the fault model (dse.compression.envm_faults) changes
DVFS_TRAIN_ROWS = 2000  # training sentences whose off-ramp entropies fit the DVFS predictor
MAX_TRAINED_IN_MEMORY = 2  # compression-trained models a context holds besides the prepared one


@dataclass(frozen=True)
class SentenceResults:
    """Per-dev-sentence figures of one design (not recorded on trials: re-derived on demand)."""

    exit_layers: np.ndarray  # encoder layers executed, 1..num_layers
    latency_ms: np.ndarray
    energy_uj: np.ndarray
    tokens: np.ndarray


@dataclass(frozen=True)
class TrialOutcome:
    metrics: dict[str, float]  # every name in dse.config.METRICS
    attrs: dict[str, Any]  # JSON-serialisable details recorded on the trial
    cache_hit: bool
    seconds: float
    sentences: SentenceResults | None = None


@dataclass(frozen=True)
class FaultOutcome:
    """Accuracy of one design with eNVM faults in its stored embedding tables, per repeat."""

    cell: str  # the eNVM cell type the embedding tables are stored in
    points: np.ndarray  # the task's main metric (points) of each faulty dev pass
    faulty_cells: np.ndarray  # cells that took an adjacent-level error, per pass
    error_prob: float  # per cell, after error_rate_scale
    cache_hit: bool

    @property
    def mean_points(self) -> float:
        # equal repeats (an error-free cell) give exactly the clean accuracy, not a rounded mean
        return float(self.points[0]) if np.all(self.points == self.points[0]) else float(self.points.mean())

    def details(self) -> dict[str, Any]:
        return {"cell": self.cell, "error_prob": self.error_prob, "repeats": len(self.points),
                "accuracy_mean": self.mean_points, "accuracy_std": float(self.points.std()),
                "accuracy_per_repeat": [float(p) for p in self.points],
                "faulty_cells_mean": float(self.faulty_cells.mean()),
                "faulty_cells": [int(n) for n in self.faulty_cells], "cache_hit": self.cache_hit}


@dataclass(frozen=True)
class TrainingSource:
    """What a compression-aware fine-tune needs besides the prepared model: its training rows."""

    finetune: FinetuneConfig
    model_source: str | None = None  # with glue_dir: tokenize the study's train split on demand
    glue_dir: Path | None = None
    rows: EncodedSet | None = None  # or rows already tokenized (then pad_id is theirs)
    pad_id: int = 0
    cache_dir: Path | None = None  # trained checkpoints; None = dse.prepare.cache_root()
    train_from_dev: float | None = None  # the task's train rows are part of its dev set
    split_seed: int = 0

    @classmethod
    def for_task(cls, config: StudyConfig, task: TaskSettings) -> "TrainingSource":
        """A study task's training rows: tokenized from its train split (or dev part) on demand."""
        return cls(task.finetune, resolve_model_source(config.model.name), resolve_glue_dir(config.data.glue_dir),
                   train_from_dev=task.train_from_dev, split_seed=config.data.seed)

    def load_rows(self, task: str) -> tuple[EncodedSet, int]:
        if self.rows is not None:
            return self.rows, self.pad_id
        if self.model_source is None:
            raise DSEError("training-time compression needs training rows or a model source")
        return load_train_rows(model_source=self.model_source, task=task, glue_dir=self.glue_dir,
                               finetune=self.finetune, train_from_dev=self.train_from_dev,
                               split_seed=self.split_seed)


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
    training_source: TrainingSource | None = None  # where compression-aware fine-tunes get their rows
    faults: FaultsConfig = field(default_factory=FaultsConfig)  # eNVM fault injection (off by default)
    _memory: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # cached arrays by name
    _trained: dict[str, TrainedModel] = field(default_factory=dict)

    @property
    def dev_key(self) -> str:
        h = hashlib.sha256()
        for ids in self.dev.input_ids:
            h.update(np.asarray(ids, dtype=np.int32).tobytes() + b"|")
        h.update(np.asarray(self.dev.labels).tobytes())
        return h.hexdigest()[:16]


def check_task_data(config: StudyConfig) -> None:
    """Load every task's fine-tuning and dev rows once, so that a task whose data is missing
    stops a study before any other task is fine-tuned (one ``DataError`` line)."""
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    for task in config.task_settings():
        for split in ("train", "dev"):
            try:
                load_task_split(task.name, split, glue_dir=glue_dir, train_from_dev=task.train_from_dev,
                                seed=config.data.seed)
            except DataError as exc:
                hint = ("; in a multi-task study, train_from_dev on the task fine-tunes it on part of its dev rows"
                        if split == "train" and "available splits: dev" in str(exc) else "")
                raise DataError(f"{exc}{hint}") from None


def prepare_for_study(config: StudyConfig, task: TaskSettings | None = None) -> PreparedModel:
    """A task's fine-tuned (uncompressed) early-exit model: from the cache, else trained
    (``task``: one of ``config.task_settings()``; None: the single task)."""
    task = task or config.task_settings()[0]
    return prepare_model(
        model_source=resolve_model_source(config.model.name), task=task.name,
        glue_dir=resolve_glue_dir(config.data.glue_dir),
        max_seq_length=config.model.max_seq_length, finetune=task.finetune,
        train_from_dev=task.train_from_dev, split_seed=config.data.seed,
    )


def load_dev_set(task: str, tokenizer: PreTrainedTokenizerBase, *, glue_dir: Path | None,
                 max_seq_length: int, dev_subset: int | None, seed: int,
                 train_from_dev: float | None = None) -> EncodedSet:
    """The dev rows a study scores on, tokenized: all of them, or a seeded subset (with
    ``train_from_dev``: of the dev rows not fine-tuned on)."""
    rows = load_task_split(task, "dev", glue_dir=glue_dir, train_from_dev=train_from_dev, seed=seed)
    dev = encode_dataset(rows, tokenizer, max_length=max_seq_length)
    if dev_subset is not None and dev_subset < len(dev):
        rng = np.random.default_rng(seed)
        dev = dev.subset(np.sort(rng.choice(len(dev), dev_subset, replace=False)))
    return dev


def early_exit_points(task: str, layer_logits: torch.Tensor, labels: np.ndarray,
                      threshold: float | torch.Tensor) -> tuple[float, torch.Tensor]:
    """The task's main metric (points) under the entropy exit rule, and every row's exit layer.

    ``threshold`` is one entropy (nats) for every layer or one per layer.
    """
    exit_logits, exit_layers = simulate_early_exit(layer_logits, threshold)
    return 100 * main_metric(task, predictions(exit_logits), labels), exit_layers


def build_context(config: StudyConfig, *, cache_dir: Path | None,
                  baseline_points: float | dict[str, float] | None = None) -> Any:
    """The study's evaluation context: an :class:`EvalContext`, or for a multi-task study a
    ``dse.multitask.MultiTaskContext`` holding one per task.

    ``baseline_points``: the uncompressed model's dev metric when already known (a study
    records it; per task for a multi-task study), which saves the baseline dev pass.
    """
    if config.is_multitask:
        from dse.multitask import build_multitask_context

        by_task = baseline_points if isinstance(baseline_points, dict) else None
        return build_multitask_context(config, cache_dir=cache_dir, baseline_points=by_task)
    return build_task_context(config, config.task_settings()[0], cache_dir=cache_dir,
                              baseline_points=None if isinstance(baseline_points, dict) else baseline_points)


def build_task_context(config: StudyConfig, task: TaskSettings, *, cache_dir: Path | None,
                       baseline_points: float | None = None) -> EvalContext:
    """Prepare (or load) one task's fine-tuned model and tokenize its dev rows."""
    spec = task_spec(task.name)
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    prepared = prepare_for_study(config, task)
    tokenizer = load_tokenizer(resolve_model_source(config.model.name))
    dev = load_dev_set(spec.name, tokenizer, glue_dir=glue_dir, max_seq_length=config.model.max_seq_length,
                       dev_subset=task.dev_subset, seed=config.data.seed, train_from_dev=task.train_from_dev)
    ctx = EvalContext(
        task=spec.name, model=prepared.model, prepared_key=prepared.info.key, dev=dev,
        pad_id=tokenizer.pad_token_id or 0,
        shape=ModelShape.from_hf_config(prepared.model.config, num_labels=spec.num_labels),
        baseline_points=0.0, cache_dir=cache_dir,
        training_source=TrainingSource.for_task(config, task),
        faults=config.faults,
    )
    if baseline_points is not None:
        ctx.baseline_points = float(baseline_points)
    else:
        uncompressed = dev_layer_logits(ctx.model, dev, pad_id=ctx.pad_id)
        ctx.baseline_points = 100 * main_metric(spec.name, predictions(uncompressed[-1]), dev.labels)
    try:
        train_ds = load_task_split(spec.name, "train", glue_dir=glue_dir, train_from_dev=task.train_from_dev,
                                   seed=config.data.seed)
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
    knobs = spec.as_dict()
    if not spec.training.is_noop:  # the trained model's own key also covers its hyper-parameters
        knobs["trained"] = training_key(ctx.prepared_key, spec.training, CompressionTrainingConfig())
    blob = json.dumps(
        {"v": EVAL_VERSION, "prepared": ctx.prepared_key, "dev": ctx.dev_key, **knobs},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def trial_model(ctx: EvalContext, training: TrainingSpec) -> EarlyExitModel:
    """The model a trial's post-training compression starts from: the prepared one, or the one
    fine-tuned under the trial's training-time knobs (trained once, cached on disk and here)."""
    if training.is_noop:
        return ctx.model
    return trained_model(ctx, training).model


def study_trial_model(config: StudyConfig, prepared: PreparedModel, training: TrainingSpec,
                      task: TaskSettings | None = None) -> EarlyExitModel:
    """:func:`trial_model` outside a study's evaluation context (exports, re-evaluation)."""
    if training.is_noop:
        return prepared.model
    task = task or config.task_settings()[0]
    source = TrainingSource.for_task(config, task)
    return train_compressed(prepared.model, parent_key=prepared.info.key, task=task.name, spec=training,
                            finetune=task.finetune, train_rows=lambda: source.load_rows(task.name)).model


def trained_model(ctx: EvalContext, training: TrainingSpec) -> TrainedModel:
    key = training_key(ctx.prepared_key, training, CompressionTrainingConfig())
    if key not in ctx._trained:
        source = ctx.training_source
        if source is None:
            raise DSEError("training-time compression knobs need the study's training data")
        while len(ctx._trained) >= MAX_TRAINED_IN_MEMORY:  # the disk cache keeps the others
            ctx._trained.pop(next(iter(ctx._trained)))
        ctx._trained[key] = train_compressed(
            ctx.model, parent_key=ctx.prepared_key, task=ctx.task, spec=training,
            finetune=source.finetune, train_rows=lambda: source.load_rows(ctx.task),
            cache_dir=source.cache_dir,
        )
    return ctx._trained[key]


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


def _cached_arrays(ctx: EvalContext, name: str,
                   compute: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays cached as ``name``: from this context's memory, else ``<cache_dir>/<name>.npz``,
    else ``compute()`` (then saved atomically); and whether they came from a cache."""
    if name in ctx._memory:
        return ctx._memory[name], True
    path = ctx.cache_dir / f"{name}.npz" if ctx.cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            arrays, hit = {k: data[k] for k in data.files}, True
    else:
        arrays, hit = compute(), False
        if path is not None:
            _atomic_save(path, arrays)
    ctx._memory[name] = arrays
    return arrays, hit


def layer_logits(ctx: EvalContext, spec: CompressionSpec) -> tuple[torch.Tensor, bool]:
    """Per-layer dev logits ``[layers, rows, labels]`` of the compressed model; cached."""
    def compute() -> dict[str, np.ndarray]:
        model = trial_model(ctx, spec.training)
        compressed, _ = compress(model, spec)
        check_knobs_active(model, compressed, spec, dev=ctx.dev, pad_id=ctx.pad_id)
        return {"logits": dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id).numpy()}

    arrays, hit = _cached_arrays(ctx, _cache_key(ctx, spec), compute)
    return torch.from_numpy(arrays["logits"]), hit


def _fault_cache_key(ctx: EvalContext, spec: CompressionSpec, cell: str, error_prob: float) -> str:
    f = ctx.faults
    blob = json.dumps({"v": FAULTS_VERSION, "eval": _cache_key(ctx, spec), "cell": cell,
                       "bits_per_cell": bits_per_cell(cell), "error_prob": error_prob, "repeats": f.repeats,
                       "seed": f.seed, "scale": f.error_rate_scale}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def faulty_layer_logits(ctx: EvalContext, spec: CompressionSpec, cell: str,
                        error_prob: float) -> tuple[torch.Tensor, np.ndarray, bool]:
    """Per-layer dev logits ``[repeats, layers, rows, labels]`` of the compressed model with its
    embedding tables stored in ``cell`` and corrupted (seeds ``[faults.seed, repeat]``), the
    faulty cells of each repeat, and whether they came from the cache (memory or disk)."""
    def compute() -> dict[str, np.ndarray]:
        compressed, _ = compress(trial_model(ctx, spec.training), spec)
        tables = embedding_tables(compressed)
        clean = {n: t.weight.detach().clone() for n, t in tables.items()}
        fmt = weight_format(spec)
        runs, counts = [], []
        for r in range(ctx.faults.repeats):
            with torch.no_grad():
                for n, t in tables.items():
                    t.weight.copy_(clean[n])
            counts.append(inject_table_faults(tables, fmt, cell=cell, error_prob=error_prob,
                                              seed=[ctx.faults.seed, r]))
            runs.append(dev_layer_logits(compressed, ctx.dev, pad_id=ctx.pad_id))
        return {"logits": torch.stack(runs).numpy(), "faulty_cells": np.asarray(counts, dtype=np.int64)}

    arrays, hit = _cached_arrays(ctx, f"faults-{_fault_cache_key(ctx, spec, cell, error_prob)}", compute)
    return torch.from_numpy(arrays["logits"]), arrays["faulty_cells"], hit


def fault_outcome(ctx: EvalContext, spec: CompressionSpec, cell: str, threshold: float,
                  clean_points: float) -> FaultOutcome | None:
    """Accuracy under eNVM faults of one design (None when the study has faults off).

    An error-free cell (probability 0 after scaling) needs no model run: every repeat scores
    ``clean_points``.
    """
    f = ctx.faults
    if not f.enabled:
        return None
    prob = cell_error_prob(cell, scale=f.error_rate_scale, overrides=f.cell_error_prob)
    if prob == 0.0:
        return FaultOutcome(cell, np.full(f.repeats, clean_points), np.zeros(f.repeats, dtype=np.int64), 0.0, True)
    logits, cells, hit = faulty_layer_logits(ctx, spec, cell, prob)
    points = np.array([early_exit_points(ctx.task, run, ctx.dev.labels, threshold)[0] for run in logits])
    return FaultOutcome(cell, points, cells, prob, hit)


def compression_profile(spec: CompressionSpec, ctx: EvalContext | None = None) -> CompressionProfile:
    """What the hardware model needs to know of a trial's compression.

    With training-time compression (``ctx`` needed): post-training magnitude pruning of an
    already sparse matrix keeps its zeros, so the sparsity is the larger of the two targets;
    learned spans enter as their mean over heads and layers, shortened by the span knob.
    """
    span = None if spec.attention_span >= 512 else spec.attention_span
    t = spec.training
    if not t.is_noop:
        if ctx is None:
            raise ValueError("a training-time compression profile needs the evaluation context")
        learned = trained_model(ctx, t).info.get("spans")
        if learned is not None:
            learned_span = span_for_hardware(torch.tensor(learned))
            if learned_span is not None:
                span = learned_span if span is None else min(span, learned_span)
    return CompressionProfile(
        encoder_density=1.0 - max(spec.encoder_pruning, t.train_pruning),
        embedding_density=1.0 - max(spec.embedding_pruning, t.train_embedding_pruning),
        weight_bits=spec.weight_bits,
        weight_exp_bits=spec.weight_exp_bits,
        # unquantized activations: the datapath default (8 bits, EdgeBERT's AF8 activations)
        **({"activation_bits": spec.activation_bits} if spec.activation_bits else {}),
        attention_span=span,
    )


def hardware_config(knobs: dict[str, Any]) -> HardwareConfig:
    return HardwareConfig(
        vmac_lanes=int(knobs["vmac_lanes"]), vector_size=int(knobs["vector_size"]),
        sram_kb=float(knobs["sram_kb"]), envm_cell=str(knobs["envm_cell"]),
        voltage_v=float(knobs["voltage_v"]), dvfs=bool(knobs["dvfs"]),
        latency_target_ms=float(knobs["latency_target_ms"]),
    )


def predicted_exit_layers(ctx: EvalContext, logits: torch.Tensor, threshold: float) -> np.ndarray:
    """EdgeBERT's DVFS input: each sentence's exit layer predicted from layer 1's entropy by a
    lookup table fitted on the training set's off-ramp entropies."""
    if ctx.train_entropy is None:
        raise InvalidDesign("DVFS needs training-set entropies, and this task has no train split")
    predictor = fit_exit_predictor(
        ctx.train_entropy[:, 0], exit_layers_from_entropies(ctx.train_entropy, threshold)
    )
    return predictor.predict(entropy(logits[0]).numpy())


def design_metrics(ctx: EvalContext, points: float, exit_layers: torch.Tensor, hw: HardwareResult,
                   faults: FaultOutcome | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """A design's metrics (every name in dse.config.METRICS) and recorded details.

    ``accuracy_under_faults`` is the mean over ``faults``' repeats, else ``points`` (faults off:
    objectives and constraints on it stay defined).
    """
    metrics = {
        "accuracy": points,
        "accuracy_drop": ctx.baseline_points - points,
        "worst_accuracy_drop": ctx.baseline_points - points,
        "energy_uj": float(hw.mean_energy_uj),
        "latency_ms": float(hw.mean_latency_ms),
        "p95_latency_ms": float(hw.p95_latency_ms),
        "area_mm2": float(hw.area_mm2),
        "memory_mb": float(hw.memory_bytes) / 1e6,
        "avg_exit_layer": float(exit_layers.float().mean()),
        "target_met_fraction": float(hw.fraction_target_met),
        "accuracy_under_faults": faults.mean_points if faults is not None else points,
    }
    attrs = {
        "energy_breakdown_uj": {k: float(np.mean(v)) / 1e6 for k, v in hw.energy_breakdown_pj.items()},
        "weights_fit_in_sram": bool(hw.weights_fit_in_sram),
        "exit_layer_histogram": np.bincount(exit_layers.numpy(), minlength=ctx.shape.num_layers + 1)[1:].tolist(),
    }
    if faults is not None:
        attrs["faults"] = faults.details()
    return metrics, attrs


@dataclass(frozen=True)
class DesignScore:
    """One design scored on one task's dev rows: accuracy, exits, hardware, faults."""

    spec: CompressionSpec
    points: float  # the task's main metric (points) under early exit
    exit_layers: torch.Tensor
    hw: HardwareResult
    faults: FaultOutcome | None
    cache_hit: bool

    def sentences(self, ctx: EvalContext) -> SentenceResults:
        return SentenceResults(exit_layers=self.exit_layers.numpy(), latency_ms=np.asarray(self.hw.latency_ns) * 1e-6,
                               energy_uj=np.asarray(self.hw.energy_pj) * 1e-6, tokens=np.asarray(ctx.dev.lengths))

    def attrs(self, ctx: EvalContext) -> dict[str, Any]:
        """What identifies the design's model: its logits cache key and any trained checkpoint."""
        out: dict[str, Any] = {"eval_key": _cache_key(ctx, self.spec)}
        if not self.spec.training.is_noop:
            trained = trained_model(ctx, self.spec.training)
            out["trained_key"] = trained.info["key"]
            out["trained_matrix_sparsity"] = trained.info["matrix_sparsity"]
        return out


def score_design(ctx: EvalContext, knobs: dict[str, Any]) -> DesignScore:
    """Score one design on ``ctx``'s task (``knobs``: every knob's value, as that task sees them)."""
    spec = CompressionSpec.from_knobs(knobs)
    logits, hit = layer_logits(ctx, spec)
    points, exit_layers = early_exit_points(ctx.task, logits, ctx.dev.labels, float(knobs["exit_threshold"]))

    profile = compression_profile(spec, ctx)
    hardware = hardware_config(knobs)
    predicted = predicted_exit_layers(ctx, logits, float(knobs["exit_threshold"])) if hardware.dvfs else None
    hw = evaluate_hardware(
        ctx.shape, tokens=ctx.dev.lengths, exit_layers=exit_layers.numpy(),
        compression=profile, hardware=hardware, predicted_exit_layers=predicted,
    )
    if not hw.valid:
        raise InvalidDesign(hw.invalid_reason or "invalid hardware design")
    faults = fault_outcome(ctx, spec, str(knobs["envm_cell"]), float(knobs["exit_threshold"]), points)
    return DesignScore(spec, points, exit_layers, hw, faults, hit)


def evaluate_trial(ctx: Any, knobs: dict[str, Any]) -> TrialOutcome:
    """Metrics of one design point given every knob's value (see ``StudyConfig.knob_values``);
    ``ctx`` is an :class:`EvalContext` or a multi-task study's ``MultiTaskContext``."""
    if not isinstance(ctx, EvalContext):
        from dse.multitask import evaluate_multitask

        return evaluate_multitask(ctx, knobs)
    start = time.perf_counter()
    score = score_design(ctx, knobs)
    metrics, attrs = design_metrics(ctx, score.points, score.exit_layers, score.hw, score.faults)
    attrs.update(score.attrs(ctx))
    return TrialOutcome(metrics, attrs, score.cache_hit, time.perf_counter() - start, score.sentences(ctx))


def sentence_results(ctx: Any, knobs: dict[str, Any]) -> SentenceResults:
    """Every dev sentence's exit layer, latency and energy for one design.

    Uses the per-layer logits cache, so a design a study already scored needs no model run.
    """
    outcome = evaluate_trial(ctx, knobs)
    assert outcome.sentences is not None  # evaluate_trial always fills it
    return outcome.sentences


class InvalidDesign(ValueError):
    """The hardware model rejects the design (e.g. an eNVM configuration a source marks invalid)."""
