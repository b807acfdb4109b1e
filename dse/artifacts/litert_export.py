"""An early-exit model as one LiteRT (TensorFlow Lite FlatBuffer) file with a signature per step
(fp32), and its int8 quantization by the LiteRT quantizer. Needs the ``litert`` extra
(``pip install edgebert-dse[litert]``: ``litert-torch`` converts, ``ai-edge-litert`` runs).

``export_litert(model, thresholds, folder, seq_lens=...)`` converts the same modules as the ONNX
path (:class:`~dse.artifacts.traceable.EmbedStep` and one
:class:`~dse.artifacts.traceable.LayerStep` per layer: that layer and its off-ramp, from the
:func:`~dse.artifacts.traceable.traceable_copy` whose static AdaptivFloat activation quantizers are
plain float operations) with ``litert_torch`` into ``model.tflite``, whose signatures are ``embed``
and ``layer_01`` ... ``layer_NN`` at each of ``seq_lens`` tokens (``embed_32``, ``layer_01_32``:
:func:`~dse.artifacts.onnx_runner.signature_name`); writes ``runner.json`` and the same host runner
as the ONNX folders (``early_exit_runner.py``, :class:`~dse.artifacts.onnx_runner.LiteRTEarlyExitRunner`).

Why per-layer signatures at batch 1 and fixed sequence lengths: litert-torch 0.10 cannot lower a
dynamic sequence length through these models (the embedding's ``position_ids`` slice to a
symbolic length fails in its JAX lowering, with the v1 and the v2 converter); the exit decision is
data-dependent control flow, which ``torch.export`` traces only as ``torch.cond`` (not tried with
this converter), so the exit loop is on the host, as for ONNX; one file keeps the steps in one
interpreter (one thread pool, one allocation), their weights stored once, and one quantizer pass.
A row runs at the shortest length that holds it (:func:`length_buckets`: 32 tokens and the
export's ``max_seq_length`` by default), so a short sentence does not pay for the longest one; the
padding is masked out, so the logits are the unpadded ones.

``quantize_litert(src, dst)`` writes the same folder with ``ai_edge_quantizer``'s
``dynamic_wi8_afp32`` recipe: int8 weights (per channel) for every ``FULLY_CONNECTED`` (attention,
feed-forward, every off-ramp's pooler and classifier) and every embedding table
(``EMBEDDING_LOOKUP``), activations quantized per call.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from dse.artifacts import onnx_runner
from dse.artifacts.onnx_export import RUNNER_FILE, calibrate_deployed_off_ramps
from dse.artifacts.traceable import EmbedStep, LayerStep, traceable_copy
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel

__all__ = ["MODEL_FILE", "export_litert", "length_buckets", "litert_size_mb", "quantize_litert", "quantize_litert_calibrated"]

MODEL_FILE = "model.tflite"
EMBED_SIGNATURE = "embed"
SHORT_BUCKET = 32  # tokens: SST-2 dev sentences are about 25


def layer_signature(index: int) -> str:
    return f"layer_{index + 1:02d}"


def length_buckets(max_seq_length: int) -> list[int]:
    """The sequence lengths a LiteRT file is converted at by default: 32 tokens (most GLUE
    single sentences fit) and ``max_seq_length`` (a row pads to the shortest that holds it).

    Two, not every power of two: the weights are stored once, but each length's signatures carry
    their own copy of every int8 tensor's per-channel scales and zero points (TFLite tensors belong
    to a subgraph), 0.64 MB per length for MiniLM-L6, which would put the int8 file over 10 % above
    ONNX int8's size; ``--lengths`` picks others."""
    return sorted({min(SHORT_BUCKET, max_seq_length), max_seq_length})


