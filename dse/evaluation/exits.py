"""The entropy early-exit rule on cached per-layer logits, and designs the hardware model rejects.

Owns :func:`early_exit_points` (a task's main metric when every row exits at the first layer
whose off-ramp entropy is below the threshold), :func:`exit_predictor` (EdgeBERT's DVFS lookup
table, fitted on the design's own model's training-row entropies), :func:`predicted_exit_layers`
(its prediction for each dev row) and :class:`InvalidDesign`.
"""

from __future__ import annotations

import numpy as np
import torch

from dse.data.metrics import main_metric
from dse.compression.spec import CompressionSpec
from dse.evaluation.cache import design_arrays
from dse.evaluation.context import EvalContext
from dse.modeling.early_exit import entropy, simulate_early_exit
from dse.modeling.inference import predictions
from hwmodels import ExitPredictor, exit_layers_from_entropies, fit_exit_predictor

__all__ = ["InvalidDesign", "early_exit_points", "exit_predictor", "predicted_exit_layers"]


class InvalidDesign(ValueError):
    """The hardware model rejects the design (e.g. an eNVM configuration a source marks invalid)."""


def early_exit_points(task: str, layer_logits: torch.Tensor, labels: np.ndarray,
                      threshold: float | torch.Tensor) -> tuple[float, torch.Tensor]:
    """The task's main metric (points) under the entropy exit rule, and every row's exit layer.

    ``threshold`` is one entropy (nats) for every layer or one per layer.
    """
    exit_logits, exit_layers = simulate_early_exit(layer_logits, threshold)
    return 100 * main_metric(task, predictions(exit_logits), labels), exit_layers


def exit_predictor(train_entropy: np.ndarray, threshold: float) -> ExitPredictor:
    """EdgeBERT's DVFS lookup table (layer-1 entropy -> exit layer) for ``threshold``, fitted on
    ``train_entropy`` (``[training rows, layers]`` off-ramp entropies of the design's own model)."""
    if len(train_entropy) == 0:
        raise InvalidDesign("DVFS needs training-set entropies, and this task has no train split")
    return fit_exit_predictor(train_entropy[:, 0], exit_layers_from_entropies(train_entropy, threshold))


def predicted_exit_layers(ctx: EvalContext, spec: CompressionSpec, logits: torch.Tensor,
                          threshold: float) -> np.ndarray:
    """EdgeBERT's DVFS input: each dev sentence's exit layer predicted from layer 1's entropy by
    the lookup table fitted on the training rows' entropies of ``spec``'s own (compressed,
    re-trained) model: the model the chip runs, never the dev rows it is scored on (cached with
    its logits)."""
    arrays, _ = design_arrays(ctx, spec)
    return exit_predictor(arrays["train_entropy"], threshold).predict(entropy(logits[0]).numpy())
