"""Weight-pruning primitives used by EdgeBERT (Tambe et al., MICRO 2021; harvard-acc/EdgeBERT
``masked_nn.py`` and ``masked_run_highway_glue.py``; movement pruning after Sanh et al., NeurIPS 2020).

* Magnitude pruning: keep the largest ``|w|`` (per tensor or with one global threshold).
* Movement pruning: :class:`TopKBinarizer` keeps the top fraction of learned scores and
  passes gradients straight through to the scores.
* Schedules: the cubic keep-fraction schedule ``τ(t)`` of ``schedule_threshold`` and the
  per-epoch embedding prune-percentile ramp.

Counting convention: keeping a fraction ``f`` of ``n`` weights keeps exactly
``round(f * n)`` of them (Python ``round``, i.e. half to even). Ties in magnitude (or
score) are broken deterministically by position: the earlier flat index is kept (for
global masks, earlier in the dict's iteration order first).
"""

from __future__ import annotations

import torch

__all__ = [
    "magnitude_mask",
    "global_magnitude_masks",
    "TopKBinarizer",
    "cubic_sparsity_schedule",
    "embedding_prune_schedule",
    "achieved_sparsity",
]


def _check_sparsity(sparsity: float) -> float:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return float(sparsity)


def _top_flat_mask(values: torch.Tensor, keep: int, *, sorted_values: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask over flat ``values`` marking the ``keep`` largest; ties -> lower index.

    ``sorted_values``: ``values`` sorted ascending, when the caller has them (then no selection
    pass is needed: the threshold is one lookup).
    """
    flat = values.reshape(-1)
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    if keep >= flat.numel():
        mask[:] = True
    elif keep > 0:
        # Same result as a stable descending sort, in linear time (a sort of an 11.7M-entry
        # embedding table dominated a trial): everything above the keep-th largest value, then
        # the lowest-index entries equal to it, so ties are deterministic.
        if sorted_values is not None:
            kth = sorted_values.reshape(-1)[flat.numel() - keep]
        else:
            kth = torch.kthvalue(flat, flat.numel() - keep + 1).values
        mask = flat > kth
        ties = torch.nonzero(flat == kth).reshape(-1)
        mask[ties[: keep - int(mask.sum())]] = True
    return mask


def _abs_for_ranking(weight: torch.Tensor, name: str) -> torch.Tensor:
    w = weight.detach()
    if w.is_floating_point() and bool(torch.isnan(w).any()):
        raise ValueError(f"{name} contains NaN; magnitudes cannot be ranked")
    return w.abs()


def magnitude_mask(weight: torch.Tensor, *, sparsity: float, sorted_abs: torch.Tensor | None = None) -> torch.Tensor:
    """Bool mask (shape of ``weight``) keeping the ``round((1 - sparsity) * numel)`` largest ``|w|``.

    ``sparsity`` is the fraction pruned, in [0, 1). Ties keep the lower flat index.
    ``sorted_abs``: ``|weight|`` flattened and sorted ascending, if already known.
    """
    sparsity = _check_sparsity(sparsity)
    keep = round((1.0 - sparsity) * weight.numel())
    if sorted_abs is not None and sorted_abs.numel() != weight.numel():
        raise ValueError(f"sorted_abs has {sorted_abs.numel()} entries, the weight {weight.numel()}")
    return _top_flat_mask(_abs_for_ranking(weight, "weight"), keep,
                          sorted_values=sorted_abs).reshape(weight.shape)


def global_magnitude_masks(
    weights: dict[str, torch.Tensor], *, sparsity: float
) -> dict[str, torch.Tensor]:
    """Masks from one global magnitude ranking across all tensors.

    Keeps the ``round((1 - sparsity) * total_numel)`` largest ``|w|`` over the union of the
    tensors, so layers with small weights lose more than layers with large ones. Ties keep
    the tensor earlier in ``weights``' order, then the lower flat index.
    """
    sparsity = _check_sparsity(sparsity)
    if not weights:
        return {}
    flats = [_abs_for_ranking(w, name).reshape(-1) for name, w in weights.items()]
    devices = {f.device for f in flats}
    if len(devices) > 1:
        raise ValueError(f"all weights must be on one device, got {sorted(map(str, devices))}")
    # Rank in float64 so mixed dtypes compare exactly.
    concat = torch.cat([f.to(torch.float64) for f in flats])
    keep = round((1.0 - sparsity) * concat.numel())
    mask = _top_flat_mask(concat, keep)
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name, w in weights.items():
        out[name] = mask[start : start + w.numel()].reshape(w.shape)
        start += w.numel()
    return out


class TopKBinarizer(torch.autograd.Function):
    """Movement-pruning binariser: keep the top ``k`` fraction of *scores* (not of ``|scores|``).

    ``TopKBinarizer.apply(scores, k)`` returns a 0/1 mask with the dtype and shape of
    ``scores`` where exactly ``round(k * numel)`` of the largest scores are 1 (ties keep the
    lower flat index). ``k`` is the fraction KEPT, in [0, 1]. Backward is straight-through:
    the upstream gradient is passed to ``scores`` unchanged (none to ``k``).
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, k: float) -> torch.Tensor:  # type: ignore[override]
        if not isinstance(k, (int, float)) or not 0.0 <= k <= 1.0:
            raise ValueError(f"k (fraction kept) must be in [0, 1], got {k!r}")
        keep = round(float(k) * scores.numel())
        mask = _top_flat_mask(scores.detach(), keep).reshape(scores.shape)
        return mask.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        return grad_output, None


