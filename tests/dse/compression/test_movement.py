"""Masks during training: straight-through scores, magnitude masks, placement, global top-k, baking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dse.compression.apply import embedding_tables, encoder_linears
from dse.compression.movement import TrainingPruner
from dse.compression.pruning import achieved_sparsity
from dse.modeling.early_exit import EarlyExitModel


def linear(weight: list[list[float]]) -> nn.Linear:
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight))
    return lin


W = [[0.5, -1.0], [2.0, 0.25]]


def test_movement_topk_straight_through_gradients() -> None:
    lin = linear(W)
    pruner = TrainingPruner({"lin": lin}, "movement")
    (scores,) = pruner.score_parameters()
    with torch.no_grad():
        scores.copy_(torch.tensor([[0.3, -0.1], [0.0, 0.2]]))
    pruner.set_keep_fraction(0.5)  # keep round(0.5 * 4) = 2 highest scores: 0.3 (0,0), 0.2 (1,1)
    assert torch.equal(lin.weight, torch.tensor([[0.5, 0.0], [0.0, 0.25]]))
    lin(torch.ones(1, 2)).sum().backward()
    # L = sum(W' x), x = 1 -> dL/dW' = 1; straight-through: dL/dS = dL/dW' * W for EVERY entry
    assert torch.equal(scores.grad, torch.tensor(W))
    # dL/dW = dL/dW' * M
    assert torch.equal(lin.parametrizations.weight.original.grad, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_movement_scores_get_gradients_while_dense() -> None:
    lin = linear(W)
    pruner = TrainingPruner({"lin": lin}, "movement")
    lin(torch.ones(1, 2)).sum().backward()  # keep fraction 1: mask of ones, gradient still flows
    assert torch.equal(lin.weight, torch.tensor(W))
    assert torch.equal(pruner.score_parameters()[0].grad, torch.tensor(W))


def test_magnitude_mask_follows_current_weights() -> None:
    lin = linear(W)
    pruner = TrainingPruner({"lin": lin}, "magnitude")
    assert pruner.score_parameters() == []
    pruner.set_keep_fraction(0.5)  # the two largest |w|: 2.0 and -1.0
    assert torch.equal(lin.weight, torch.tensor([[0.0, -1.0], [2.0, 0.0]]))
    with torch.no_grad():
        lin.parametrizations.weight.original[0, 0] = 3.0
    assert torch.equal(lin.weight, torch.tensor([[3.0, 0.0], [2.0, 0.0]]))


def test_global_topk_hand_computed() -> None:
    small, large = linear([[1.0, 2.0], [3.0, 4.0]]), linear([[5.0, 6.0], [7.0, 8.0]])
    pruner = TrainingPruner({"small": small, "large": large}, "magnitude", global_topk=True)
    pruner.set_keep_fraction(0.75)  # top 6 of 8: 8, 7, 6, 5 (all of large), 4, 3 (half of small)
    assert torch.equal(small.weight, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert torch.equal(large.weight, torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
    assert pruner.bake() == {"small": 0.5, "large": 0.0}


def test_masks_sit_on_the_edgebert_matrices_and_bake(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    keys = set(tiny_model.state_dict())
    tables = {n: e.weight.clone() for n, e in embedding_tables(tiny_model).items()}
    dense = tiny_model(**tiny_batch)
    pruner = TrainingPruner(encoder_linears(tiny_model), "magnitude")
    parametrized = {n for n, m in tiny_model.named_modules() if parametrize_is(m)}
    # BERT: Q, K, V, attention output, intermediate, output in each of 3 layers; ALBERT: the
    # 6 shared matrices once, applied by all 4 layer positions; MobileBERT: those 6, its 3
    # bottlenecks and 2 per extra stacked FFN (1 here) in each of 3 layers
    expected = {"bert": 18, "albert": 6, "mobilebert": 33}[tiny_model.config.model_type]
    assert len(pruner.modules) == len(parametrized) == expected
    assert all(".encoder." in f".{n}" for n in parametrized)
    assert not any(n.startswith(("off_ramps", "backbone.pooler", "backbone.embeddings")) for n in parametrized)
    pruner.set_keep_fraction(0.4)
    assert not torch.allclose(tiny_model(**tiny_batch), dense)
    report = pruner.bake()
    assert len(report) == expected
    for name, lin in encoder_linears(tiny_model).items():
        # exactly round(0.4 n) kept (random weights: no exact zeros before)
        assert achieved_sparsity(lin.weight) == pytest.approx(1 - round(0.4 * lin.weight.numel()) / lin.weight.numel())
    assert all(s == pytest.approx(0.6, abs=0.01) for s in report.values())
    assert set(tiny_model.state_dict()) == keys  # plain weights again: save_pretrained is unchanged
    for name, emb in embedding_tables(tiny_model).items():  # embeddings are not encoder masks
        assert torch.equal(emb.weight, tables[name])


def parametrize_is(module: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    return parametrize.is_parametrized(module)


def test_movement_scores_start_from_magnitude_or_zero() -> None:
    lin = linear(W)
    pruner = TrainingPruner({"lin": lin}, "movement")  # default: scores = |W|
    assert torch.equal(pruner.score_parameters()[0].detach(), torch.tensor(W).abs())
    pruner.set_keep_fraction(0.5)  # before any step the movement mask is the magnitude mask
    assert torch.equal(lin.weight, torch.tensor([[0.0, -1.0], [2.0, 0.0]]))
    other = linear(W)
    zero = TrainingPruner({"lin": other}, "movement", score_init="constant")  # EdgeBERT's constant 0
    assert torch.equal(zero.score_parameters()[0].detach(), torch.zeros(2, 2))
