"""A design's compressed model as a Hugging Face ``save_pretrained`` folder, and its loader.

Folder layout (``model/`` inside a design export)::

    config.json            the backbone's HF config plus an ``edgebert`` section (see ModelSettings):
                           task and labels, max_seq_length, the entropy exit rule and thresholds,
                           attention spans, compression knobs, the dev rows the trial was scored on
    model.safetensors      a ``*ForSequenceClassification`` checkpoint: the backbone weights exactly
                           as the trial evaluated them (pruning masks baked in, AdaptivFloat-rounded
                           values) with the final off-ramp as its pooler and classifier
    off_ramps.safetensors  the off-ramp after every layer (input standardisation, pooler if any,
                           classifier), rounded likewise; the section's offramp_pooling and
                           offramp_head say what each reads ([CLS] or token mean) and computes
    tokenizer files        the study model's tokenizer
    README.md              the model card: the design, its figures, its knobs, the dataset

Plain transformers runs the full-depth model: ``AutoModelForSequenceClassification``
``.from_pretrained(folder)`` and ``pipeline("text-classification", model=folder)`` (no early exit,
no attention-span masks, no activation quantization: those are ours); ``AutoModel`` loads the
backbone. When the final off-ramp is not a pooler + classifier that HF's head computes
identically, the checkpoint is the bare backbone instead and the model card says so.
:func:`load_exported_model` gives back our early-exit model with its spans and thresholds, and
:func:`score_exported_model` re-scores it on the task's dev rows with the same rows, batching and
exit rule as the trial evaluation, so it reproduces the trial's accuracy.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors.torch
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from dse.artifacts.reading import EXPORT_AGAIN, read_export_file
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
    "MODEL_CARD_FILE",
    "MODEL_TYPE",
    "MODEL_VERSION",
    "OFF_RAMPS_FILE",
    "DevRows",
    "ExportScore",
    "ExportedModel",
    "ModelSettings",
    "exported_dev_rows",
    "load_exported_model",
    "model_card",
    "save_exported_model",
    "score_exported_model",
]

CONFIG_KEY = "edgebert"  # the section of config.json holding our settings
MODEL_TYPE = "edgebert-dse.model"
MODEL_VERSION = 1
OFF_RAMPS_FILE = "off_ramps.safetensors"
MODEL_CARD_FILE = "README.md"
EXIT_RULE = "entropy_below_threshold"


class DevRows(BaseModel):
    """Which dev rows the trial was scored on (same meaning as the study's ``data`` section)."""

    model_config = ConfigDict(extra="forbid")

    glue_dir: str | None = None  # as configured; null = $DSE_GLUE_DIR, else the hub
    dev_subset: int | None = None  # a seeded subset of this many rows; null = all
    seed: int = 0
    train_from_dev: float | None = None  # the task was fine-tuned on this part of dev (see dse.data.load_task_split)
    calibration_rows: int = Field(default=256, ge=16)  # the train rows the design was calibrated on (data.calibration_rows)


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
    # One static AdaptivFloat bias per quantized encoder matmul input (calibrated on the design's
    # DVFS training rows); null: computed per forward call from max |x| (older exports)
    activation_biases: list[int] | None = None
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
        attention_spans_tokens=_spans_json(model.spans),
        activation_biases=getattr(model, "activation_biases", None), compression=dict(compression),
        achieved=dict(achieved or {}), dev_rows=dev_rows, design=dict(design or {}),
    )
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DSEError(f"{folder} exists and is not a folder")
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the CLI's output
    head = _sequence_classifier(model, spec.label_names)
    with atomic_folder(folder) as tmp:  # replaced as a whole: a reader never sees half a model
        (head if head is not None else model.backbone).save_pretrained(tmp)
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
        (tmp / MODEL_CARD_FILE).write_text(model_card(settings, config, hf_head=head is not None))
        _normal_permissions(tmp)
    return folder


