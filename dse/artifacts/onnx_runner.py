"""Host runner for a deployed ONNX early-exit model: numpy + onnxruntime only, no torch, no dse.

This file is copied as it stands into every ONNX deploy folder (``early_exit_runner.py``), so
the deployable runs anywhere onnxruntime runs::

    from early_exit_runner import EarlyExitRunner
    runner = EarlyExitRunner("deploy/onnx_int8", threads=1)
    logits, exit_layer = runner(input_ids, attention_mask, token_type_ids)   # int64 [batch, seq]

The folder holds ``embed.onnx`` (token ids -> hidden states), one ``layer_NN.onnx`` per encoder
layer (hidden states, attention mask -> next hidden states and that layer's off-ramp logits;
the attention-span mask is computed inside the graph) and ``runner.json`` (thresholds, labels).
The exit loop is here, on the host: after each layer, the rows whose off-ramp softmax entropy
(nats) is strictly below that layer's threshold leave the batch with those logits; the last layer
always exits. Rows that left are never computed again, so early exit saves real work at any
batch size. (One graph per layer instead of ONNX ``If`` nodes: see docs/outputs-export-deploy.md.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

__all__ = ["MANIFEST_FILE", "EarlyExitRunner", "entropy_nats"]

MANIFEST_FILE = "runner.json"


def entropy_nats(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of softmax(logits) over the last axis (float64, stable form)."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=-1)


class EarlyExitRunner:
    """The per-layer graphs of one deploy folder and the exit loop that drives them."""

    def __init__(self, folder: str | Path, *, threads: int = 1) -> None:
        folder = Path(folder)
        meta = json.loads((folder / MANIFEST_FILE).read_text())
        self.thresholds = np.asarray(meta["entropy_thresholds_nats"], dtype=np.float64)
        self.num_labels = int(meta["num_labels"])
        self.label_names: list[str] = list(meta.get("label_names") or [])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])

        self.embed = session(meta["embed"])
        self.layers = [session(name) for name in meta["layers"]]
        if len(self.layers) != len(self.thresholds):
            raise ValueError(f"{folder}: {len(self.layers)} layer graphs but {len(self.thresholds)} thresholds")

    def _start(self, input_ids: np.ndarray, token_type_ids: np.ndarray | None) -> np.ndarray:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        types = np.zeros_like(input_ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int64)
        return self.embed.run(None, {"input_ids": input_ids, "token_type_ids": types})[0]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exiting logits ``[batch, labels]`` (float32) and 1-based exit layers ``[batch]`` (int64)."""
        h = self._start(input_ids, token_type_ids)
        mask = np.asarray(attention_mask, dtype=np.int64)
        b = h.shape[0]
        out_logits = np.zeros((b, self.num_labels), dtype=np.float32)
        out_layer = np.zeros(b, dtype=np.int64)
        alive = np.arange(b)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            h, logits = layer.run(None, {"hidden": h, "attention_mask": mask})
            done = entropy_nats(logits) < self.thresholds[index]
            if index == last:
                done[:] = True
            out_logits[alive[done]] = logits[done]
            out_layer[alive[done]] = index + 1
            keep = ~done
            if not keep.any():
                break
            alive, h, mask = alive[keep], h[keep], mask[keep]
        return out_logits, out_layer

    def layer_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                     token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """Every off-ramp's logits ``[layers, batch, labels]`` (no early exit)."""
        return np.stack([logits for _, logits in self.layer_outputs(input_ids, attention_mask, token_type_ids)])

    def layer_outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                      token_type_ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each layer's hidden states ``[batch, seq, hidden]`` and off-ramp logits, in order (no early exit)."""
        h = self._start(input_ids, token_type_ids)
        mask = np.asarray(attention_mask, dtype=np.int64)
        for layer in self.layers:
            h, logits = layer.run(None, {"hidden": h, "attention_mask": mask})
            yield h, logits
