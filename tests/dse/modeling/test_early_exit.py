"""The functional encoder loop, off-ramps, span mask and real early exit."""

from __future__ import annotations

import math

import pytest
import torch

from dse.modeling.early_exit import EarlyExitModel, entropy, simulate_early_exit


def test_entropy_matches_edgebert_formula() -> None:
    x = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]])
    e = torch.exp(x)
    # EdgeBERT: ln(sum e^x) - sum(x e^x) / sum(e^x)
    expected = torch.log(e.sum(-1)) - (x * e).sum(-1) / e.sum(-1)
    assert torch.allclose(entropy(x), expected, atol=1e-6)
    assert entropy(x)[1].item() == pytest.approx(math.log(3))  # uniform -> ln C


def test_encoder_loop_matches_huggingface(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    *_, ours = tiny_model.hidden_states(**tiny_batch)
    theirs = tiny_model.backbone(**tiny_batch).last_hidden_state
    valid = tiny_batch["attention_mask"].bool()
    assert torch.allclose(ours[valid], theirs[valid], atol=1e-5)


def test_forward_gives_one_logit_set_per_layer(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    logits = tiny_model(**tiny_batch)
    assert logits.shape == (tiny_model.num_layers, 5, 2)
    assert torch.allclose(logits[-1], tiny_model.final_logits(**tiny_batch), atol=1e-6)


def test_padding_does_not_change_results(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    full = tiny_model(**tiny_batch)
    n = int(tiny_batch["attention_mask"][1].sum())
    alone = tiny_model(**{k: v[1:2, :n] for k, v in tiny_batch.items()})
    assert torch.allclose(full[:, 1], alone[:, 0], atol=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 0.6, 0.69, 10.0])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_real_early_exit_matches_simulation(tiny_model: EarlyExitModel, tiny_batch, threshold, batch_size) -> None:  # noqa: ANN001
    # Make the off-ramps confident at different layers so exits really spread out.
    torch.manual_seed(3)
    for ramp in tiny_model.off_ramps:
        ramp.classifier.weight.data.mul_(20)
    sim_logits, sim_layers = simulate_early_exit(tiny_model(**tiny_batch), threshold)
    for start in range(0, 5, batch_size):
        part = {k: v[start : start + batch_size] for k, v in tiny_batch.items()}
        logits, layers = tiny_model.early_exit_forward(**part, threshold=threshold)
        assert torch.equal(layers, sim_layers[start : start + batch_size])
        assert torch.equal(logits.argmax(-1), sim_logits[start : start + batch_size].argmax(-1))
    if threshold == 0.0:
        assert (sim_layers == tiny_model.num_layers).all()
    if threshold == 10.0:
        assert (sim_layers == 1).all()


def test_simulation_uses_first_layer_below_threshold() -> None:
    confident, unsure = [5.0, -5.0], [0.0, 0.0]
    logits = torch.tensor([[unsure, confident], [confident, unsure], [unsure, unsure]])  # [3 layers, 2 rows, 2]
    out, layers = simulate_early_exit(logits, 0.1)
    assert layers.tolist() == [2, 1]
    assert torch.equal(out, torch.tensor([confident, confident]))


def test_span_mask_is_active_and_batch_independent(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    base = tiny_model(**tiny_batch)
    tiny_model.spans.fill_(2.0)
    masked = tiny_model(**tiny_batch)
    assert not torch.allclose(base, masked)
    n = int(tiny_batch["attention_mask"][0].sum())
    alone = tiny_model(**{k: v[:1, :n] for k, v in tiny_batch.items()})
    assert torch.allclose(masked[:, 0], alone[:, 0], atol=1e-5)
    tiny_model.spans.fill_(100.0)  # longer than any row: the same as no mask
    assert torch.allclose(base, tiny_model(**tiny_batch), atol=1e-5)


def test_rejects_other_architectures() -> None:
    from transformers import GPT2Config, GPT2Model

    with pytest.raises(ValueError, match="unsupported model type"):
        EarlyExitModel(GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2)), num_labels=2)