@torch.no_grad()
def _sequence_classifier(model: EarlyExitModel, label_names: tuple[str, ...] | list[str]) -> PreTrainedModel | None:
    """The backbone as HF's ``*ForSequenceClassification`` with the final off-ramp as its head,
    or None when HF's head would not compute what the final off-ramp computes (checked on
    random [CLS] vectors, so a changed off-ramp design falls back instead of being misexported)."""
    from transformers import AutoModelForSequenceClassification

    ramp = model.off_ramps[-1]
    config = copy.deepcopy(model.config)
    config.num_labels = model.num_labels
    if label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    if config.model_type == "mobilebert":  # its pooler has a Linear + tanh only with classifier_activation
        config.classifier_activation = True
    head = AutoModelForSequenceClassification.from_config(config).eval()
    base = head.base_model
    pooler = getattr(base, "pooler", None)
    dense = getattr(pooler, "dense", pooler)
    ramp_pooler, classifier = getattr(ramp, "pooler", None), getattr(ramp, "classifier", None)
    if not (isinstance(dense, nn.Linear) and isinstance(ramp_pooler, nn.Linear)
            and isinstance(classifier, nn.Linear) and isinstance(getattr(head, "classifier", None), nn.Linear)):
        return None
    if getattr(model, "pooling", "cls") != "cls":  # HF's pooler reads [CLS], never the token mean
        return None
    # the off-ramp's input standardisation, (x - shift) * scale, folded into the pooler's matmul
    shift, scale = getattr(ramp, "input_shift", None), getattr(ramp, "input_scale", None)
    weight = ramp_pooler.weight.detach() * (scale if scale is not None else 1.0)
    bias = ramp_pooler.bias.detach() - (weight @ shift if shift is not None else 0.0)
    try:
        base.load_state_dict(model.backbone.state_dict(), strict=False)
        dense.load_state_dict({"weight": weight, "bias": bias})
        head.classifier.load_state_dict(classifier.state_dict())
    except RuntimeError:
        return None
    was_training = ramp.training
    ramp.eval()
    cls = torch.randn(16, config.hidden_size, generator=torch.Generator().manual_seed(0)) * 2
    want = ramp(cls).float()
    ramp.train(was_training)
    got = head.classifier(torch.tanh(dense(cls)))
    if want.shape != got.shape or not torch.allclose(want, got, atol=1e-5, rtol=1e-4):
        return None
    return head


def model_card(settings: ModelSettings, config: dict[str, Any], *, hf_head: bool) -> str:
    """``README.md`` of an exported model: the design, its figures, its knobs, the dataset."""
    d, c, rows = settings.design, settings.compression, settings.dev_rows
    arch = config.get("architectures") or [config.get("model_type", "?")]
    metrics = d.get("metrics") or {}
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        f"base_model_type: {config.get('model_type', 'unknown')}",
        "tags: [edgebert-dse, early-exit, pruned]",
        "---",
        "",
        f"# EdgeBERT-style early-exit {config.get('model_type', '')} for GLUE {settings.task}",
        "",
        f"Exported by edgebert-dse from study `{d.get('study', '?')}`, trial {d.get('trial', '?')}"
        f" (definition hash `{d.get('config_hash', '?')}`). Architecture: `{arch[0]}`, "
        f"{config.get('num_hidden_layers', '?')} layers, hidden size {config.get('hidden_size', '?')}; "
        f"labels: {', '.join(settings.label_names) or 'regression'}.",
        "",
        "## Use",
        "",
    ]
    if hf_head:
        lines += [
            "Full depth (the last layer's off-ramp) with plain transformers:",
            "",
            "```python",
            "from transformers import pipeline",
            'clf = pipeline("text-classification", model="PATH/TO/THIS/FOLDER")',
            "```",
            "",
            "or `AutoModelForSequenceClassification.from_pretrained(...)`. That runs every layer, without "
            "the design's attention-span masks and activation quantization, so its figures can differ "
            "from the design's.",
        ]
    else:
        lines += ["The final off-ramp is not a pooler + classifier that transformers' sequence-classification "
                  "head computes, so `model.safetensors` is the bare backbone (`AutoModel`)."]
    lines += [
        "",
        "Early exit (rows stop at the first layer whose off-ramp entropy is below its threshold) with "
        "edgebert-dse:",
        "",
        "```python",
        "from dse.artifacts.hf_export import load_exported_model",
        'model = load_exported_model("PATH/TO/THIS/FOLDER")',
        'labels, exit_layers = model.predict(["a sentence"])',
        "```",
        "",
        "`dse deploy` of the export folder writes fp32 and int8 ONNX deployables and measures them.",
        "",
        "## Figures (the trial's, on the dev rows below)",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in metrics.items()),
        *(f"| {k} (achieved) | {v} |" for k, v in settings.achieved.items()),
        "",
        "## Knobs",
        "",
        "| knob | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(c.items())),
        f"| entropy exit thresholds (nats, per layer) | {settings.entropy_thresholds_nats} |",
        f"| attention spans (tokens, per layer and head; null = unlimited) | {settings.attention_spans_tokens} |",
        "",
        "## Dataset",
        "",
        f"GLUE {settings.task} (max sequence length {settings.max_seq_length}); scored on the dev split"
        + (f", a seeded subset of {rows.dev_subset} rows (seed {rows.seed})" if rows.dev_subset else ", all rows")
        + (f"; fine-tuned on {rows.train_from_dev:.0%} of dev" if rows.train_from_dev else "") + ".",
        "",
    ]
    return "\n".join(lines)


