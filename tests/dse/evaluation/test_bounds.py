"""Hardware-only bounds: exact area and memory, a latency lower bound, and no model run for them.

The contexts are the tiny real ones (random-weight BERT, synthetic dev rows); a guard hook makes
the model raise if anything runs it, so a bound that needed the model would fail here.
"""

from __future__ import annotations

import pytest
import torch

from dse.compression.spec import CompressionSpec
from dse.evaluation import EvalContext, MultiTaskContext, evaluate_trial, hardware_bounds
from dse.evaluation.bounds import optimistic_profile
from dse.evaluation.score import compression_profile

from ..tiny_eval import tiny_config, tiny_context


class ModelRan(RuntimeError):
    pass


def guard_model(ctx: EvalContext) -> EvalContext:
    """``ctx`` whose model raises when run (every forward pass goes through the embeddings)."""
    def refuse(module: torch.nn.Module, args: tuple) -> None:  # noqa: ARG001
        raise ModelRan("the model ran")

    ctx.model.backbone.embeddings.register_forward_pre_hook(refuse)
    return ctx


DESIGNS = [{"vmac_lanes": 4}, {"vmac_lanes": 64, "encoder_pruning": 0.5},
           {"envm_cell": "pcm", "voltage_v": 0.5, "attention_span": 8, "embedding_pruning": 0.5}]


@pytest.mark.parametrize("params", DESIGNS)
def test_bounds_match_the_full_evaluation_without_running_the_model(params: dict) -> None:
    knobs = tiny_config().knob_values(params)
    full = evaluate_trial(tiny_context(None), knobs).metrics
    bounds = hardware_bounds(guard_model(tiny_context(None, baseline_points=50.0)), knobs)
    assert bounds.invalid_reason is None
    assert bounds.area_mm2 == pytest.approx(full["area_mm2"])
    assert bounds.memory_mb == pytest.approx(full["memory_mb"])
    assert 0 < bounds.min_latency_ms <= full["latency_ms"]


def test_the_guard_does_stop_a_model_run() -> None:
    with pytest.raises(ModelRan):
        evaluate_trial(guard_model(tiny_context(None, baseline_points=50.0)), tiny_config().knob_values({}))


def test_latency_bound_is_the_layer_one_exit_even_under_dvfs() -> None:
    ctx = guard_model(tiny_context(None, baseline_points=50.0))
    knobs = tiny_config().knob_values({})
    plain = hardware_bounds(ctx, knobs)
    # DVFS only sets the voltage of layers 2..; with every sentence out after layer 1 it changes nothing
    assert hardware_bounds(ctx, {**knobs, "dvfs": True, "latency_target_ms": 1.0}).min_latency_ms == \
        pytest.approx(plain.min_latency_ms)


def test_training_time_knobs_need_no_trained_model() -> None:
    knobs = tiny_config().knob_values({"pruning_method": "magnitude", "train_pruning": 0.6, "encoder_pruning": 0.2,
                                       "train_embedding_pruning": 0.3, "span_init": 8.0, "attention_span": 16})
    spec = CompressionSpec.from_knobs(knobs)
    with pytest.raises(ValueError):  # the full profile needs the trained model's spans
        compression_profile(spec)
    profile = optimistic_profile(spec)
    assert profile.encoder_density == pytest.approx(0.4)  # the larger of the two pruning targets
    assert profile.embedding_density == pytest.approx(0.7)
    assert profile.attention_span == 0  # a learned span can be this short: the latency stays a lower bound
    untrained = optimistic_profile(CompressionSpec.from_knobs({**knobs, "span_init": 0.0}))
    assert untrained.attention_span == 16
    ctx = guard_model(tiny_context(None, baseline_points=50.0))
    assert hardware_bounds(ctx, knobs).min_latency_ms < hardware_bounds(ctx, {**knobs, "span_init": 0.0}).min_latency_ms


def test_multitask_bounds_combine_tasks_like_the_full_evaluation() -> None:
    knobs = tiny_config().knob_values({"vmac_lanes": 8})
    first, second = tiny_context(None, rows=16), tiny_context(None, rows=24)
    full = evaluate_trial(MultiTaskContext({"sst2": first, "rte": second}, {"sst2": 0.25, "rte": 0.75}, {}),
                          knobs).metrics
    guarded = MultiTaskContext({"sst2": guard_model(tiny_context(None, rows=16, baseline_points=50.0)),
                                "rte": guard_model(tiny_context(None, rows=24, baseline_points=50.0))},
                               {"sst2": 0.25, "rte": 0.75}, {})
    bounds = hardware_bounds(guarded, knobs)
    assert bounds.area_mm2 == pytest.approx(full["area_mm2"])
    assert bounds.memory_mb == pytest.approx(full["memory_mb"])  # shared tables counted once
    assert 0 < bounds.min_latency_ms <= full["latency_ms"]
    singles = [hardware_bounds(c, knobs).min_latency_ms for c in guarded.tasks.values()]
    assert bounds.min_latency_ms == pytest.approx(0.25 * singles[0] + 0.75 * singles[1])
