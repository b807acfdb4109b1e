"""A design's compressed model as a Hugging Face ``save_pretrained`` folder, and its loader.

Folder layout (``model/`` inside a design export)::

    config.json            the backbone's HF config plus an ``edgebert`` section (see ModelSettings):
                           task and labels, max_seq_length, the entropy exit rule and thresholds,
                           attention spans, compression knobs, the dev rows the trial was scored on
    model.safetensors      backbone weights exactly as the trial evaluated them: pruning masks
                           baked in (zeros), AdaptivFloat-rounded values
    off_ramps.safetensors  the off-ramp after every layer (input standardisation, pooler if any,
                           classifier), rounded likewise; the section's offramp_pooling and
                           offramp_head say what each reads ([CLS] or token mean) and computes
    tokenizer files        the study model's tokenizer

``transformers.AutoModel.from_pretrained(folder)`` loads the (compressed) backbone with plain
transformers; :func:`load_exported_model` gives back our early-exit model with its spans and
thresholds, and :func:`score_exported_model` re-scores it on the task's dev rows with the same
rows, batching and exit rule as the trial evaluation, so it reproduces the trial's accuracy.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors.torch
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from dse.compression.apply import attach_activation_quantization
from dse.compression.spec import CompressionSpec
from dse.config import KNOBS, task_spec
from dse.data import resolve_glue_dir
from dse.errors import DSEError
from dse.evaluation import early_exit_points, load_dev_set
from dse.io import atomic_folder
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel, load_off_ramps, simulate_early_exit
from dse.modeling.inference import dev_layer_logits, predictions
from dse.modeling.loading import load_backbone, load_tokenizer

__all__ = [
    "CONFIG_KEY",
    "MODEL_TYPE",
    "MODEL_VERSION",
    "OFF_RAMPS_FILE",
    "DevRows",
    "ExportScore",
    "ExportedModel",
    "ModelSettings",
    "exported_dev_rows",
    "load_exported_model",
    "save_exported_model",
    "score_exported_model",
]

CONFIG_KEY = "edgebert"  # the section of config.json holding our settings
MODEL_TYPE = "edgebert-dse.model"
MODEL_VERSION = 1
OFF_RAMPS_FILE = "off_ramps.safetensors"
EXIT_RULE = "entropy_below_threshold"


class DevRows(BaseModel):
    """Which dev rows the trial was scored on (same meaning as the study's ``data`` section)."""

    model_config = ConfigDict(extra="forbid")

    glue_dir: str | None = None  # as configured; null = $DSE_GLUE_DIR, else the hub
    dev_subset: int | None = None  # a seeded subset of this many rows; null = all
    seed: int = 0
    train_from_dev: float | None = None  # the task was fine-tuned on this part of dev (see dse.data.load_task_split)


class ModelSettings(BaseModel):
    """The ``edgebert`` section of an exported model's config.json."""

    model_config = ConfigDict(extra="forbid")

    task: str
    num_labels: int
    label_names: list[str]
    max_seq_length: int
    # A row exits after the first layer whose off-ramp softmax entropy (nats) is strictly below
    # that layer's threshold; the last layer always exits.
    exit_rule: Literal["entropy_below_threshold"] = EXIT_RULE
    entropy_thresholds_nats: list[float]  # one per layer
    # What every off-ramp reads (the [CLS] vector or the mean of the real tokens' vectors) and
    # whether it has a pooler (Linear + tanh) before its classifier; older exports: cls, pooler.
    offramp_pooling: Literal["cls", "mean"] = "cls"
    offramp_head: Literal["pooler", "linear"] = "pooler"
    attention_spans_tokens: list[list[float | None]]  # [layer][head]; null = unlimited
    compression: dict[str, Any]  # the accuracy-relevant knobs of the design
    achieved: dict[str, Any] = {}  # e.g. encoder/embedding sparsity after pruning
    dev_rows: DevRows
    design: dict[str, Any] = {}  # provenance: study, trial, config hash, prepared key, metrics

    def to_json(self) -> dict[str, Any]:
        """The section as stored: a ``_type``/``_version`` envelope around the fields."""
        return {"_type": MODEL_TYPE, "_version": MODEL_VERSION, **self.model_dump(mode="json")}


@dataclass(frozen=True)
class ExportScore:
    """An exported model's dev score under its exit rule."""

    accuracy: float  # points (0-100) of the task's main metric
    predictions: np.ndarray  # class id (or regression value) per dev row, dataset order
    exit_layers: np.ndarray  # 1-based exit layer per dev row

    @property
    def avg_exit_layer(self) -> float:
        return float(self.exit_layers.mean())


@dataclass(frozen=True)
class ExportedModel:
    """An exported model loaded back: early-exit model, tokenizer and its settings."""

    model: EarlyExitModel
    tokenizer: PreTrainedTokenizerBase
    settings: ModelSettings
    path: Path

    @property
    def thresholds(self) -> torch.Tensor:
        """Per-layer entropy exit thresholds (nats)."""
        return torch.tensor(self.settings.entropy_thresholds_nats, dtype=torch.float32)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def layer_logits(self, rows: EncodedSet) -> torch.Tensor:
        """Every off-ramp's logits ``[layers, rows, labels]``, batched as the trial evaluation."""
        return dev_layer_logits(self.model, rows, pad_id=self.pad_id)

    def score(self, rows: EncodedSet) -> ExportScore:
        """Main metric, predictions and exit layers on tokenized labelled rows."""
        logits = self.layer_logits(rows)
        points, exits = early_exit_points(self.settings.task, logits, rows.labels, self.thresholds)
        exit_logits, _ = simulate_early_exit(logits, self.thresholds)
        return ExportScore(points, predictions(exit_logits), exits.numpy())

    @torch.no_grad()
    def predict(self, text_a: list[str], text_b: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and exit layers for raw text, with real early exit (rows stop at their exit)."""
        enc = self.tokenizer(text_a, text_b, truncation=True, max_length=self.settings.max_seq_length,
                             padding=True, return_tensors="pt")
        logits, exits = self.model.early_exit_forward(
            enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), threshold=self.thresholds
        )
        return predictions(logits), exits.numpy()


def _spans_json(spans: torch.Tensor) -> list[list[float | None]]:
    return [[None if math.isinf(v) else float(v) for v in row] for row in spans.tolist()]


def save_exported_model(model: EarlyExitModel, tokenizer: PreTrainedTokenizerBase, folder: Path, *,
                        task: str, max_seq_length: int, exit_threshold: float, dev_rows: DevRows,
                        compression: dict[str, Any], achieved: dict[str, Any] | None = None,
                        design: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (already compressed) as a ``save_pretrained`` folder, atomically.

    The model's attention spans and the exit threshold go into config.json; ``folder`` is
    replaced as a whole, so a reader never sees a half-written model.
    """
    spec = task_spec(task)
    if len(model.adaptive_spans):  # their soft state is not saved; only baked spans are
        raise ValueError("bake the adaptive spans (model.bake_adaptive_spans()) before exporting")
    if model.num_labels != spec.num_labels:
        raise ValueError(f"model has {model.num_labels} labels but task {spec.name} has {spec.num_labels}")
    settings = ModelSettings(
        task=spec.name, num_labels=model.num_labels, label_names=list(spec.label_names),
        max_seq_length=max_seq_length, entropy_thresholds_nats=[float(exit_threshold)] * model.num_layers,
        offramp_pooling=model.pooling, offramp_head=model.head,
        attention_spans_tokens=_spans_json(model.spans), compression=dict(compression),
        achieved=dict(achieved or {}), dev_rows=dev_rows, design=dict(design or {}),
    )
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DSEError(f"{folder} exists and is not a folder")
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the CLI's output
    with atomic_folder(folder) as tmp:  # replaced as a whole: a reader never sees half a model
        model.backbone.save_pretrained(tmp)
        safetensors.torch.save_file({k: v.contiguous() for k, v in model.off_ramps.state_dict().items()},
                                    str(tmp / OFF_RAMPS_FILE))
        tokenizer.save_pretrained(tmp)
        config = json.loads((tmp / "config.json").read_text())
        # Task and labels in the standard HF fields too, so plain transformers users see them.
        config["finetuning_task"] = spec.name
        if spec.label_names:
            config["id2label"] = {str(i): name for i, name in enumerate(spec.label_names)}
            config["label2id"] = {name: i for i, name in enumerate(spec.label_names)}
        config[CONFIG_KEY] = settings.to_json()
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        _normal_permissions(tmp)
    return folder


def _normal_permissions(folder: Path) -> None:
    """HF's atomic writes make private files; give the export the umask's modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def _read_settings(path: Path) -> ModelSettings:
    config_file = path / "config.json"
    if not path.is_dir():
        raise DSEError(f"{path}: no such exported model folder")
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise DSEError(f"{path}: not an exported model folder (no config.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DSEError(f"{config_file}: not readable JSON ({exc.__class__.__name__})") from None
    section = config.get(CONFIG_KEY) if isinstance(config, dict) else None
    if not isinstance(section, dict) or section.get("_type") != MODEL_TYPE:
        raise DSEError(f"{path}: not an {MODEL_TYPE} export (no '{CONFIG_KEY}' section in config.json)")
    if section.get("_version") != MODEL_VERSION:
        raise DSEError(f"{path}: exported model version {section.get('_version')} is not supported "
                       f"(this tool reads {MODEL_VERSION})")
    try:
        settings = ModelSettings.model_validate({k: v for k, v in section.items() if k not in ("_type", "_version")})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DSEError(f"{config_file}: invalid '{CONFIG_KEY}' section: {where}: {err['msg']}") from None
    if not (path / OFF_RAMPS_FILE).is_file():
        raise DSEError(f"{path}: exported model has no {OFF_RAMPS_FILE}")
    return settings


def load_exported_model(path: str | Path) -> ExportedModel:
    """Load an exported model folder: early-exit model (spans set), tokenizer and settings.

    Raises DSEError (one line) for a folder that is not an export of a version this tool reads.
    """
    path = Path(path)
    settings = _read_settings(path)
    backbone = load_backbone(str(path))
    model = EarlyExitModel(backbone, settings.num_labels, pooling=settings.offramp_pooling,
                           head=settings.offramp_head)
    try:
        load_off_ramps(model.off_ramps, safetensors.torch.load_file(str(path / OFF_RAMPS_FILE)))
    except (RuntimeError, OSError, safetensors.SafetensorError) as exc:
        raise DSEError(f"{path / OFF_RAMPS_FILE}: does not fit the model "
                       f"({str(exc).strip().splitlines()[0][:200]})") from None
    spans = torch.tensor([[math.inf if v is None else v for v in row] for row in settings.attention_spans_tokens])
    if spans.shape != model.spans.shape or len(settings.entropy_thresholds_nats) != model.num_layers:
        raise DSEError(f"{path}: spans or thresholds do not match the model's "
                       f"{model.num_layers} layers x {model.num_heads} heads")
    model.spans.copy_(spans)
    # activation quantization is computed per forward call: re-attach it as the trial had it
    attach_activation_quantization(model, CompressionSpec.from_knobs(
        {**{k: v.default for k, v in KNOBS.items()}, **settings.compression}))
    model.eval()
    return ExportedModel(model, load_tokenizer(str(path)), settings, path)


def exported_dev_rows(exported: ExportedModel, *, glue_dir: str | Path | None = None) -> EncodedSet:
    """The dev rows the exported model's trial was scored on, tokenized (GLUE folder: ``glue_dir``,
    else the one recorded in the export, else ``$DSE_GLUE_DIR``, else the hub)."""
    s = exported.settings
    return load_dev_set(s.task, exported.tokenizer,
                        glue_dir=resolve_glue_dir(glue_dir if glue_dir is not None else s.dev_rows.glue_dir),
                        max_seq_length=s.max_seq_length, dev_subset=s.dev_rows.dev_subset, seed=s.dev_rows.seed,
                        train_from_dev=s.dev_rows.train_from_dev)


def score_exported_model(model: str | Path | ExportedModel, *, glue_dir: str | Path | None = None) -> ExportScore:
    """Score an exported model on the dev rows its trial used (see :func:`exported_dev_rows`)."""
    exported = model if isinstance(model, ExportedModel) else load_exported_model(model)
    return exported.score(exported_dev_rows(exported, glue_dir=glue_dir))