def _normal_permissions(folder: Path) -> None:
    """HF's atomic writes make private files; give the export the umask's modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_safetensors_header(path: Path) -> list[str]:
    """The tensor names in a safetensors header (a truncated or foreign file fails here; never unpickled)."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# The tokenizer files save_pretrained may write, and how each is checked before the tokenizer reads them.
_TOKENIZER_FILES = {"tokenizer.json": _read_json, "tokenizer_config.json": _read_json,
                    "special_tokens_map.json": _read_json, "added_tokens.json": _read_json, "vocab.txt": _read_text}


def _check_files(path: Path) -> None:
    """Every weights and tokenizer file of the folder reads as what it should hold, before any
    model is built: a damaged one is one line naming it (config.json: see _read_settings)."""
    weights = sorted(path.glob("*.safetensors"))
    if not any(w.name != OFF_RAMPS_FILE for w in weights):
        raise DSEError(f"{path}: exported model has no model.safetensors; {EXPORT_AGAIN}")
    for file in weights:
        read_export_file(file, _read_safetensors_header, "safetensors file")
    for name, read in _TOKENIZER_FILES.items():
        if (path / name).is_file():
            read_export_file(path / name, read, "tokenizer file")


def _read_settings(path: Path) -> ModelSettings:
    config_file = path / "config.json"
    if not path.is_dir():
        raise DSEError(f"{path}: no such exported model folder")
    try:
        config = read_export_file(config_file, _read_json, "JSON model config")
    except FileNotFoundError:
        raise DSEError(f"{path}: not an exported model folder (no config.json)") from None
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
    _check_files(path)
    try:
        backbone = load_backbone(str(path))
    except DSEError:
        raise
    except Exception as exc:  # files that read but do not make a model (e.g. tensors of other shapes)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DSEError(f"{path}: the exported backbone does not load ({exc.__class__.__name__}: {first}); "
                       f"{EXPORT_AGAIN}") from None
    model = EarlyExitModel(backbone, settings.num_labels, pooling=settings.offramp_pooling,
                           head=settings.offramp_head)
    ramps = read_export_file(path / OFF_RAMPS_FILE, lambda p: safetensors.torch.load_file(str(p)),
                             "safetensors file")
    try:
        load_off_ramps(model.off_ramps, ramps)
    except RuntimeError as exc:
        raise DSEError(f"{path / OFF_RAMPS_FILE}: does not fit the model "
                       f"({str(exc).strip().splitlines()[0][:200]})") from None
    spans = torch.tensor([[math.inf if v is None else v for v in row] for row in settings.attention_spans_tokens])
    if spans.shape != model.spans.shape or len(settings.entropy_thresholds_nats) != model.num_layers:
        raise DSEError(f"{path}: spans or thresholds do not match the model's "
                       f"{model.num_layers} layers x {model.num_heads} heads")
    model.spans.copy_(spans)
    # activation quantization is simulated in the forward pass: re-attach it as the trial had it
    try:
        attach_activation_quantization(model, CompressionSpec.from_knobs(
            {**{k: v.default for k, v in KNOBS.items()}, **settings.compression}), biases=settings.activation_biases)
    except ValueError as exc:
        raise DSEError(f"{path / 'config.json'}: {exc}; {EXPORT_AGAIN}") from None
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
