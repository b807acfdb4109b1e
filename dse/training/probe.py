"""Linear heads on frozen features: the linear probe and the stage-2 fit of a ``linear`` off-ramp.

:func:`fit_linear_probe` fits what scikit-learn's ``make_pipeline(StandardScaler(),
LogisticRegression(C=1))`` fits: features standardised with the training rows' mean and standard
deviation, then an L2-regularised logistic regression (binary: one weight vector; more classes:
multinomial), ``C * sum_i loss_i + ||W||^2 / 2``, solved with L-BFGS; a one-label (regression)
task gets ridge regression with the same penalty. A probe is the floor any off-ramp trained on
the same features should reach.

:func:`fit_linear_head` is how stage 2 trains a ``linear`` off-ramp: the same convex problem,
optionally with self-distillation from a teacher's soft labels in the loss, with ``C`` picked from
a small grid on a seeded tenth of the rows held out, then refitted on all rows. Convex and solved
to convergence, it does not depend on a learning rate or an epoch count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["C_GRID", "LinearProbe", "feature_standardisation", "fit_linear_head", "fit_linear_probe"]

C_GRID = (0.01, 0.1, 1.0)  # inverse L2 strengths tried by fit_linear_head (1.0: the plain probe)


@dataclass(frozen=True)
class LinearProbe:
    """A fitted linear head: standardisation and a linear map ``[hidden] -> [labels]``."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor  # [labels, hidden]
    bias: torch.Tensor  # [labels]
    c: float = 1.0
    kd_weight: float = 0.0  # the distillation weight the fit used (0: no teacher in its loss)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """``[rows, labels]`` logits (one column: the regression value) of ``[rows, hidden]`` features."""
        return ((feats.double().cpu() - self.mean) * self.scale) @ self.weight.T + self.bias


def feature_standardisation(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature ``(mean, 1 / std)`` of ``[rows, hidden]`` features (float64), the std floored at
    1 % of the median std so that a (nearly) constant feature is not blown up into noise."""
    x = feats.double()
    std = x.std(0, unbiased=False)
    floor = max(1e-2 * float(std.median()), 1e-12)
    return x.mean(0), 1.0 / std.clamp(min=floor)


def _solve(z: torch.Tensor, labels: torch.Tensor, num_labels: int, c: float, teacher: torch.Tensor | None,
           kd_weight: float, temperature: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of the head on standardised features ``z`` (float64)."""
    n, h = z.shape
    if num_labels == 1:  # ridge regression, closed form (bias not penalised); distillation mixes the targets
        y = labels.double()
        if teacher is not None and kd_weight > 0:
            y = (1 - kd_weight) * y + kd_weight * teacher.double()[:, 0]
        zm, ym = z.mean(0), y.mean()
        w = torch.linalg.solve((z - zm).T @ (z - zm) + torch.eye(h, dtype=torch.float64) / c, (z - zm).T @ (y - ym))
        return w[None], (ym - zm @ w)[None]
    y = labels.long()
    binary = num_labels == 2  # as scikit-learn: one weight vector (logistic), else one per class (softmax)
    rows = 1 if binary else num_labels
    w = torch.zeros(rows, h, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(rows, dtype=torch.float64, requires_grad=True)
    soft = None
    if teacher is not None and kd_weight > 0:
        soft = torch.log_softmax(teacher.double() / temperature, dim=-1)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def logits() -> torch.Tensor:
        out = z @ w.T + b
        return torch.cat([torch.zeros_like(out), out], dim=1) if binary else out

    def closure() -> torch.Tensor:
        opt.zero_grad()
        out = logits()
        data = F.cross_entropy(out, y, reduction="sum")
        if soft is not None:
            kd = F.kl_div(torch.log_softmax(out / temperature, dim=-1), soft, reduction="sum", log_target=True)
            data = (1 - kd_weight) * data + kd_weight * temperature**2 * kd
        loss = (data + (w * w).sum() / (2 * c)) / n
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    if binary:  # as two-class logits: [0, w.z + b]
        w, b = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b), b])
    return w, b


def fit_linear_probe(feats: torch.Tensor, labels: torch.Tensor, num_labels: int, *, c: float = 1.0,
                     teacher: torch.Tensor | None = None, kd_weight: float = 0.0, temperature: float = 2.0,
                     max_iter: int = 500) -> LinearProbe:
    """Fit a linear head on ``[rows, hidden]`` features (float64, deterministic).

    ``teacher``: ``[rows, labels]`` logits whose softened output (``temperature``) the head also
    matches, with weight ``kd_weight`` against the task loss's ``1 - kd_weight``. Fitted on the CPU
    whatever device the features are on (a float64 problem of hidden-size unknowns: small, and the
    same numbers on every machine); the probe comes back on the CPU.
    """
    feats, labels = feats.cpu(), labels.cpu()
    teacher = None if teacher is None else teacher.cpu()
    mean, scale = feature_standardisation(feats)
    z = (feats.double() - mean) * scale
    w, b = _solve(z, labels, num_labels, c, teacher, kd_weight, temperature, max_iter)
    return LinearProbe(mean, scale, w, b, c, kd_weight if teacher is not None else 0.0)


def _held_out_loss(probe: LinearProbe, feats: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    out = probe.logits(feats)
    if num_labels == 1:
        return float(F.mse_loss(out[:, 0], labels.double()))
    return float(F.cross_entropy(out, labels.long()))


def fit_linear_head(feats: torch.Tensor, labels: torch.Tensor, num_labels: int, *, seed: int = 0,
                    c_grid: Sequence[float] = C_GRID, teacher: torch.Tensor | None = None,
                    kd_weight: float = 0.0, temperature: float = 2.0) -> LinearProbe:
    """Stage 2 of a ``linear`` off-ramp: the L2 strength with the lowest task loss on a seeded tenth
    of the rows (fitted on the rest), then that head refitted on every row."""
    n = feats.shape[0]
    feats, labels = feats.cpu(), labels.cpu()
    teacher = None if teacher is None else teacher.cpu()
    kw = {"teacher": teacher, "kd_weight": kd_weight, "temperature": temperature}
    if len(c_grid) > 1 and n >= 20:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        held, fit = perm[: n // 10], perm[n // 10:]
        sub = {**kw, "teacher": None if teacher is None else teacher[fit]}
        losses = {c: _held_out_loss(fit_linear_probe(feats[fit], labels[fit], num_labels, c=c, **sub),
                                    feats[held], labels[held], num_labels) for c in c_grid}
        c = min(losses, key=losses.__getitem__)
    else:
        c = c_grid[-1]
    return fit_linear_probe(feats, labels, num_labels, c=c, **kw)