class _Named(nn.Module):
    """The step's outputs by name: the converter names a signature's outputs after a dict's keys."""

    def __init__(self, step: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.step = step
        self.names = names

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.step(*inputs.values())
        return dict(zip(self.names, out if isinstance(out, tuple) else (out,)))


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """litert-torch prints a progress line per conversion step unless this variable says no;
    set for the conversion only, then restored."""
    key = "LITERT_TORCH_SHOW_PROGRESS"
    before = os.environ.get(key)
    os.environ[key] = "n"
    try:
        yield
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


@torch.no_grad()
def export_litert(model: EarlyExitModel, thresholds: torch.Tensor, folder: Path, *, seq_lens: Sequence[int],
                  label_names: list[str] | None = None) -> Path:
    """Write ``model``'s fp32 LiteRT file (one signature per step and length in ``seq_lens``, batch
    1) with its runner into ``folder`` (``model`` is not modified: a copy is converted)."""
    import litert_torch

    seq_lens = sorted(set(seq_lens))
    if not seq_lens or not 2 <= seq_lens[0] <= seq_lens[-1] <= model.config.max_position_embeddings:
        raise ValueError(f"sequence lengths {seq_lens}: each must be in 2..{model.config.max_position_embeddings}")
    spans = model.spans.clone()
    model = traceable_copy(model)
    folder.mkdir(parents=True, exist_ok=True)
    converter = None
    for n in seq_lens:
        ids = torch.ones(1, n, dtype=torch.long)
        embed = _Named(EmbedStep(model), ("hidden",)).eval()
        sample = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids)}
        name = onnx_runner.signature_name(EMBED_SIGNATURE, n)
        converter = (litert_torch.signature(name, embed, sample_kwargs=sample) if converter is None
                     else converter.signature(name, embed, sample_kwargs=sample))
        h = torch.zeros(1, n, model.config.hidden_size)
        for index in range(model.num_layers):
            step = _Named(LayerStep(model, index, spans[index]), ("hidden_out", "logits")).eval()
            converter.signature(onnx_runner.signature_name(layer_signature(index), n), step,
                                sample_kwargs={"hidden": h, "attention_mask": torch.ones_like(ids)})
    with _quiet_converter():
        converter.convert().export(str(folder / MODEL_FILE))
    meta = {"format": "litert", "model": MODEL_FILE, "embed": EMBED_SIGNATURE,
            "layers": [layer_signature(i) for i in range(model.num_layers)], "seq_lens": seq_lens,
            "signature": "STEP_LENGTH, e.g. embed_32, layer_01_32",
            "num_labels": model.num_labels, "label_names": label_names or [],
            "entropy_thresholds_nats": [float(t) for t in thresholds],
            "exit_rule": "a row exits after the first layer whose off-ramp softmax entropy (nats) is strictly "
                         "below that layer's threshold; the last layer always exits"}
    (folder / onnx_runner.MANIFEST_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copyfile(onnx_runner.__file__, folder / RUNNER_FILE)
    return folder


def quantize_litert(src: Path, dst: Path) -> Path:
    """Write ``dst``: ``src``'s LiteRT file quantized by ``ai_edge_quantizer`` (``dynamic_wi8_afp32``)."""
    from ai_edge_quantizer import quantizer, recipe

    meta = json.loads((src / onnx_runner.MANIFEST_FILE).read_text())
    dst.mkdir(parents=True, exist_ok=True)
    result = quantizer.Quantizer(str(src / meta["model"]), recipe.dynamic_wi8_afp32()).quantize(
        enable_progress_bar=False, enable_progress_report=False)
    target = dst / meta["model"]
    target.unlink(missing_ok=True)  # written again by the off-ramp calibration: no "overwriting" notice
    result.export_model(str(target))
    target.chmod(0o644)  # the quantizer writes it executable
    shutil.copyfile(src / onnx_runner.MANIFEST_FILE, dst / onnx_runner.MANIFEST_FILE)
    shutil.copyfile(src / RUNNER_FILE, dst / RUNNER_FILE)
    return dst


@torch.no_grad()
def quantize_litert_calibrated(model: EarlyExitModel, thresholds: torch.Tensor, src: Path, dst: Path,
                               rows: EncodedSet | None, *, pad_id: int,
                               label_names: list[str] | None = None) -> dict[str, int]:
    """:func:`quantize_litert` of ``src`` (``model``'s fp32 file) into ``dst``, with the standardised
    earlier off-ramps calibrated on the int8 file's own features of ``rows``, as
    :func:`~dse.artifacts.onnx_export.quantize_onnx_calibrated` does for the ONNX int8 graphs.
    Returns how many off-ramps each step changed."""
    quantize_litert(src, dst)
    # the runner's interpreter maps the file written again below: it is closed on return
    calibrated, done = calibrate_deployed_off_ramps(model, lambda: onnx_runner.LiteRTEarlyExitRunner(dst), rows,
                                                    pad_id=pad_id)
    if calibrated is None:
        return done
    with tempfile.TemporaryDirectory() as tmp:
        seq_lens = json.loads((src / onnx_runner.MANIFEST_FILE).read_text())["seq_lens"]
        export_litert(calibrated, thresholds, Path(tmp), seq_lens=seq_lens, label_names=label_names)
        quantize_litert(Path(tmp), dst)  # the same int8 encoder: only the off-ramps differ
    return done


def litert_size_mb(folder: Path) -> float:
    """Bytes of the ``.tflite`` files in ``folder`` (MB)."""
    return sum(p.stat().st_size for p in folder.glob("*.tflite")) / 1e6
