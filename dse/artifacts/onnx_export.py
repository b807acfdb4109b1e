"""An early-exit model as per-layer ONNX graphs (fp32), and their onnxruntime int8 quantization.

``export_onnx(model, thresholds, folder)`` writes ``embed.onnx``, ``layer_NN.onnx`` (one per
encoder layer: that layer followed by its off-ramp, exported from the modules' own forward code
with ``torch.onnx.export(dynamo=True)``, batch and sequence length dynamic; a design's static
AdaptivFloat activation quantizers are in the graphs, so the fp32 graphs compute what its trial
scored), ``runner.json`` and a copy of :mod:`dse.artifacts.onnx_runner` (``early_exit_runner.py``),
which runs the folder with onnxruntime and does the exit loop on the host. ``quantize_onnx(src,
dst)`` writes the same folder with every graph dynamically quantized by onnxruntime: int8 weights
for every MatMul/Gemm (attention, feed-forward, pooler and classifier of every off-ramp) and every
embedding table (Gather), activations quantized per call.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from dse.artifacts import onnx_runner
from dse.artifacts.traceable import EmbedStep, LayerStep, traceable_copy
from dse.compression.offramp_calibration import calibrate_off_ramps_on_features, standardised_off_ramps
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel, pool_hidden
from dse.modeling.inference import layer_features

__all__ = ["EMBED_FILE", "RUNNER_FILE", "calibrate_deployed_off_ramps", "calibrate_off_ramps_for_runner", "export_onnx",
           "folder_size_mb", "layer_file", "quantize_onnx", "quantize_onnx_calibrated"]

EMBED_FILE = "embed.onnx"
RUNNER_FILE = "early_exit_runner.py"
QUANTIZED_OPS = ["MatMul", "Gemm", "Gather"]


def layer_file(index: int) -> str:
    return f"layer_{index + 1:02d}.onnx"


def _save_graph(module: nn.Module, args: tuple[torch.Tensor, ...], names: tuple[list[str], list[str]],
                dynamic: dict[str, dict[int, Any]], path: Path) -> None:
    module.eval()
    program = torch.onnx.export(module, args, input_names=names[0], output_names=names[1],
                                dynamic_shapes=dynamic, dynamo=True, verbose=False)
    proto = program.model_proto
    proto.graph.ClearField("value_info")  # stale intermediate shapes trip onnxruntime's quantizer
    for node in proto.graph.node:  # source stack traces per node: most of a small graph's bytes
        node.ClearField("metadata_props")
        node.ClearField("doc_string")
    onnx.save(proto, str(path))


@torch.no_grad()
def export_onnx(model: EarlyExitModel, thresholds: torch.Tensor, folder: Path, *,
                label_names: list[str] | None = None) -> Path:
    """Write the fp32 per-layer graphs of ``model`` with their runner into ``folder`` (not modified: a copy)."""
    spans = model.spans.clone()
    model = traceable_copy(model)
    folder.mkdir(parents=True, exist_ok=True)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=4096)
    ids = torch.ones(2, 8, dtype=torch.long)
    _save_graph(EmbedStep(model), (ids, torch.zeros_like(ids)), (["input_ids", "token_type_ids"], ["hidden"]),
                {"input_ids": {0: batch, 1: seq}, "token_type_ids": {0: batch, 1: seq}}, folder / EMBED_FILE)
    h = torch.zeros(2, 8, model.config.hidden_size)
    mask = torch.ones(2, 8, dtype=torch.long)
    for index in range(model.num_layers):
        _save_graph(LayerStep(model, index, spans[index]), (h, mask), (["hidden", "attention_mask"], ["hidden_out", "logits"]),
                    {"hidden": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}, folder / layer_file(index))
    _write_runner(folder, thresholds, model.num_labels, label_names)
    return folder


def _write_runner(folder: Path, thresholds: torch.Tensor, num_labels: int, label_names: list[str] | None) -> None:
    layers = [layer_file(i) for i in range(len(thresholds))]
    meta = {"embed": EMBED_FILE, "layers": layers, "num_labels": num_labels, "label_names": label_names or [],
            "entropy_thresholds_nats": [float(t) for t in thresholds],
            "exit_rule": "a row exits after the first layer whose off-ramp softmax entropy (nats) is strictly "
                         "below that layer's threshold; the last layer always exits"}
    (folder / onnx_runner.MANIFEST_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copyfile(onnx_runner.__file__, folder / RUNNER_FILE)


def quantize_onnx(src: Path, dst: Path) -> Path:
    """Write ``dst``: every graph of ``src`` dynamically quantized to int8 by onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    meta = json.loads((src / onnx_runner.MANIFEST_FILE).read_text())
    dst.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a "consider pre-processing" hint per graph
    try:
        for name in (meta["embed"], *meta["layers"]):
            # EnableSubgraph: graphs inside control-flow nodes are quantized too (none today)
            quantize_dynamic(src / name, dst / name, weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS,
                             extra_options={"EnableSubgraph": True})
    finally:
        root.setLevel(level)
    shutil.copyfile(src / onnx_runner.MANIFEST_FILE, dst / onnx_runner.MANIFEST_FILE)
    shutil.copyfile(src / RUNNER_FILE, dst / RUNNER_FILE)
    return dst


