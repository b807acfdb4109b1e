"""Pruning during training: movement (learned scores) and magnitude masks on the encoder matmuls.

Each masked matrix gets a ``torch.nn.utils.parametrize`` parametrisation, so the HF module's
``weight`` becomes ``W ⊙ M`` wherever it is used — our functional encoder loop, HF's own
forward, and ALBERT's shared layer (one module applied N times has one parametrisation,
hence one mask per shared matrix). :class:`TrainingPruner` sets the fraction kept each step
(from the cubic schedule), optionally from one global ranking, and finally bakes the masks
into the weights and reports the sparsity achieved per matrix.

* ``"movement"``: ``M = TopK(S, k)`` over learned scores S with a straight-through gradient,
  so ``dL/dS = dL/dW' ⊙ W``. Scores start at ``|W|`` by default (ours): EdgeBERT's constant 0
  (``--mask_init constant --mask_scale 0``) needs thousands of warm-up steps to break the ties,
  and in a fine-tune of a few hundred steps tied scores prune by position. ``score_init=
  "constant"`` gives EdgeBERT's.
* ``"magnitude"``: ``M`` keeps the ``k`` largest ``|W|`` of the current weights; W itself is
  trained through ``W ⊙ M``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from dse.compression.pruning import TopKBinarizer, achieved_sparsity, magnitude_mask

__all__ = ["MaskedWeight", "PruningMethod", "ScoreInit", "TrainingPruner"]

PruningMethod = Literal["magnitude", "movement"]
ScoreInit = Literal["magnitude", "constant"]


class MaskedWeight(nn.Module):
    """Parametrisation ``W -> W ⊙ M(k)``; ``keep_fraction`` k is set from outside each step."""

    def __init__(self, weight: torch.Tensor, method: PruningMethod, score_init: ScoreInit = "magnitude") -> None:
        super().__init__()
        if method not in ("magnitude", "movement"):
            raise ValueError(f"unknown pruning method {method!r} (magnitude or movement)")
        if score_init not in ("magnitude", "constant"):
            raise ValueError(f"unknown score init {score_init!r} (magnitude or constant)")
        self.method = method
        self.keep_fraction = 1.0
        if method == "movement":
            init = weight.detach().abs() if score_init == "magnitude" else torch.zeros_like(weight)
            self.scores = nn.Parameter(init.clone())

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        if self.method == "movement":
            if self.keep_fraction >= 1.0:  # all kept: skip the sort, keep the straight-through gradient
                return 1.0 + (self.scores - self.scores.detach())
            return TopKBinarizer.apply(self.scores, self.keep_fraction)
        if self.keep_fraction >= 1.0:
            return torch.ones_like(weight)
        return magnitude_mask(weight, sparsity=1.0 - self.keep_fraction).to(weight.dtype)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask(weight)

    def ranking(self, weight: torch.Tensor) -> torch.Tensor:
        """What the mask ranks: the scores (movement) or ``|W|`` (magnitude), detached."""
        return self.scores.detach() if self.method == "movement" else weight.detach().abs()


class TrainingPruner:
    """Masks on the given linear modules (each distinct module once), driven by a keep fraction."""

    def __init__(self, linears: dict[str, nn.Linear], method: PruningMethod, *, global_topk: bool = False,
                 score_init: ScoreInit = "magnitude") -> None:
        self.method = method
        self.global_topk = global_topk
        self.modules: dict[str, nn.Linear] = {}
        for name, module in linears.items():
            if module in self.modules.values():  # ALBERT: a shared module is listed once
                continue
            parametrize.register_parametrization(module, "weight", MaskedWeight(module.weight, method, score_init))
            self.modules[name] = module

    def _param(self, module: nn.Linear) -> MaskedWeight:
        return module.parametrizations.weight[0]

    def score_parameters(self) -> list[nn.Parameter]:
        """The movement scores (their own optimiser group); empty for magnitude pruning."""
        return [self._param(m).scores for m in self.modules.values() if self.method == "movement"]

    @torch.no_grad()
    def set_keep_fraction(self, keep: float) -> None:
        """Keep ``keep`` of every matrix, or of all of them together with ``global_topk``."""
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep fraction must be in (0, 1], got {keep}")
        if not self.global_topk or keep >= 1.0:
            for m in self.modules.values():
                self._param(m).keep_fraction = keep
            return
        # One global ranking: each matrix keeps as many entries as it has in the global top-k.
        ranks = [self._param(m).ranking(m.parametrizations.weight.original).reshape(-1)
                 for m in self.modules.values()]
        flat = torch.cat([r.to(torch.float64) for r in ranks])
        kept = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        kept[torch.argsort(flat, descending=True, stable=True)[: round(keep * flat.numel())]] = True
        start = 0
        for m, r in zip(self.modules.values(), ranks, strict=True):
            count = int(kept[start : start + r.numel()].sum())
            # a matrix needs at least one kept entry for a (0, 1] fraction
            self._param(m).keep_fraction = max(count, 1) / r.numel()
            start += r.numel()

    @torch.no_grad()
    def bake(self) -> dict[str, float]:
        """Make the masks permanent (``W ← W ⊙ M``), drop the parametrisations; sparsity per matrix."""
        report: dict[str, float] = {}
        for name, m in self.modules.items():
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            report[name] = achieved_sparsity(m.weight)
        self.modules = {}
        return report
