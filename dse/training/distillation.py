"""Knowledge-distillation loss (EdgeBERT ``masked_run_highway_glue.py`` ``train``, §1.7).

    loss = α_ce · CE(student, labels) + α_kd · T² · KL( softmax(teacher / T) ‖ softmax(student / T) )

with EdgeBERT's defaults α_ce = 0.1, α_kd = 0.9, T = 2; the KL is averaged over the batch.
For a one-label regression head (STS-B) CE becomes MSE to the labels and the KD term MSE to
the teacher's output (our choice: there is no distribution to soften).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss"]


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha_ce: float = 0.1,
    alpha_kd: float = 0.9,
    temperature: float = 2.0,
) -> torch.Tensor:
    """Distillation loss of ``[batch, classes]`` logits against a (detached) teacher."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teacher_logits = teacher_logits.detach()
    if student_logits.shape[-1] == 1:
        ce = F.mse_loss(student_logits.squeeze(-1), labels.float())
        kd = F.mse_loss(student_logits, teacher_logits)
        return alpha_ce * ce + alpha_kd * kd
    ce = F.cross_entropy(student_logits, labels.long())
    kd = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean", log_target=True,
    )
    return alpha_ce * ce + alpha_kd * temperature**2 * kd
