"""The entropy early-exit rule on cached per-layer logits, and designs the hardware model rejects.

Owns :func:`early_exit_points` (a task's main metric when every row exits at the first layer
whose off-ramp entropy is below the threshold), :func:`predicted_exit_layers` (EdgeBERT's DVFS
input, fitted on the train-set entropies) and :class:`InvalidDesign`.
"""

from __future__ import annotations

import numpy as np
import torch

from dse.data.metrics import main_metric
from dse.evaluation.context import EvalContext
from dse.modeling.early_exit import entropy, simulate_early_exit
from dse.modeling.inference import predictions
from hwmodels import exit_layers_from_entropies, fit_exit_predictor

__all__ = ["InvalidDesign", "early_exit_points", "predicted_exit_layers"]


class InvalidDesign(ValueError):
    """The hardware model rejects the design (e.g. an eNVM configuration a source marks invalid)."""


def early_exit_points(task: str, layer_logits: torch.Tensor, labels: np.ndarray,
                      threshold: float | torch.Tensor) -> tuple[float, torch.Tensor]:
    """The task's main metric (points) under the entropy exit rule, and every row's exit layer.

    ``threshold`` is one entropy (nats) for every layer or one per layer.
    """
    exit_logits, exit_layers = simulate_early_exit(layer_logits, threshold)
    return 100 * main_metric(task, predictions(exit_logits), labels), exit_layers


def predicted_exit_layers(ctx: EvalContext, logits: torch.Tensor, threshold: float) -> np.ndarray:
    """EdgeBERT's DVFS input: each sentence's exit layer predicted from layer 1's entropy by a
    lookup table fitted on the training set's off-ramp entropies."""
    if ctx.train_entropy is None:
        raise InvalidDesign("DVFS needs training-set entropies, and this task has no train split")
    predictor = fit_exit_predictor(
        ctx.train_entropy[:, 0], exit_layers_from_entropies(ctx.train_entropy, threshold)
    )
    return predictor.predict(entropy(logits[0]).numpy())
