"""Tests for dse.compression.pruning (edgebert.md §1.5). Expected values are worked out by hand."""

from __future__ import annotations

import pytest
import torch

from dse.compression.pruning import (
    TopKBinarizer,
    achieved_sparsity,
    cubic_sparsity_schedule,
    embedding_prune_schedule,
    global_magnitude_masks,
    magnitude_mask,
)


def b(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------
# magnitude_mask
# ---------------------------------------------------------------------------------------------


def test_magnitude_mask_hand_computed() -> None:
    w = torch.tensor([[0.1, -0.5, 0.3], [0.0, 0.9, -0.2]])
    # sparsity 0.5: keep round(0.5 * 6) = 3 largest |w|: 0.9 (1,1), 0.5 (0,1), 0.3 (0,2)
    assert torch.equal(magnitude_mask(w, sparsity=0.5), b([[False, True, True], [False, True, False]]))
    # sparsity 1/3: keep round(4.0) = 4: add 0.2 (1,2)
    assert torch.equal(magnitude_mask(w, sparsity=1 / 3), b([[False, True, True], [False, True, True]]))
    # sparsity 0: keep everything (including the exact zero)
    assert magnitude_mask(w, sparsity=0.0).all()
    m = magnitude_mask(w, sparsity=0.5)
    assert m.dtype == torch.bool and m.shape == w.shape


def test_magnitude_mask_ties_keep_lower_index() -> None:
    # All equal: keep round(0.5 * 4) = 2 -> the first two.
    assert torch.equal(magnitude_mask(torch.ones(4), sparsity=0.5), b([True, True, False, False]))
    # keep round(0.4 * 5) = 2: |-0.7| first, then a 3-way tie at 0.5 (idx 0, 1, 2) -> idx 0.
    w = torch.tensor([0.5, -0.5, 0.5, 0.2, -0.7])
    assert torch.equal(magnitude_mask(w, sparsity=0.6), b([True, False, False, False, True]))
    # Deterministic across calls.
    assert torch.equal(magnitude_mask(w, sparsity=0.6), magnitude_mask(w.clone(), sparsity=0.6))


def test_magnitude_mask_keep_count_rounding() -> None:
    w = torch.arange(1.0, 11.0)  # 10 weights, |w| = 1..10
    # (1 - 0.25) * 10 = 7.5 -> round half to even -> 8 kept (values 3..10)
    assert int(magnitude_mask(w, sparsity=0.25).sum()) == 8
    assert torch.equal(magnitude_mask(w, sparsity=0.25), w >= 3)
    # (1 - 0.75) * 10 = 2.5 -> 2 kept
    assert int(magnitude_mask(w, sparsity=0.75).sum()) == 2
    # (1 - 0.99) * 10 = 0.1 -> 0 kept
    assert not magnitude_mask(w, sparsity=0.99).any()


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.3, 0.5, 0.6, 0.9, 0.95])
def test_magnitude_mask_exact_counts_random(sparsity: float) -> None:
    w = torch.randn(37, 53, generator=torch.Generator().manual_seed(0))
    m = magnitude_mask(w, sparsity=sparsity)
    assert int(m.sum()) == round((1 - sparsity) * w.numel())
    if 0 < int(m.sum()) < w.numel():
        assert w.abs()[m].min() >= w.abs()[~m].max()
    assert achieved_sparsity(w * m) == pytest.approx(1 - int(m.sum()) / w.numel())


# ---------------------------------------------------------------------------------------------
# global_magnitude_masks
# ---------------------------------------------------------------------------------------------


def test_global_vs_local() -> None:
    weights = {"a": torch.tensor([1.0, -2.0, 3.0, 4.0]), "b": torch.tensor([0.1, 0.2, -0.3, 0.4])}
    # Global, sparsity 0.5: keep round(0.5 * 8) = 4 -> all of "a", nothing of "b".
    g = global_magnitude_masks(weights, sparsity=0.5)
    assert torch.equal(g["a"], b([True, True, True, True]))
    assert torch.equal(g["b"], b([False, False, False, False]))
    # Local: each tensor keeps its own top 2.
    for name, w in weights.items():
        assert torch.equal(magnitude_mask(w, sparsity=0.5), b([False, False, True, True]))


