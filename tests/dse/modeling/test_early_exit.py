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


def _thresholds(setting: str, ent: torch.Tensor) -> float | torch.Tensor:
    """A threshold setting and the exits it must give, chosen from the model's own entropies
    ``[layers, rows]`` with margins far above batch-size noise."""
    if setting == "none":
        return 0.0
    if setting == "first":
        return 10.0
    thr = torch.zeros(ent.shape[0])
    if setting == "second":  # nobody is sure enough at layer 1, everybody at layer 2
        thr[0], thr[1] = ent[0].min() - 1e-3, ent[1].max() + 1e-3
        return thr
    # "spread": the 2 surest rows exit at layer 1, the surest of the rest at 2, the others run on
    first = ent[0].sort().values
    thr[0] = (first[1] + first[2]) / 2
    rest = ent[1][ent[0] >= thr[0]].sort().values
    thr[1] = (rest[0] + rest[1]) / 2
    assert first[2] - first[1] > 1e-3 and rest[1] - rest[0] > 1e-3  # no knife edge
    return thr


EXPECTED = {"none": lambda n: [n] * 5, "first": lambda n: [1] * 5, "second": lambda n: [2] * 5,
            "spread": lambda n: [1, 1, 2, n, n]}


@pytest.mark.parametrize("setting", list(EXPECTED))
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_real_early_exit_matches_simulation(tiny_model: EarlyExitModel, tiny_batch, setting, batch_size) -> None:  # noqa: ANN001
    # Make the off-ramps confident at different layers so exits really spread out.
    torch.manual_seed(3)
    for ramp in tiny_model.off_ramps:
        ramp.classifier.weight.data.mul_(20)
    all_logits = tiny_model(**tiny_batch)
    threshold = _thresholds(setting, entropy(all_logits))
    sim_logits, sim_layers = simulate_early_exit(all_logits, threshold)
    # the setting exits where it says: mid-network settings really stop rows between layer 1 and the last
    assert sorted(sim_layers.tolist()) == EXPECTED[setting](tiny_model.num_layers)
    for start in range(0, 5, batch_size):
        part = {k: v[start : start + batch_size] for k, v in tiny_batch.items()}
        logits, layers = tiny_model.early_exit_forward(**part, threshold=threshold)
        assert torch.equal(layers, sim_layers[start : start + batch_size])
        assert torch.equal(logits.argmax(-1), sim_logits[start : start + batch_size].argmax(-1))


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


# ----- adaptive attention span -----------------------------------------------------------------


def _no_dropout(model: EarlyExitModel) -> EarlyExitModel:
    """Train mode without dropout, so train-mode outputs are deterministic."""
    model.config.attention_probs_dropout_prob = 0.0
    model.config.hidden_dropout_prob = 0.0
    for module in model.modules():  # the HF embeddings and the off-ramps own nn.Dropout modules
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_adaptive_span_one_per_attention_module(tiny_model: EarlyExitModel) -> None:
    spans = tiny_model.attach_adaptive_spans(max_span_tokens=16, ramp_tokens=2, init_tokens=1.0)
    # BERT, MobileBERT: one attention per layer; ALBERT: the one shared attention serves all 4 layers
    assert len(spans) == (1 if tiny_model.config.model_type == "albert" else 3)
    assert all(s.span_fraction.shape == (tiny_model.num_heads,) for s in spans.values())


@pytest.mark.parametrize("train_mode", [True, False])
def test_adaptive_span_active_at_every_batch_size(tiny_model: EarlyExitModel, tiny_batch, train_mode) -> None:  # noqa: ANN001
    """EdgeBERT skips its span mask unless the batch equals the training batch; ours never does."""
    model = _no_dropout(tiny_model).train(train_mode)
    base = model(**tiny_batch)
    model.attach_adaptive_spans(max_span_tokens=16, ramp_tokens=2, init_tokens=1.0)
    full = model(**tiny_batch)  # ragged last batch of a 4-row training batch: 5 rows
    assert not torch.allclose(full, base, atol=1e-4)
    for rows in ([0], [0, 1, 2, 3], [4]):  # batch size 1, the training batch size, the ragged rest
        n = int(tiny_batch["attention_mask"][rows].sum(1).max())
        part = model(**{k: v[rows, :n] for k, v in tiny_batch.items()})
        assert torch.allclose(part, full[:, rows], atol=1e-5)
        assert not torch.allclose(part, base[:, rows], atol=1e-4)


