"""Host runner for a deployed early-exit model: numpy plus onnxruntime (ONNX folders) or
ai_edge_litert (LiteRT folders) only; no torch, no dse.

This file is copied as it stands into every ONNX and LiteRT deploy folder (``early_exit_runner.py``),
so the deployable runs anywhere its runtime runs::

    from early_exit_runner import EarlyExitRunner
    runner = EarlyExitRunner("deploy/onnx_int8", threads=1)       # LiteRTEarlyExitRunner("deploy/litert_int8")
    logits, exit_layer = runner(input_ids, attention_mask, token_type_ids)   # int64 [batch, seq]

An ONNX folder holds ``embed.onnx`` (token ids -> hidden states), one ``layer_NN.onnx`` per encoder
layer (hidden states, attention mask -> next hidden states and that layer's off-ramp logits;
the attention-span mask is computed inside the graph) and ``runner.json`` (thresholds, labels).
A LiteRT folder holds one ``model.tflite`` with the same steps as signatures at batch 1, each at
a few fixed sequence lengths (``embed_32``, ``layer_01_32``, ...: a call runs at the shortest that
holds its rows, padded to it) and ``runner.json``.
The exit loop is here, on the host, the same for both (:class:`ExitLoop`): after each layer, the
rows whose off-ramp softmax entropy (nats) is strictly below that layer's threshold leave the batch
with those logits; the last layer always exits. Rows that left are never computed again, so early
exit saves real work at any batch size. (One graph per layer instead of ONNX ``If`` nodes: see
docs/outputs-export-deploy.md.) The runtimes are imported by the runner that needs them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MANIFEST_FILE", "EarlyExitRunner", "ExitLoop", "LiteRTEarlyExitRunner", "entropy_nats", "signature_name"]

MANIFEST_FILE = "runner.json"


def signature_name(step: str, seq_len: int) -> str:
    """A LiteRT file's signature of ``step`` (``embed``, ``layer_NN``) at ``seq_len`` tokens."""
    return f"{step}_{seq_len}"


def entropy_nats(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of softmax(logits) over the last axis (float64, stable form)."""
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=-1)


class ExitLoop:
    """The exit rule over a folder's manifest; a backend supplies ``_embed`` and ``_layer``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.meta: dict[str, Any] = json.loads((self.folder / MANIFEST_FILE).read_text())
        self.thresholds = np.asarray(self.meta["entropy_thresholds_nats"], dtype=np.float64)
        self.num_labels = int(self.meta["num_labels"])
        self.label_names: list[str] = list(self.meta.get("label_names") or [])
        if len(self.meta["layers"]) != len(self.thresholds):
            raise ValueError(f"{self.folder}: {len(self.meta['layers'])} layers but {len(self.thresholds)} thresholds")

    def _embed(self, input_ids: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _layer(self, index: int, hidden: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _start(self, input_ids: np.ndarray, attention_mask: np.ndarray,
               token_type_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        types = np.zeros_like(input_ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int64)
        return self._embed(input_ids, types), np.asarray(attention_mask, dtype=np.int64)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                 token_type_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exiting logits ``[batch, labels]`` (float32) and 1-based exit layers ``[batch]`` (int64)."""
        h, mask = self._start(input_ids, attention_mask, token_type_ids)
        b = h.shape[0]
        out_logits = np.zeros((b, self.num_labels), dtype=np.float32)
        out_layer = np.zeros(b, dtype=np.int64)
        alive = np.arange(b)
        last = len(self.thresholds) - 1
        for index in range(len(self.thresholds)):
            h, logits = self._layer(index, h, mask)
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
        seq = np.shape(input_ids)[1]
        h, mask = self._start(input_ids, attention_mask, token_type_ids)
        for index in range(len(self.thresholds)):
            h, logits = self._layer(index, h, mask)
            yield h[:, :seq], logits  # a fixed-length backend's padding positions are not returned


class EarlyExitRunner(ExitLoop):
    """The per-layer ONNX graphs of one deploy folder, run by onnxruntime."""

    def __init__(self, folder: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        super().__init__(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"])

        self.embed = session(self.meta["embed"])
        self.layers = [session(name) for name in self.meta["layers"]]

    def _embed(self, input_ids: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        return self.embed.run(None, {"input_ids": input_ids, "token_type_ids": token_type_ids})[0]

    def _layer(self, index: int, hidden: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, logits = self.layers[index].run(None, {"hidden": hidden, "attention_mask": attention_mask})
        return h, logits


class LiteRTEarlyExitRunner(ExitLoop):
    """One LiteRT ``.tflite`` file with a signature per step and sequence length, run by
    ``ai_edge_litert``'s interpreter.

    A call runs at the shortest of ``runner.json``'s ``seq_lens`` that holds its rows (columns
    past every row's last real token are dropped, the rest padded with ids and mask 0), one row
    at a time; longer rows are refused."""

    def __init__(self, folder: str | Path, *, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(folder)
        self.seq_lens = sorted(int(n) for n in self.meta["seq_lens"])
        self.seq_len = self.seq_lens[-1]
        self.interpreter = Interpreter(model_path=str(self.folder / self.meta["model"]), num_threads=threads)
        self.steps = {n: (self.interpreter.get_signature_runner(signature_name(self.meta["embed"], n)),
                          [self.interpreter.get_signature_runner(signature_name(name, n)) for name in self.meta["layers"]])
                      for n in self.seq_lens}
        embed, layers = self.steps[self.seq_len]
        # the converter stores int64 inputs as int32 (LiteRT's usual index type)
        self._dtypes = {name: d["dtype"] for name, d in embed.get_input_details().items()}
        self._mask_dtype = layers[0].get_input_details()["attention_mask"]["dtype"]
        self._length = self.seq_len  # the sequence length of the call in progress

    def _start(self, input_ids: np.ndarray, attention_mask: np.ndarray,
               token_type_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.asarray(attention_mask, dtype=np.int64)
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int64)
        used = np.flatnonzero(mask.any(axis=0))
        width = int(used[-1]) + 1 if len(used) else 1
        fits = [n for n in self.seq_lens if n >= width]
        if not fits:
            raise ValueError(f"{width} tokens: this LiteRT model takes at most {self.seq_len}")
        self._length = fits[0]

        def fit(x: np.ndarray) -> np.ndarray:
            return np.pad(x[:, :width], ((0, 0), (0, self._length - width)))

        return self._embed(fit(ids), fit(types)), fit(mask)

    def _embed(self, input_ids: np.ndarray, token_type_ids: np.ndarray) -> np.ndarray:
        embed = self.steps[self._length][0]
        ids, types = input_ids.astype(self._dtypes["input_ids"]), token_type_ids.astype(self._dtypes["token_type_ids"])
        return np.concatenate([embed(input_ids=ids[r:r + 1], token_type_ids=types[r:r + 1])["hidden"]
                               for r in range(len(ids))])

    def _layer(self, index: int, hidden: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        layer = self.steps[self._length][1][index]
        mask = attention_mask.astype(self._mask_dtype)
        outs = [layer(hidden=hidden[r:r + 1], attention_mask=mask[r:r + 1]) for r in range(len(hidden))]
        return np.concatenate([o["hidden_out"] for o in outs]), np.concatenate([o["logits"] for o in outs])
