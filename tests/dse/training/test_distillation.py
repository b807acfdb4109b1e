"""Distillation loss against a hand-computed value."""

from __future__ import annotations

import math

import pytest
import torch

from dse.training.distillation import distillation_loss


def test_distillation_loss_hand_computed() -> None:
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[2 * math.log(3), 0.0]])  # teacher / T = [ln 3, 0] -> p = [3/4, 1/4]
    labels = torch.tensor([0])
    # CE(uniform, 0) = ln 2; KL([3/4, 1/4] || [1/2, 1/2]) = 3/4 ln(3/2) + 1/4 ln(1/2)
    #   = 0.75 * 0.4054651 - 0.25 * 0.6931472 = 0.3040988 - 0.1732868 = 0.1308120
    # loss = 0.1 * 0.6931472 + 0.9 * 4 * 0.1308120 = 0.0693147 + 0.4709232 = 0.5402379
    assert distillation_loss(student, teacher, labels).item() == pytest.approx(0.5402379, abs=1e-6)
    # alpha_kd = 0: plain cross-entropy; identical teacher and student: KL = 0
    assert distillation_loss(student, teacher, labels, alpha_ce=1.0, alpha_kd=0.0).item() == pytest.approx(math.log(2))
    assert distillation_loss(teacher, teacher, labels, alpha_ce=0.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_averages_over_the_batch_and_is_temperature_scaled() -> None:
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[math.log(3), 0.0], [math.log(3), 0.0]])  # T = 1: p = [3/4, 1/4]
    loss = distillation_loss(student, teacher, torch.tensor([0, 1]), alpha_ce=0.0, alpha_kd=1.0, temperature=1.0)
    assert loss.item() == pytest.approx(0.1308120, abs=1e-6)  # batch mean of two equal rows, T² = 1


def test_teacher_gets_no_gradient() -> None:
    student = torch.zeros(1, 2, requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0]], requires_grad=True)
    distillation_loss(student, teacher, torch.tensor([1])).backward()
    assert teacher.grad is None and student.grad is not None