@torch.no_grad()
def quantize_onnx_calibrated(model: EarlyExitModel, thresholds: torch.Tensor, src: Path, dst: Path,
                             rows: EncodedSet | None, *, pad_id: int,
                             label_names: list[str] | None = None) -> dict[str, int]:
    """:func:`quantize_onnx` of ``src`` (``model``'s fp32 graphs) into ``dst``, with ``model``'s
    standardised earlier off-ramps calibrated for the int8 graphs on ``rows`` (a design's DVFS
    training rows): what the trial's calibration did for the chip's datapath
    (:mod:`dse.compression.offramp_calibration`), done again for onnxruntime's int8 one, whose
    per-call activation scales move the early layers' features by more than their spread. The
    off-ramps' inputs come from the int8 graphs themselves; their mean is compared with the
    fp32 model's on the same rows. Returns how many off-ramps each step changed."""
    quantize_onnx(src, dst)
    calibrated, done = calibrate_deployed_off_ramps(model, lambda: onnx_runner.EarlyExitRunner(dst), rows, pad_id=pad_id)
    if calibrated is None:
        return done
    with tempfile.TemporaryDirectory() as tmp:
        if not _replace_off_ramp_tensors(src, Path(tmp), model, calibrated):
            export_onnx(calibrated, thresholds, Path(tmp), label_names=label_names)
        quantize_onnx(Path(tmp), dst)  # the same int8 encoder: only the off-ramps differ
    return done


def calibrate_deployed_off_ramps(model: EarlyExitModel, open_runner: Callable[[], Any], rows: EncodedSet | None, *,
                                 pad_id: int) -> tuple[EarlyExitModel | None, dict[str, int]]:
    """:func:`calibrate_off_ramps_for_runner` on the runner ``open_runner()`` opens (an int8
    deployable, any backend), where there is something to calibrate: ``rows`` and standardised
    earlier off-ramps; otherwise None and no changes, without opening the runner. The runner is
    closed on return (LiteRT's maps a file the caller may write again)."""
    if rows is None or len(rows) == 0 or not standardised_off_ramps(model):
        return None, {"recentred_off_ramps": 0, "tempered_off_ramps": 0}
    return calibrate_off_ramps_for_runner(model, open_runner(), rows, pad_id=pad_id)


@torch.no_grad()
def calibrate_off_ramps_for_runner(model: EarlyExitModel, runner: onnx_runner.ExitLoop, rows: EncodedSet, *,
                                   pad_id: int) -> tuple[EarlyExitModel, dict[str, int]]:
    """A copy of ``model`` whose standardised earlier off-ramps are calibrated on the features
    ``runner`` (a deployed int8 folder, any backend) computes for ``rows``, one sentence at a time
    as deployed, against the fp32 model's mean features on the same rows; and how many off-ramps
    each step changed. The caller writes the deployable's off-ramps from the copy."""
    feats = torch.empty(model.num_layers, len(rows), model.config.hidden_size)
    for r, (ids, types) in enumerate(zip(rows.input_ids, rows.token_type_ids)):
        x = np.asarray([ids], dtype=np.int64)
        mask = np.ones_like(x)
        for i, (h, _) in enumerate(runner.layer_outputs(x, mask, np.asarray([types], dtype=np.int64))):
            feats[i, r] = pool_hidden(torch.from_numpy(h), torch.from_numpy(mask), model.pooling)[0]
    reference = layer_features(model, rows, pad_id).double().mean(1).cpu()
    calibrated = copy.deepcopy(model).eval()
    done, _ = calibrate_off_ramps_on_features(calibrated, feats, reference, torch.tensor(rows.labels))
    return calibrated, done


def _replace_off_ramp_tensors(src: Path, dst: Path, model: EarlyExitModel, calibrated: EarlyExitModel) -> bool:
    """Write into ``dst`` the fp32 graphs of ``src`` (exported from ``model``) with the tensors that
    off-ramp calibration changes replaced by ``calibrated``'s, by initializer name: the graphs
    :func:`export_onnx` would write for ``calibrated``, without exporting again (the exporter is
    most of a deploy's time). False where a graph does not hold every such tensor under its own
    name with ``model``'s value, alone (the exporter's optimizer may merge equal tensors): the
    caller then exports."""
    names = ("input_shift", "classifier.weight", "classifier.bias")  # what calibrate_off_ramps_on_features changes
    dst.mkdir(parents=True, exist_ok=True)
    changed = standardised_off_ramps(model)  # the calibration leaves the others alone
    for index in range(model.num_layers):
        if index not in changed:
            shutil.copyfile(src / layer_file(index), dst / layer_file(index))
            continue
        proto = onnx.load(str(src / layer_file(index)))
        inits = {t.name: t for t in proto.graph.initializer}
        ramp, new = model.off_ramps[index].state_dict(), calibrated.off_ramps[index].state_dict()
        others = [t for n, t in LayerStep(model, index, model.spans[index]).state_dict().items()
                  if not n.startswith("ramp.")]
        for name in names:
            init, old = inits.get(f"ramp.{name}"), ramp[name].cpu()
            if (init is None or not np.array_equal(onnx.numpy_helper.to_array(init), old.numpy())
                    or any(t.shape == old.shape and torch.equal(t.cpu(), old) for t in others)):
                return False
            init.CopyFrom(onnx.numpy_helper.from_array(new[name].cpu().numpy(), init.name))
        onnx.save(proto, str(dst / layer_file(index)))
    for name in (EMBED_FILE, onnx_runner.MANIFEST_FILE, RUNNER_FILE):
        shutil.copyfile(src / name, dst / name)
    return True


def folder_size_mb(folder: Path) -> float:
    """Bytes of the graphs in ``folder`` (MB)."""
    return sum(p.stat().st_size for p in folder.glob("*.onnx")) / 1e6

