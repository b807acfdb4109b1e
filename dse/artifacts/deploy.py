"""Deployment check: an exported design as CPU deployables with real early exit, measured.

``deploy_export(EXPORT_DIR, format="onnx")`` (the default) loads ``EXPORT_DIR/model`` and writes
``EXPORT_DIR/deploy/``::

    onnx_fp32/        the early-exit model as ONNX graphs: embed.onnx, layer_NN.onnx (one encoder
                      layer and its off-ramp each), runner.json (thresholds, labels) and
                      early_exit_runner.py, the host exit loop (numpy + onnxruntime only)
    onnx_int8/        the same, every MatMul/Gemm (off-ramps included) and every embedding table
                      (Gather) dynamically quantized to int8 by onnxruntime
    deploy.json       inputs/outputs, exit rule, labels, and the measured sizes/accuracy/latency

See :mod:`dse.artifacts.onnx_export` and :mod:`dse.artifacts.onnx_runner`. Latency is measured
at 1, 2 and 4 onnxruntime threads (or the one ``threads`` given).

``format="litert"`` (the ``litert`` extra: ``pip install edgebert-dse[litert]``) writes the same
steps as LiteRT (TensorFlow Lite FlatBuffer) files, measured the same way at 1, 2 and 4
interpreter threads (:mod:`dse.artifacts.litert_export`)::

    litert_fp32/      model.tflite (signatures embed_N, layer_01_N ... layer_NN_N; batch 1, N tokens
                      for each length N: 32 and the export's max_seq_length by default),
                      runner.json and early_exit_runner.py
                      (LiteRTEarlyExitRunner: numpy + ai_edge_litert)
    litert_int8/      the same, quantized by ai_edge_quantizer (dynamic_wi8_afp32: int8 weights of
                      every fully-connected layer and embedding table)

``format="torchscript"`` is the legacy deployable (``torch.jit`` and
``torch.ao.quantization.quantize_dynamic`` are both deprecated in torch 2.13; it is kept while
they still run)::

    model_fp32.pt     TorchScript: the exported early-exit model in fp32
    model_int8.pt     TorchScript: every nn.Linear dynamically quantized to int8 (torch.ao) and
                      every embedding table stored as uint8 with a scale and offset per row

Both run with plain torch (``torch.jit.load``; no dse, no transformers):
``module(input_ids, attention_mask, token_type_ids)`` (int64 ``[b, s]``) returns the exiting
logits ``[b, labels]`` and the 1-based exit layer ``[b]`` with real early exit (a row stops at
the first layer whose off-ramp entropy is below that layer's threshold, as in
:meth:`EarlyExitModel.early_exit_forward`); ``module.layer_logits(...)`` returns every off-ramp's
logits ``[layers, b, labels]``. Tokenize with the tokenizer files in ``EXPORT_DIR/model``.

A design's AdaptivFloat activation quantizers (static biases, calibrated per design) are traced
into every deployable in float operations (:func:`~dse.compression.adaptivfloat.quantize_in_float_ops`),
so the fp32 artifact computes the chip's activations and exits where its trial did. The int8
artifacts quantize the matmul inputs once more, per call (onnxruntime / torch.ao dynamic int8).

The thresholds and the off-ramp calibration were chosen for the chip's datapath. int8 activations
perturb the early layers' features by more than they vary across sentences (the hidden state has
one outlier dimension that sets the per-tensor activation scale), so every int8 deployable gets its
standardised earlier off-ramps re-calibrated on its own features
(:func:`~dse.artifacts.onnx_export.quantize_onnx_calibrated`, the LiteRT one,
:func:`calibrate_torchscript_int8`); docs/outputs-export-deploy.md.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dse.artifacts.deploy_request import FORMATS, check_deploy_request
from dse.artifacts.export import MODEL_DIR
from dse.artifacts.hf_export import ExportedModel, ExportScore, exported_dev_rows, load_exported_model
from dse.artifacts.traceable import EmbedStep, LayerStep, attention_bias, traceable_copy
from dse.compression.apply import traceable_activation_quantization
from dse.data import resolve_glue_dir
from dse.data.metrics import main_metric
from dse.errors import DSEError
from dse.evaluation.context import load_dvfs_rows
from dse.io import atomic_folder, atomic_write, write_text_atomic
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import predictions

__all__ = [
    "DEPLOY_DIR",
    "DEPLOY_FILE",
    "DEPLOY_TYPE",
    "DEPLOY_VERSION",
    "FORMATS",
    "FP32_FILE",
    "INT8_FILE",
    "ONNX_FP32_DIR",
    "ONNX_INT8_DIR",
    "ONNX_THREADS",
    "LITERT_FP32_DIR",
    "LITERT_INT8_DIR",
    "ArtifactFigures",
    "DeployReport",
    "build_torchscript",
    "calibrate_torchscript_int8",
    "deploy_export",
    "measure_artifact",
    "measure_litert",
    "measure_onnx",
]

DEPLOY_DIR = "deploy"
DEPLOY_FILE = "deploy.json"
FP32_FILE = "model_fp32.pt"
INT8_FILE = "model_int8.pt"
ONNX_FP32_DIR = "onnx_fp32"
ONNX_INT8_DIR = "onnx_int8"
ONNX_THREADS = (1, 2, 4)
LITERT_FP32_DIR = "litert_fp32"
LITERT_INT8_DIR = "litert_int8"
DEPLOY_TYPE = "edgebert-dse.deploy"
DEPLOY_VERSION = 2  # 2: format, ONNX folders, agreement with the trial, latency by threads
WARMUP_ROWS = 10


class _Layer(nn.Module):
    """Encoder layer ``index``: ``(h, bias [b, heads, s, s]) -> h`` (traced)."""

    _model: EarlyExitModel

    def __init__(self, model: EarlyExitModel, index: int) -> None:
        super().__init__()
        self.mods = nn.ModuleList(model._layer_modules(index))
        self.__dict__["_model"] = model
        self.index = index

    def forward(self, h: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self._model._run_layer(self.index, h, bias)  # spans are inf: bias is used as given


class _EarlyExit(nn.Module):
    """Scripted driver: padding + span bias, the layer loop with real early exit, the off-ramps'
    pooling ([CLS] or the mean of the real tokens)."""

    def __init__(self, embed: nn.Module, layers: list[nn.Module], ramps: list[nn.Module],
                 spans: torch.Tensor, thresholds: torch.Tensor, num_labels: int, mean_pooling: bool) -> None:
        super().__init__()
        self.mean_pooling = mean_pooling
        self.embed = embed
        self.layers = nn.ModuleList(layers)
        self.ramps = nn.ModuleList(ramps)
        self.register_buffer("spans", spans.float().clone())  # [layers, heads]; inf = unlimited
        self.register_buffer("thresholds", thresholds.float().clone())  # [layers], nats
        self.num_labels = num_labels

    def _pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if not self.mean_pooling:
            return h[:, 0]
        m = attention_mask[:, :, None].float()
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = input_ids.shape[0]
        out_logits = torch.zeros(b, self.num_labels)
        out_layer = torch.zeros(b, dtype=torch.int64)
        alive = torch.arange(b)
        h = self.embed(input_ids, token_type_ids)
        mask = attention_mask
        last = len(self.layers) - 1
        for index, (layer, ramp) in enumerate(zip(self.layers, self.ramps)):
            if alive.numel() > 0:  # TorchScript unrolls this loop: skip, not break
                h = layer(h, attention_bias(mask, self.spans[index]))
                logits = ramp(self._pool(h, mask)).float()
                log_p = torch.log_softmax(logits, dim=-1)
                done = -(log_p.exp() * log_p).sum(-1) < self.thresholds[index]
                if index == last:
                    done = torch.ones_like(done)
                out_logits[alive[done]] = logits[done]
                out_layer[alive[done]] = index + 1
                keep = ~done
                alive, h, mask = alive[keep], h[keep], mask[keep]
        return out_logits, out_layer

    @torch.jit.export
    def layer_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids, token_type_ids)
        out: list[torch.Tensor] = []
        for index, (layer, ramp) in enumerate(zip(self.layers, self.ramps)):
            h = layer(h, attention_bias(attention_mask, self.spans[index]))
            out.append(ramp(self._pool(h, attention_mask)).float())
        return torch.stack(out)


@torch.no_grad()
def build_torchscript(model: EarlyExitModel, thresholds: torch.Tensor, *, int8: bool) -> torch.jit.ScriptModule:
    """A self-contained TorchScript early-exit module of ``model`` (fp32, or dynamic int8 linears).

    ``model`` is not modified (a copy is traced).
    """
    model = copy.deepcopy(model).eval()
    traceable_activation_quantization(model)  # the trial's activations, traced into the module
    spans = model.spans.clone()
    model.spans.fill_(math.inf)  # the scripted driver adds the span bias itself, per sequence length
    s = 8  # any length: the traces keep the sequence length symbolic
    ids = torch.ones(1, s, dtype=torch.long)
    h = torch.zeros(1, s, model.config.hidden_size)
    bias = torch.zeros(1, model.num_heads, s, s)
    # ignored: only the tracer's notes about Python bools of constants (the spans, all inf here);
    # torch's deprecation notices for torch.jit and torch.ao are left to Python's filters
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        if int8:
            model = _quantize_int8(model)
        embed = torch.jit.trace(EmbedStep(model), (ids, torch.zeros_like(ids)), check_trace=False)
        layers = [torch.jit.trace(_Layer(model, i), (h, bias), check_trace=False) for i in range(model.num_layers)]
        ramps = [torch.jit.trace(r, (h[:, 0],), check_trace=False) for r in model.off_ramps]
        return torch.jit.script(_EarlyExit(embed, layers, ramps, spans, thresholds, model.num_labels,
                                           model.pooling == "mean"))


def _quantize_int8(model: EarlyExitModel) -> EarlyExitModel:
    """A copy with dynamic int8 linears (activations quantized per call) and uint8 embedding
    tables (the embedding tables are most of a small model's bytes)."""
    qconfigs = {nn.Linear: torch.ao.quantization.default_dynamic_qconfig,
                nn.Embedding: torch.ao.quantization.float_qparams_weight_only_qconfig}
    return torch.ao.quantization.quantize_dynamic(model, qconfigs, dtype=torch.qint8)


class _TorchInt8Steps:
    """The int8 TorchScript deployable's steps run eagerly, one sentence at a time: the
    ``layer_outputs`` that :func:`~dse.artifacts.onnx_export.calibrate_off_ramps_for_runner` reads
    from the ONNX and LiteRT runners (the hidden states; the logits are not used)."""

    def __init__(self, model: EarlyExitModel) -> None:
        q = _quantize_int8(traceable_copy(model))  # what the int8 module computes
        self.embed = EmbedStep(q)
        self.layers = [LayerStep(q, i, model.spans[i]) for i in range(model.num_layers)]

    def layer_outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                      token_type_ids: np.ndarray) -> Any:
        mask = torch.from_numpy(attention_mask)
        h = self.embed(torch.from_numpy(input_ids), torch.from_numpy(token_type_ids)).detach()
        for layer in self.layers:
            h, logits = (t.detach() for t in layer(h, mask))
            yield h.numpy(), logits.numpy()


