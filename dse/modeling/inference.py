"""Batched inference: every off-ramp's logits over a tokenized row set, and predictions from logits."""

from __future__ import annotations

import numpy as np
import torch

from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.device import model_device
from dse.modeling.early_exit import EarlyExitModel

__all__ = ["dev_layer_logits", "predictions"]


@torch.inference_mode()
def dev_layer_logits(model: EarlyExitModel, enc: EncodedSet, *, pad_id: int, batch_size: int = 64) -> torch.Tensor:
    """Every off-ramp's logits for every row: ``[layers, rows, labels]`` in dataset order, on the CPU.

    Runs on the model's device, in fp32 (:data:`dse.modeling.device.EVAL_DTYPE`: no autocast).
    """
    model.eval()
    device = model_device(model)
    out = torch.empty(model.num_layers, len(enc), model.num_labels)
    for batch in iter_batches(enc, batch_size=batch_size, pad_id=pad_id):
        batch = batch.to(device)
        out[:, torch.as_tensor(batch.rows)] = model(
            batch.input_ids, batch.attention_mask, batch.token_type_ids
        ).float().cpu()
    return out


def predictions(logits: torch.Tensor) -> np.ndarray:
    """Class ids (or regression values for one-label tasks) from ``[..., labels]`` logits."""
    return (logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1)).numpy()
