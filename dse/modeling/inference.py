"""Batched inference: every off-ramp's logits over a tokenized row set, and predictions from logits."""

from __future__ import annotations

import numpy as np
import torch

from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.device import eval_batch_size, model_device
from dse.modeling.early_exit import EarlyExitModel

__all__ = ["dev_layer_logits", "layer_features", "predictions"]


@torch.inference_mode()
def dev_layer_logits(model: EarlyExitModel, enc: EncodedSet, *, pad_id: int,
                     batch_size: int | None = None) -> torch.Tensor:
    """Every off-ramp's logits for every row: ``[layers, rows, labels]`` in dataset order, on the CPU.

    Runs on the model's device, in fp32 (:data:`dse.modeling.device.EVAL_DTYPE`: no autocast), in
    length-sorted batches of ``batch_size`` rows (None: :func:`dse.modeling.device.eval_batch_size`).
    """
    model.eval()
    device = model_device(model)
    batch_size = batch_size or eval_batch_size(device)
    out = torch.empty(model.num_layers, len(enc), model.num_labels)
    for batch in iter_batches(enc, batch_size=batch_size, pad_id=pad_id):
        batch = batch.to(device)
        out[:, torch.as_tensor(batch.rows)] = model(
            batch.input_ids, batch.attention_mask, batch.token_type_ids
        ).float().cpu()
    return out


@torch.inference_mode()
def layer_features(model: EarlyExitModel, enc: EncodedSet, pad_id: int) -> torch.Tensor:
    """Every layer's off-ramp input (the model's pooling: [CLS] or token mean),
    ``[layers, rows, hidden]`` in dataset order (fp32, on the model's device: stage 2 trains there)."""
    model.eval()
    device = model_device(model)
    out = torch.empty(model.num_layers, len(enc), model.config.hidden_size, device=device)
    for batch in iter_batches(enc, batch_size=64, pad_id=pad_id):
        batch = batch.to(device)
        out[:, torch.as_tensor(batch.rows, device=device)] = model.pooled_features(
            batch.input_ids, batch.attention_mask, batch.token_type_ids
        )
    return out


def predictions(logits: torch.Tensor) -> np.ndarray:
    """Class ids (or regression values for one-label tasks) from ``[..., labels]`` logits."""
    return (logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1)).numpy()