def calibrate_torchscript_int8(model: EarlyExitModel, rows: EncodedSet | None, *,
                               pad_id: int) -> tuple[EarlyExitModel, dict[str, int]]:
    """``model`` with its standardised earlier off-ramps calibrated on the features the int8
    TorchScript deployable computes for ``rows`` (the design's DVFS training rows), as ONNX and
    LiteRT int8 are; ``model`` itself where there is nothing to calibrate."""
    from dse.artifacts.onnx_export import calibrate_deployed_off_ramps

    calibrated, done = calibrate_deployed_off_ramps(model, lambda: _TorchInt8Steps(model), rows, pad_id=pad_id)
    return (model if calibrated is None else calibrated), done


def _save(module: torch.jit.ScriptModule, path: Path) -> None:
    with atomic_write(path, "wb") as fh:
        torch.jit.save(module, fh)


@dataclass(frozen=True)
class ArtifactFigures:
    """One artifact measured on the dev rows at batch size 1 with real early exit."""

    size_mb: float
    accuracy: float  # points (0-100) of the task's main metric
    avg_exit_layer: float
    latency_median_ms: float  # at the report's ``threads``
    latency_p95_ms: float
    trial_agreement: float = math.nan  # fraction of rows predicted as the trial's model predicts them
    exit_agreement: float = math.nan  # fraction of rows exiting at the trial simulation's exit layer
    # {"1": {"median_ms": .., "p95_ms": ..}, "2": ..}: the same rows at each thread count measured
    latency_ms_by_threads: dict[str, dict[str, float]] = field(default_factory=dict)