def test_adaptive_span_eval_uses_hard_mask_and_bakes(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    spans = tiny_model.attach_adaptive_spans(max_span_tokens=16, ramp_tokens=2, init_tokens=1.0)
    with torch.no_grad():
        for i, s in enumerate(spans.values()):
            s.span_fraction.copy_(torch.tensor([0.0, 0.1, 0.2, 1.0]) + 0.01 * i)
    learned = tiny_model(**tiny_batch)
    expected = torch.stack([s.hard_spans() for s in spans.values()])
    baked = tiny_model.bake_adaptive_spans()
    assert len(tiny_model.adaptive_spans) == 0
    if tiny_model.config.model_type != "albert":  # one attention per layer
        assert torch.equal(baked, expected)
    else:  # shared attention: every layer position gets the same spans
        assert torch.equal(baked, expected.expand(4, -1))
    # head 0: ceil(0 + 2) - 1 = 1; head 1 (BERT/MobileBERT layer 0): ceil(1.6 + 2) - 1 = 3
    assert baked[0, 0].item() == 1.0 and baked[0, 1].item() == 3.0
    assert torch.allclose(tiny_model(**tiny_batch), learned, atol=1e-6)


def test_gradients_reach_the_span_through_the_model(tiny_model: EarlyExitModel, tiny_batch) -> None:  # noqa: ANN001
    model = _no_dropout(tiny_model).train()
    spans = model.attach_adaptive_spans(max_span_tokens=16, ramp_tokens=4, init_tokens=2.5)
    model.final_logits(**tiny_batch).square().sum().backward()
    for s in spans.values():
        assert s.span_fraction.grad is not None and bool((s.span_fraction.grad != 0).all())


@pytest.mark.parametrize("variant", [
    {"use_bottleneck_attention": True},
    {"key_query_shared_bottleneck": False, "intra_bottleneck_size": 32},  # HF needs B = H for it
    {"use_bottleneck": False, "normalization_type": "layer_norm", "trigram_input": False, "embedding_size": 32},
    {"num_feedforward_networks": 1},
])
def test_mobilebert_variants_match_huggingface(variant, tiny_batch) -> None:  # noqa: ANN001
    """Every MobileBERT layer layout the config allows, not only the released one, runs as HF's does."""
    from transformers import MobileBertConfig, MobileBertModel

    torch.manual_seed(0)
    cfg = MobileBertConfig(**{"vocab_size": 100, "embedding_size": 16, "hidden_size": 32, "intra_bottleneck_size": 16,
                              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                              "max_position_embeddings": 64, "initializer_range": 0.15} | variant)
    model = EarlyExitModel(MobileBertModel(cfg), num_labels=2).eval()
    *_, ours = model.hidden_states(**tiny_batch)
    theirs = model.backbone(**tiny_batch).last_hidden_state
    valid = tiny_batch["attention_mask"].bool()
    assert torch.allclose(ours[valid], theirs[valid], atol=1e-5)


def test_mobilebert_layer_runs_its_stacked_ffns(tiny_batch) -> None:  # noqa: ANN001
    """The loop really goes through MobileBERT's extra FFNs: changing one changes the output."""
    from tests.conftest import tiny_backbone

    model = EarlyExitModel(tiny_backbone("mobilebert"), num_labels=2).eval()
    base = model(**tiny_batch)
    with torch.no_grad():
        model.backbone.encoder.layer[0].ffn[0].output.dense.weight.mul_(2.0)
    assert not torch.allclose(base, model(**tiny_batch), atol=1e-4)
