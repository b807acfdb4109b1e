"""Where torch runs: resolving a study's ``device`` setting, and what changes with the device.

A study's ``device`` is ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or
``cuda:N``. Training (stage 1 of preparation and the compression-aware fine-tune) runs under
bf16 autocast on CUDA and in fp32 on CPU; evaluation (dev passes, faulty passes, DVFS train
entropies) runs in fp32 on every device, so that a design's dev predictions agree across
devices up to float noise (see docs/gpu.md). Models move to the device once; batches follow the
model they are fed to (:func:`model_device`), and results come back to the CPU.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from typing import Any

import torch

from torch import nn

from dse.config.study import DEVICE_PATTERN
from dse.errors import ConfigError

__all__ = ["DEVICE_PATTERN", "TRAIN_DTYPE", "EVAL_DTYPE", "device_class", "eval_batch_size", "gpu_index_for_ray",
           "model_device", "resolve_device", "train_autocast"]

TRAIN_DTYPE = torch.bfloat16  # autocast dtype of training on CUDA (CPU trains in fp32)
EVAL_DTYPE = torch.float32  # evaluation precision on every device: predictions must not depend on it


def resolve_device(spec: str, *, cuda_count: int | None = None) -> torch.device:
    """The torch device ``spec`` names (``auto``: CUDA when available); one ``ConfigError`` line
    when CUDA is asked for and not there (``cuda_count``: GPUs visible, default torch's count)."""
    if not re.match(DEVICE_PATTERN, spec):
        raise ConfigError(f"device {spec!r}: use auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if cuda_count is None else cuda_count
    if spec == "auto":
        return torch.device("cuda:0" if count > 0 else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    index = int(spec.partition(":")[2] or 0)
    if count == 0:
        raise ConfigError(f"device {spec!r}: no CUDA GPU is visible to torch here "
                          f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
                          f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use device: auto or cpu")
    if index >= count:
        raise ConfigError(f"device {spec!r}: only {count} CUDA GPU(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def device_class(device: torch.device | str) -> str:
    """``cpu`` or ``cuda``: what cache keys record (numbers differ between classes, not between GPUs)."""
    return torch.device(device).type


def eval_batch_size(device: torch.device | str) -> int:
    """Rows per evaluation batch: 64 on the CPU, 256 on CUDA, where a pass of 64-row batches is
    bound by kernel launches. A design's results do not depend on it (its activation scales are
    static, calibrated per design: ``dse.compression.apply.calibrate_activation_biases``) beyond
    float noise; a design calibrated without training rows scales per batch, and then does."""
    return 256 if torch.device(device).type == "cuda" else 64


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def train_autocast(device: torch.device | str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a training step on CUDA; nothing (fp32) on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=TRAIN_DTYPE)
    return contextlib.nullcontext()


def gpu_index_for_ray(assigned: Sequence[int | str], visible_at_init: Sequence[str] | None) -> int:
    """The torch CUDA index of the first GPU Ray assigned to this task.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the task's GPUs, but torch reads it once, when CUDA
    first initialises in the (reused) worker process: ``visible_at_init`` is that value, split
    (None: unset, every GPU visible, so the index is the physical id).
    """
    if not assigned:
        raise ConfigError("this task was given no GPU by Ray (gpus_per_trial is 0 for it)")
    first = str(assigned[0])
    if visible_at_init is None:
        return int(first)
    if first not in visible_at_init:
        raise ConfigError(f"Ray assigned GPU {first}, which this worker cannot see "
                          f"(CUDA_VISIBLE_DEVICES was {','.join(visible_at_init)} when CUDA started)")
    return list(visible_at_init).index(first)