def test_global_ties_and_shapes() -> None:
    # keep round(0.25 * 4) = 1; |1| appears in both tensors -> the earlier tensor ("a") wins.
    g = global_magnitude_masks({"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([-1.0, 0.0])}, sparsity=0.75)
    assert torch.equal(g["a"], b([True, False])) and torch.equal(g["b"], b([False, False]))
    gen = torch.Generator().manual_seed(1)
    weights = {"q": torch.randn(8, 6, generator=gen), "ffn": torch.randn(12, 8, generator=gen) * 3}
    g = global_magnitude_masks(weights, sparsity=0.7)
    assert {k: v.shape for k, v in g.items()} == {k: v.shape for k, v in weights.items()}
    total = sum(w.numel() for w in weights.values())
    assert sum(int(m.sum()) for m in g.values()) == round(0.3 * total)
    kept = torch.cat([weights[k].abs()[g[k]] for k in weights])
    pruned = torch.cat([weights[k].abs()[~g[k]] for k in weights])
    assert kept.min() >= pruned.max()
    assert global_magnitude_masks({}, sparsity=0.5) == {}


# ---------------------------------------------------------------------------------------------
# TopKBinarizer (movement pruning)
# ---------------------------------------------------------------------------------------------


def test_topk_binarizer_forward_uses_signed_scores() -> None:
    scores = torch.tensor([0.3, -1.0, 2.0, 0.5])
    # k = 0.5: keep round(2) largest *scores*: 2.0, 0.5 (|-1.0| would win on magnitude).
    assert torch.equal(TopKBinarizer.apply(scores, 0.5), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    # k = 0.75: keep 3 -> 2.0, 0.5, 0.3
    assert torch.equal(TopKBinarizer.apply(scores, 0.75), torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert torch.equal(TopKBinarizer.apply(scores, 1.0), torch.ones(4))
    assert torch.equal(TopKBinarizer.apply(scores, 0.0), torch.zeros(4))
    s2 = torch.randn(6, 7, generator=torch.Generator().manual_seed(2))
    m2 = TopKBinarizer.apply(s2, 0.4)
    assert m2.shape == s2.shape and m2.dtype == s2.dtype
    assert int(m2.sum()) == round(0.4 * 42)


def test_topk_binarizer_ties() -> None:
    assert torch.equal(TopKBinarizer.apply(torch.zeros(4), 0.5), torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_topk_binarizer_straight_through_gradient() -> None:
    scores = torch.tensor([[0.3, -1.0], [2.0, 0.5]], requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0], [3.0, 4.5]])
    mask = TopKBinarizer.apply(scores, 0.5)
    (mask * upstream).sum().backward()
    # Gradient reaches every score unchanged, kept or pruned.
    assert torch.equal(scores.grad, upstream)

    # Typical use: masked weight W * mask(S); dL/dS = dL/d(mask) = grad_out * W.
    weight = torch.tensor([[0.5, -1.5], [2.0, 0.25]])
    scores2 = torch.zeros(2, 2, requires_grad=True)
    out = weight * TopKBinarizer.apply(scores2, 0.5)
    (g,) = torch.autograd.grad(out.sum(), scores2)
    assert torch.equal(g, weight)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------

CUBIC = dict(total_steps=1000, warmup_steps=100, initial_warmup=1, final_warmup=2, initial_density=1.0, final_density=0.5)
# a = 1 * 100 = 100, b = 2 * 100 = 200, T - a - b = 700


@pytest.mark.parametrize(
    "step,expected",
    [
        (0, 1.0),  # t <= a
        (100, 1.0),  # t == a: still initial
        (275, 0.7109375),  # (275-100)/700 = 0.25 -> 0.75^3 = 0.421875 -> 0.5 + 0.5*0.421875
        (450, 0.5625),  # midpoint: (450-100)/700 = 0.5 -> 0.5^3 = 0.125 -> 0.5 + 0.0625
        (800, 0.5),  # t == T - b: cubic branch, (1 - 700/700)^3 = 0 -> final
        (801, 0.5),  # t > T - b
        (1000, 0.5),
        (5000, 0.5),  # past the end: held
    ],
)
def test_cubic_schedule_values(step: int, expected: float) -> None:
    assert cubic_sparsity_schedule(step, **CUBIC) == expected


def test_cubic_schedule_just_after_warmup_and_edgebert_settings() -> None:
    # t = 101: 0.5 + 0.5 * (1 - 1/700)^3
    assert cubic_sparsity_schedule(101, **CUBIC) == pytest.approx(0.5 + 0.5 * (699 / 700) ** 3)
    # EdgeBERT SST-2: warmup 1000, initial_warmup 2, final_warmup 3 -> a = 2000, b = 3000;
    # with T = 10000 and keep 0.6: t = 3250 -> (1250/5000) = 0.25 -> 0.6 + 0.4 * 0.421875 = 0.76875
    kw = dict(total_steps=10000, warmup_steps=1000, initial_warmup=2, final_warmup=3, initial_density=1.0, final_density=0.6)
    assert cubic_sparsity_schedule(3250, **kw) == pytest.approx(0.76875)
    assert cubic_sparsity_schedule(2000, **kw) == 1.0
    assert cubic_sparsity_schedule(7001, **kw) == 0.6
    values = [cubic_sparsity_schedule(t, **kw) for t in range(0, 10001, 50)]
    assert all(y <= x for x, y in zip(values, values[1:]))  # monotone non-increasing


def test_cubic_schedule_degenerate_window_jumps() -> None:
    # a = 600 >= T - b = 500: no cubic phase; initial up to a, final after.
    kw = dict(total_steps=1000, warmup_steps=100, initial_warmup=6, final_warmup=5, initial_density=1.0, final_density=0.2)
    assert cubic_sparsity_schedule(600, **kw) == 1.0
    assert cubic_sparsity_schedule(601, **kw) == 0.2


def _edgebert_prune_schedule(n: int, percentile: float) -> list[float]:
    """The loop from masked_run_highway_glue.py main(), with n = num_train_epochs + 1 - start_epoch."""
    sched = [0.0 for _ in range(n)]
    start, end = int(0.1 * n), int(0.8 * n)
    ramp = end - start
    for i in range(start, end):
        sched[i] = float(i - start + 1) / ramp * (percentile - sched[0]) + sched[0]
    for i in range(end, n):
        sched[i] = percentile
    return sched


def test_embedding_schedule_hand_values() -> None:
    # E = 10, P = 60: start = 1, end = 8, ramp = 7
    f = lambda i: embedding_prune_schedule(i, epochs=10, final_percentile=60.0)  # noqa: E731
    assert f(0) == 0.0
    assert f(1) == pytest.approx(60 / 7)
    assert f(4) == pytest.approx(4 / 7 * 60)
    assert f(7) == 60.0  # end - 1: ramp complete
    assert f(8) == 60.0 and f(9) == 60.0 and f(15) == 60.0  # hold
    # E = 30 (SST-2 script, 30 epochs): start 3, end 24, ramp 21
    g = lambda i: embedding_prune_schedule(i, epochs=30, final_percentile=60.0)  # noqa: E731
    assert g(2) == 0.0 and g(3) == pytest.approx(60 / 21) and g(13) == pytest.approx(11 / 21 * 60)
    assert g(23) == 60.0
    # E = 5: start 0, end 4, ramp 4 -> 15, 30, 45, 60, 60
    assert [embedding_prune_schedule(i, epochs=5, final_percentile=60) for i in range(5)] == [15, 30, 45, 60, 60]
    # E = 1: empty ramp -> final from the start
    assert embedding_prune_schedule(0, epochs=1, final_percentile=20) == 20.0


@pytest.mark.parametrize("epochs", range(10, 61))
def test_embedding_schedule_matches_edgebert_loop(epochs: int) -> None:
    ref = _edgebert_prune_schedule(epochs, 60.0)
    ours = [embedding_prune_schedule(i, epochs=epochs, final_percentile=60.0) for i in range(epochs)]
    assert ours == pytest.approx(ref)


def test_embedding_schedule_short_runs_ignore_reference_quirk() -> None:
    # For E < 10, start = 0 and the EdgeBERT loop overwrites sched[0] (its ramp origin) on the
    # first iteration, so later entries ramp from P/ramp instead of 0. E = 4: start 0, end 3,
    # ramp 3; loop: 20, 2/3*(60-20)+20 = 46.67, 60, 60. We keep the documented linear ramp:
    # 20, 40, 60, 60.
    ours = [embedding_prune_schedule(i, epochs=4, final_percentile=60.0) for i in range(4)]
    assert ours == pytest.approx([20.0, 40.0, 60.0, 60.0])
    assert _edgebert_prune_schedule(4, 60.0) == pytest.approx([20.0, 140 / 3, 60.0, 60.0])


# ---------------------------------------------------------------------------------------------
# achieved_sparsity and validation
# ---------------------------------------------------------------------------------------------


def test_achieved_sparsity() -> None:
    assert achieved_sparsity(torch.tensor([0.0, 1.0, 0.0, -0.0, 2.0])) == 0.6
    assert achieved_sparsity(torch.ones(3, 3)) == 0.0
    assert achieved_sparsity(torch.zeros(2, 5)) == 1.0
    assert achieved_sparsity(torch.tensor([0, 3, 0, 0])) == 0.75
    assert achieved_sparsity(torch.empty(0)) == 0.0


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan")])
def test_bad_sparsity(sparsity: float) -> None:
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(torch.ones(4), sparsity=sparsity)
    with pytest.raises(ValueError, match="sparsity"):
        global_magnitude_masks({"a": torch.ones(4)}, sparsity=sparsity)


def test_other_validation() -> None:
    with pytest.raises(ValueError, match="NaN"):
        magnitude_mask(torch.tensor([1.0, float("nan")]), sparsity=0.5)
    with pytest.raises(ValueError, match="k"):
        TopKBinarizer.apply(torch.ones(4), 1.5)
    with pytest.raises(ValueError, match="k"):
        TopKBinarizer.apply(torch.ones(4), -0.1)
    with pytest.raises(ValueError, match="final_density"):
        cubic_sparsity_schedule(0, **{**CUBIC, "final_density": 1.2})
    with pytest.raises(ValueError, match="initial_density"):
        cubic_sparsity_schedule(0, **{**CUBIC, "initial_density": -0.1})
    with pytest.raises(ValueError, match="step"):
        cubic_sparsity_schedule(-1, **CUBIC)
    with pytest.raises(ValueError, match="total_steps"):
        cubic_sparsity_schedule(0, **{**CUBIC, "total_steps": -5})
    with pytest.raises(ValueError, match="warmup"):
        cubic_sparsity_schedule(0, **{**CUBIC, "final_warmup": -1})
    with pytest.raises(ValueError, match="epochs"):
        embedding_prune_schedule(0, epochs=0, final_percentile=60)
    with pytest.raises(ValueError, match="epoch"):
        embedding_prune_schedule(-1, epochs=10, final_percentile=60)
    with pytest.raises(ValueError, match="final_percentile"):
        embedding_prune_schedule(0, epochs=10, final_percentile=101)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.93])
def test_linear_time_top_k_matches_a_stable_sort(seed: int, sparsity: float) -> None:
    # small integers: many ties, so the lower-index rule is exercised
    w = torch.randint(-4, 5, (37, 23), generator=torch.Generator().manual_seed(seed)).float()
    keep = round((1 - sparsity) * w.numel())
    order = torch.argsort(w.abs().reshape(-1), descending=True, stable=True)
    expected = torch.zeros(w.numel(), dtype=torch.bool)
    expected[order[:keep]] = True
    assert torch.equal(magnitude_mask(w, sparsity=sparsity).reshape(-1), expected)
    presorted = w.abs().reshape(-1).sort().values  # what compress() caches per source model
    assert torch.equal(magnitude_mask(w, sparsity=sparsity, sorted_abs=presorted).reshape(-1), expected)