def measure_artifact(module: torch.jit.ScriptModule, rows: EncodedSet, *, warmup_rows: int = WARMUP_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, exit layers and per-sentence latency (ms) of every row, one row at a time (TorchScript)."""
    def inputs(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = torch.tensor([rows.input_ids[i]])
        return ids, torch.ones_like(ids), torch.tensor([rows.token_type_ids[i]])

    # The plain TorchScript interpreter: the default profiling executor re-specializes (and on
    # CPU compiles fused kernels) for every new sequence length: ~10x slower median per
    # sentence measured on varied-length dev rows.
    with torch.no_grad(), torch.jit.optimized_execution(False):
        logits, exits, times_ms = _run_timed(module, inputs, len(rows), warmup_rows)
    return predictions(torch.cat(logits)), exits, times_ms


def _run_timed(run: Any, inputs: Any, n_rows: int, warmup_rows: int) -> tuple[list, np.ndarray, np.ndarray]:
    """``run(*inputs(i))`` for every row, one at a time after ``warmup_rows`` untimed calls (the
    first calls load and lay out the weights): the logits, exit layers and latencies (ms)."""
    for i in range(min(warmup_rows, n_rows)):
        run(*inputs(i))
    logits, exits, times_ms = [], [], []
    for i in range(n_rows):
        x = inputs(i)
        start = time.perf_counter()
        out, layer = run(*x)
        times_ms.append((time.perf_counter() - start) * 1e3)
        logits.append(out)
        exits.append(int(layer[0]))
    return logits, np.array(exits), np.array(times_ms)


def measure_onnx(folder: Path, rows: EncodedSet, *, threads: int, warmup_rows: int = WARMUP_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, exit layers and per-sentence latency (ms) of an ONNX deploy folder, one row at a time."""
    from dse.artifacts.onnx_runner import EarlyExitRunner

    return _measure_runner(EarlyExitRunner(folder, threads=threads), rows, warmup_rows)


def measure_litert(folder: Path, rows: EncodedSet, *, threads: int, warmup_rows: int = WARMUP_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions, exit layers and per-sentence latency (ms) of a LiteRT deploy folder, one row at a time."""
    from dse.artifacts.onnx_runner import LiteRTEarlyExitRunner

    return _measure_runner(LiteRTEarlyExitRunner(folder, threads=threads), rows, warmup_rows)


def _measure_runner(runner: Any, rows: EncodedSet, warmup_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def inputs(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.asarray([rows.input_ids[i]], dtype=np.int64)
        return ids, np.ones_like(ids), np.asarray([rows.token_type_ids[i]], dtype=np.int64)

    logits, exits, times_ms = _run_timed(runner, inputs, len(rows), warmup_rows)
    return predictions(torch.from_numpy(np.concatenate(logits))), exits, times_ms


@dataclass(frozen=True)
class DeployReport:
    """What :func:`deploy_export` wrote and measured."""

    path: Path  # the deploy/ folder
    task: str
    dev_rows: int
    threads: int  # the thread count of latency_median_ms / latency_p95_ms
    trial_accuracy: float  # the exported model as the trial scored it (score_exported_model's rule)
    fp32: ArtifactFigures
    int8: ArtifactFigures
    prediction_agreement: float  # fraction of rows where int8 and fp32 artifacts predict the same
    format: str = "onnx"

    def edge_summary(self) -> dict[str, Any]:
        """The seed paper's view of the int8 deployable: size against the fp32 one and against an
        fp32 BERT-large, accuracy drop from the trial, and sentences per second on one thread
        against the edge bar of at least one inference per second (None: 1 thread not measured)."""
        one = self.int8.latency_ms_by_threads.get("1")
        per_s = 1e3 / one["median_ms"] if one else None
        return {"int8_size_vs_fp32": self.int8.size_mb / self.fp32.size_mb,
                "bert_large_fp32_mb": bert_large_fp32_mb(),
                "times_smaller_than_bert_large_fp32": bert_large_fp32_mb() / self.int8.size_mb,
                "accuracy_drop_points": self.trial_accuracy - self.int8.accuracy,
                "sentences_per_s_1_thread": per_s,
                "at_least_one_inference_per_s": None if per_s is None else per_s >= 1.0}

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "task": self.task, "dev_rows": self.dev_rows,
                "threads": self.threads, "trial_accuracy": self.trial_accuracy, "fp32": asdict(self.fp32),
                "int8": asdict(self.int8), "prediction_agreement": self.prediction_agreement,
                "edge": self.edge_summary()}


def fp32_parameter_mb(config: Any, num_labels: int = 2) -> float:
    """fp32 bytes (MB) of a ``*ForSequenceClassification`` model of ``config``, counted on the meta
    device (nothing allocated)."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(config)
    config.num_labels = num_labels
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return 4 * sum(p.numel() for p in model.parameters()) / 1e6


@functools.cache
def bert_large_fp32_mb() -> float:
    """The seed paper's reference size: an fp32 BERT-large classifier (about 1.34 GB)."""
    from transformers import BertConfig

    # BERT-large (Devlin et al. 2019): 24 layers, H 1024, 16 heads, F 4096, the 30,522-word vocabulary
    return fp32_parameter_mb(BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                        intermediate_size=4096))



def _dev_rows(exported: ExportedModel, glue_dir: str | Path | None, max_rows: int | None) -> EncodedSet:
    rows = exported_dev_rows(exported, glue_dir=glue_dir)
    return rows if max_rows is None or max_rows >= len(rows) else rows.subset(np.arange(max_rows))


def _calibration_rows(exported: ExportedModel, glue_dir: str | Path | None) -> EncodedSet | None:
    """The design's DVFS training rows (its off-ramps were calibrated on them), or None offline."""
    s = exported.settings
    return load_dvfs_rows(s.task, exported.tokenizer,
                          glue_dir=resolve_glue_dir(glue_dir if glue_dir is not None else s.dev_rows.glue_dir),
                          max_seq_length=s.max_seq_length, seed=s.dev_rows.seed, train_from_dev=s.dev_rows.train_from_dev,
                          rows=s.dev_rows.calibration_rows)


def _summarize(size_mb: float, task: str, rows: EncodedSet, trial: ExportScore, preds: np.ndarray,
               exits: np.ndarray, times_ms: dict[int, np.ndarray]) -> ArtifactFigures:
    by_threads = {str(t): {"median_ms": float(np.median(v)), "p95_ms": float(np.percentile(v, 95))}
                  for t, v in times_ms.items()}
    head = by_threads[str(next(iter(times_ms)))]
    return ArtifactFigures(
        size_mb=size_mb, accuracy=100 * main_metric(task, preds, rows.labels), avg_exit_layer=float(exits.mean()),
        latency_median_ms=head["median_ms"], latency_p95_ms=head["p95_ms"],
        trial_agreement=float((preds == trial.predictions).mean()),
        exit_agreement=float((exits == trial.exit_layers).mean()), latency_ms_by_threads=by_threads,
    )


def _measure_folders(folders: dict[str, Path], measure: Any, size_mb: Any, thread_counts: list[int], task: str,
                     rows: EncodedSet, trial: ExportScore) -> tuple[dict[str, ArtifactFigures], dict[str, np.ndarray]]:
    """Each deploy folder (ONNX or LiteRT) measured by ``measure`` at every thread count: its
    figures, and its predictions at the first count."""
    figures: dict[str, ArtifactFigures] = {}
    preds: dict[str, np.ndarray] = {}
    for name, folder in folders.items():
        times: dict[int, np.ndarray] = {}
        for t in thread_counts:
            p, e, times[t] = measure(folder, rows, threads=t)
            if t == thread_counts[0]:
                preds[name], exits = p, e
        figures[name] = _summarize(size_mb(folder), task, rows, trial, preds[name], exits, times)
    return figures, preds


def deploy_export(export_dir: str | Path, *, threads: int | None = None, max_rows: int | None = None,
                  glue_dir: str | Path | None = None, format: str = "onnx",  # noqa: A002
                  lengths: list[int] | None = None) -> DeployReport:
    """Write ``EXPORT_DIR/deploy/`` (fp32 and int8 deployables + deploy.json) and measure both.

    ``format``: ``"onnx"`` (per-layer ONNX graphs run by onnxruntime with a host exit loop;
    latency at 1, 2 and 4 threads, or at ``threads`` alone), ``"litert"`` (the same steps as one
    LiteRT file's signatures, run by ai_edge_litert; the ``litert`` extra) or ``"torchscript"``
    (legacy; latency at ``threads`` torch threads). Accuracy uses the trial's dev rows (the first
    ``max_rows`` of them if given) and exit rule; latency is per sentence at batch size 1 on this CPU.
    ``lengths`` (litert only): the sequence lengths the LiteRT file holds signatures for (default:
    32 tokens and the export's ``max_seq_length``).
    """
    export_dir = Path(export_dir)
    exported = load_exported_model(check_deploy_request(export_dir, format=format, lengths=lengths, max_rows=max_rows))
    rows = _dev_rows(exported, glue_dir, max_rows)
    task = exported.settings.task
    trial = exported.score(rows)
    out = export_dir / DEPLOY_DIR
    out.mkdir(exist_ok=True)
    figures: dict[str, ArtifactFigures] = {}
    preds: dict[str, np.ndarray] = {}
    s = exported.settings
    if format == "onnx":
        from dse.artifacts.onnx_export import export_onnx, folder_size_mb, quantize_onnx_calibrated

        thread_counts = [threads] if threads is not None else list(ONNX_THREADS)
        folders = {"fp32": out / ONNX_FP32_DIR, "int8": out / ONNX_INT8_DIR}
        with atomic_folder(folders["fp32"]) as tmp:
            export_onnx(exported.model, exported.thresholds, tmp, label_names=s.label_names)
        with atomic_folder(folders["int8"]) as tmp:
            calibrated = quantize_onnx_calibrated(exported.model, exported.thresholds, folders["fp32"], tmp,
                                                  _calibration_rows(exported, glue_dir), label_names=s.label_names,
                                                  pad_id=exported.tokenizer.pad_token_id or 0)
        figures, preds = _measure_folders(folders, measure_onnx, folder_size_mb, thread_counts, task, rows, trial)
        report_threads = thread_counts[0]
        files = {"fp32": f"{ONNX_FP32_DIR}/", "int8": f"{ONNX_INT8_DIR}/", "tokenizer": f"../{MODEL_DIR}"}
        how = {"format": "ONNX (opset of torch.onnx.export dynamo=True), one graph per layer; run with "
                         "EarlyExitRunner in early_exit_runner.py (numpy + onnxruntime)",
               "inputs": "input_ids, attention_mask, token_type_ids: int64 [batch, seq]",
               "outputs": "runner(...): exiting logits [batch, labels], exit layer (1-based) [batch]; "
                          "runner.layer_logits(...): [layers, batch, labels]",
               "int8": "onnxruntime.quantization.quantize_dynamic (QInt8 weights, activations quantized per "
                       "call) of every MatMul, Gemm and Gather (embedding tables) in every graph; the standardised "
                       "earlier off-ramps re-centred and tempered for these graphs on the design's DVFS training rows",
               "int8_off_ramp_calibration": calibrated}
    elif format == "litert":
        from dse.artifacts.litert_export import export_litert, length_buckets, litert_size_mb, quantize_litert_calibrated

        seq_lens = sorted(set(lengths or length_buckets(s.max_seq_length)))
        if not 2 <= seq_lens[0] <= seq_lens[-1] <= s.max_seq_length:
            raise DSEError(f"--lengths {','.join(map(str, seq_lens))}: each must be in 2..{s.max_seq_length} "
                           "(the export's max_seq_length)")
        thread_counts = [threads] if threads is not None else list(ONNX_THREADS)
        folders = {"fp32": out / LITERT_FP32_DIR, "int8": out / LITERT_INT8_DIR}
        with atomic_folder(folders["fp32"]) as tmp:
            export_litert(exported.model, exported.thresholds, tmp, seq_lens=seq_lens, label_names=s.label_names)
        with atomic_folder(folders["int8"]) as tmp:
            calibrated = quantize_litert_calibrated(exported.model, exported.thresholds, folders["fp32"], tmp,
                                                    _calibration_rows(exported, glue_dir), label_names=s.label_names,
                                                    pad_id=exported.tokenizer.pad_token_id or 0)
        figures, preds = _measure_folders(folders, measure_litert, litert_size_mb, thread_counts, task, rows, trial)
        report_threads = thread_counts[0]
        files = {"fp32": f"{LITERT_FP32_DIR}/", "int8": f"{LITERT_INT8_DIR}/", "tokenizer": f"../{MODEL_DIR}"}
        how = {"format": "LiteRT (TensorFlow Lite FlatBuffer, litert-torch), one model.tflite with a signature per "
                         f"step and length (embed_N, layer_NN_N; N in {seq_lens}), batch 1; a call runs at the "
                         "shortest N that holds its rows, padded to it; run with LiteRTEarlyExitRunner in "
                         "early_exit_runner.py (numpy + ai_edge_litert)",
               "inputs": f"input_ids, attention_mask, token_type_ids: int64 [batch, seq], seq at most {seq_lens[-1]}",
               "outputs": "runner(...): exiting logits [batch, labels], exit layer (1-based) [batch]; "
                          "runner.layer_logits(...): [layers, batch, labels]",
               "int8": "ai_edge_quantizer recipe dynamic_wi8_afp32 (int8 per-channel weights, activations quantized "
                       "per call) of every FULLY_CONNECTED and EMBEDDING_LOOKUP (embedding tables); the standardised "
                       "earlier off-ramps re-centred and tempered for this file on the design's DVFS training rows",
               "int8_off_ramp_calibration": calibrated}
    else:
        if threads is not None:
            torch.set_num_threads(threads)
        report_threads = torch.get_num_threads()
        int8_model, calibrated = calibrate_torchscript_int8(exported.model, _calibration_rows(exported, glue_dir),
                                                            pad_id=exported.tokenizer.pad_token_id or 0)
        for name, file, int8 in (("fp32", FP32_FILE, False), ("int8", INT8_FILE, True)):
            model = int8_model if int8 else exported.model
            _save(build_torchscript(model, exported.thresholds, int8=int8), out / file)
            module = torch.jit.load(str(out / file))  # measure what was saved, as a user would load it
            preds[name], exits, times_ms = measure_artifact(module, rows)
            figures[name] = _summarize((out / file).stat().st_size / 1e6, task, rows, trial, preds[name], exits,
                                       {report_threads: times_ms})
        files = {"fp32": FP32_FILE, "int8": INT8_FILE, "tokenizer": f"../{MODEL_DIR}"}
        how = {"format": f"TorchScript (torch {torch.__version__}; legacy: torch.jit is deprecated); "
                         "torch.jit.load(path); measured and best run under torch.jit.optimized_execution(False)",
               "inputs": "input_ids, attention_mask, token_type_ids: int64 [batch, seq]",
               "outputs": "forward: exiting logits [batch, labels], exit layer (1-based) [batch]; "
                          "layer_logits: [layers, batch, labels]",
               "int8": "torch.ao.quantization.quantize_dynamic (deprecated): every nn.Linear (qint8 weights, "
                       "activations quantized per call) and every nn.Embedding (uint8 rows, scale and offset per row); "
                       "the standardised earlier off-ramps re-centred and tempered for this module on the design's "
                       "DVFS training rows",
               "int8_off_ramp_calibration": calibrated}
    report = DeployReport(out, task, len(rows), report_threads, trial.accuracy, figures["fp32"], figures["int8"],
                          float((preds["fp32"] == preds["int8"]).mean()), format)
    meta = {"_type": DEPLOY_TYPE, "_version": DEPLOY_VERSION, "_data": {
        "files": files, **how,
        "task": task, "label_names": s.label_names, "max_seq_length": s.max_seq_length,
        "exit_rule": s.exit_rule, "entropy_thresholds_nats": s.entropy_thresholds_nats,
        "offramp_pooling": s.offramp_pooling, "offramp_head": s.offramp_head,
        "measured": {**report.to_json(), "path": None, "machine": _machine(format)},
    }}
    write_text_atomic(out / DEPLOY_FILE, json.dumps(meta, indent=2) + "\n")
    return report


def _machine(format: str) -> dict[str, Any]:  # noqa: A002
    import platform

    info: dict[str, Any] = {"arch": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if format == "onnx":
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    elif format == "litert":
        from importlib.metadata import version

        info.update({m: version(m) for m in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")})
    else:
        info["quantized_engine"] = torch.backends.quantized.engine
    return info