def cubic_sparsity_schedule(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    initial_warmup: float,
    final_warmup: float,
    initial_density: float,
    final_density: float,
) -> float:
    """Fraction of weights KEPT at ``step``: EdgeBERT's ``schedule_threshold`` cubic ramp.

    With ``a = initial_warmup * warmup_steps``, ``b = final_warmup * warmup_steps`` and
    ``T = total_steps``::

        τ(t) = initial_density                                   if t <= a
             = final_density                                     if t > T - b
             = final_density + (initial_density - final_density)
                               * (1 - (t - a) / (T - a - b))^3   otherwise

    (If ``a >= T - b`` the cubic branch is never reached and τ jumps from initial to final.)
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if total_steps < 0 or warmup_steps < 0:
        raise ValueError(
            f"total_steps and warmup_steps must be >= 0, got {total_steps} and {warmup_steps}"
        )
    if initial_warmup < 0 or final_warmup < 0:
        raise ValueError(
            f"initial_warmup and final_warmup must be >= 0, got {initial_warmup} and {final_warmup}"
        )
    for name, density in (("initial_density", initial_density), ("final_density", final_density)):
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {density}")
    a = initial_warmup * warmup_steps
    b = final_warmup * warmup_steps
    if step <= a:
        return float(initial_density)
    if step > total_steps - b:
        return float(final_density)
    # Here a < step <= T - b, so T - a - b > 0.
    remaining = 1.0 - (step - a) / (total_steps - a - b)
    return float(final_density + (initial_density - final_density) * remaining**3)


def embedding_prune_schedule(epoch: int, *, epochs: int, final_percentile: float) -> float:
    """Embedding prune percentile for ``epoch`` (0-based index into an ``epochs``-long schedule).

    EdgeBERT (``main()``, ``prune_schedule``) uses ``start = floor(0.1 E)``,
    ``end = floor(0.8 E)``, ``ramp = end - start``::

        p(i) = 0                                          i < start
             = final_percentile * (i - start + 1) / ramp  start <= i < end
             = final_percentile                           i >= end (held; also past E)

    so the ramp reaches the final value at ``i = end - 1``. The floors are computed with
    integer arithmetic. Deviation: for ``E < 10`` (``start = 0``) the EdgeBERT loop
    overwrites its ramp origin ``sched[0]`` on the first iteration, so its later entries
    ramp from ``P / ramp`` rather than 0; we keep the linear ramp (identical for ``E >= 10``). In EdgeBERT, ``E = num_train_epochs + 1 - start_epoch`` and the
    index is ``epoch - start_epoch``. ``final_percentile`` is in percent, [0, 100].
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not 0.0 <= final_percentile <= 100.0:
        raise ValueError(f"final_percentile must be in [0, 100], got {final_percentile}")
    start = epochs // 10
    end = (8 * epochs) // 10
    if epoch < start:
        return 0.0
    if epoch >= end:
        return float(final_percentile)
    return float((epoch - start + 1) / (end - start) * final_percentile)


def achieved_sparsity(t: torch.Tensor) -> float:
    """Fraction of entries of ``t`` that are exactly zero (0.0 for an empty tensor)."""
    n = t.numel()
    if n == 0:
        return 0.0
    return float(n - int(torch.count_nonzero(t))) / n
