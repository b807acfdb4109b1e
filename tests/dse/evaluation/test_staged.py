"""Dominance-aware early stopping: the accuracy bound, the stopping rule, staged scoring and its cache."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import beta

from dse.compression.spec import CompressionSpec
from dse.evaluation import evaluate_trial
from dse.evaluation.cache import eval_key, layer_logits, partial_layer_logits
from dse.evaluation.staged import EarlyStopRule, StagedEvaluation, accuracy_upper_bound, stage_rows

from ..tiny_eval import perfect_context, tiny_config

KNOBS = tiny_config().knob_values({"encoder_pruning": 0.0, "exit_threshold": 0.0, "envm_cell": "rram_slc",
                                   "voltage_v": 0.8})
OBJECTIVES = ("accuracy", "energy_uj", "latency_ms")
DIRECTIONS = ("maximize", "minimize", "minimize")


def test_the_accuracy_bound_is_the_one_sided_clopper_pearson_bound() -> None:
    # 80 of 100 right: the exact one-sided 95 % upper bound is the Beta(81, 20) 95th percentile
    assert accuracy_upper_bound(80, 100, 0.95) == pytest.approx(beta.ppf(0.95, 81, 20), rel=1e-9)
    assert 0.80 < accuracy_upper_bound(80, 100, 0.95) < 0.87
    assert accuracy_upper_bound(100, 100, 0.95) == 1.0
    assert accuracy_upper_bound(80, 100, 0.99) > accuracy_upper_bound(80, 100, 0.95)  # more confidence: wider


def test_the_rule_stops_an_infeasible_or_dominated_design_and_keeps_the_others() -> None:
    rule = EarlyStopRule(OBJECTIVES, DIRECTIONS, max_accuracy_drop_points=1.0,
                         front=np.array([[95.0, 1.0, 1.0]]), front_trials=[7])

    def optimistic(accuracy: float, energy: float, latency: float) -> dict[str, float]:
        return {"accuracy": accuracy, "worst_accuracy_drop": 97.0 - accuracy, "energy_uj": energy, "latency_ms": latency}

    # 90 right of 100 with a 97-point baseline: at best ~94.6 points, a drop over 1: must stop
    best = 100 * accuracy_upper_bound(90, 100, 0.95)
    assert "infeasible: accuracy drop" in rule.stop_reason(optimistic(best, 0.1, 0.1))
    # feasible at best, but worse than trial 7 in every objective even then: must stop
    assert rule.stop_reason(optimistic(96.0, 2.0, 2.0)) is None  # better accuracy: may join the front
    assert rule.stop_reason(optimistic(96.5, 0.5, 0.5)) is None
    rule.max_accuracy_drop_points = None
    assert rule.stop_reason(optimistic(94.0, 2.0, 2.0)) == "dominated by the feasible front (trial 7)"
    assert rule.stop_reason(optimistic(94.0, 0.9, 2.0)) is None  # less energy: not dominated


def test_stage_rows_are_a_fixed_seeded_prefix() -> None:
    a, b = stage_rows(400, 0.25), stage_rows(400, 0.5)
    assert len(a) == 100 and len(b) == 200 and (b[:100] == a).all() and len(np.unique(b)) == 200


def test_a_design_that_cannot_be_feasible_stops_at_stage_one_with_its_reason(tmp_path: Path) -> None:
    ctx = perfect_context(tmp_path)
    knobs = {**KNOBS, "exit_threshold": 0.7}  # every row exits after layer 1, whose off-ramp is wrong
    rule = EarlyStopRule(OBJECTIVES, DIRECTIONS, max_accuracy_drop_points=1.0)
    full = evaluate_trial(perfect_context(None), knobs)  # what the full pass would record
    assert full.metrics["accuracy"] < 90
    outcome = StagedEvaluation(evaluate_trial, rule, (0.25, 0.5), 0.95)(ctx, knobs)
    assert outcome.pruned is not None and outcome.pruned.startswith("stage 0.25: infeasible: accuracy drop")
    figures = outcome.attrs["early_stop"]
    assert figures["rows"] == 100 and figures["dev_rows"] == 400 and figures["stage"] == 0.25
    assert figures["accuracy_observed"] <= figures["accuracy_upper"] == outcome.metrics["accuracy"]
    assert outcome.metrics["latency_ms"] <= full.metrics["latency_ms"]  # optimistic bounds
    assert outcome.metrics["energy_uj"] <= full.metrics["energy_uj"]
    key = eval_key(ctx, CompressionSpec.from_knobs(knobs))
    assert (tmp_path / f"{key}-partial.npz").is_file() and not (tmp_path / f"{key}.npz").exists()


def test_a_design_that_can_reach_the_front_is_scored_fully_reusing_its_stages(tmp_path: Path) -> None:
    ctx = perfect_context(tmp_path)
    rule = EarlyStopRule(OBJECTIVES, DIRECTIONS, max_accuracy_drop_points=1.0)
    outcome = StagedEvaluation(evaluate_trial, rule, (0.25, 0.5), 0.95)(ctx, KNOBS)
    assert outcome.pruned is None and outcome.attrs["stages_passed"] == [0.25, 0.5]
    assert outcome.metrics == evaluate_trial(perfect_context(None), KNOBS).metrics  # the same design
    key = eval_key(ctx, CompressionSpec.from_knobs(KNOBS))
    assert (tmp_path / f"{key}.npz").is_file() and not (tmp_path / f"{key}-partial.npz").exists()


def test_partial_logits_are_those_of_the_full_pass_and_a_full_pass_reuses_them(tmp_path: Path) -> None:
    ctx = perfect_context(tmp_path, rows=64)
    # fp32 activations: the dynamic activation quantizer scales each batch by its own max |x|, so
    # with it a row's logits depend (slightly) on its batch mates, and the rows a stage runs
    # together are not the full pass's batches
    spec = CompressionSpec.from_knobs({**KNOBS, "encoder_pruning": 0.5, "activation_bits": 0})
    reference, _ = layer_logits(perfect_context(None, rows=64), spec)
    rows = stage_rows(64, 0.25)
    assert torch.allclose(partial_layer_logits(ctx, spec, rows), reference[:, rows], atol=1e-5)
    # the full pass runs the model on the other rows only: damage the stored stage rows'
    # logits in memory, and the full logits show them (a run over all rows would not)
    ctx._memory[f"{eval_key(ctx, spec)}-partial"]["logits"][:] = 7.0
    full, hit = layer_logits(ctx, spec)
    assert not hit and (full[:, rows] == 7.0).all()
    others = np.setdiff1d(np.arange(64), rows)
    assert torch.allclose(full[:, others], reference[:, others], atol=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "rows out of range"])
def test_a_damaged_partial_entry_is_detected_and_recomputed(tmp_path: Path, damage: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    spec = CompressionSpec.from_knobs({**KNOBS, "encoder_pruning": 0.5, "activation_bits": 0})  # fp32: see above
    rows = stage_rows(64, 0.25)
    partial_layer_logits(perfect_context(tmp_path, rows=64), spec, rows)
    path = tmp_path / f"{eval_key(perfect_context(None, rows=64), spec)}-partial.npz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        with np.load(path) as data:
            logits = data["logits"]
        np.savez(path, rows=rows + 1000, logits=logits)
    ctx = perfect_context(tmp_path, rows=64)  # a fresh process: nothing in memory
    reference, _ = layer_logits(perfect_context(None, rows=64), spec)
    with caplog.at_level(logging.WARNING):
        again = partial_layer_logits(ctx, spec, rows)
    assert "damaged" in caplog.text
    assert torch.allclose(again, reference[:, rows], atol=1e-5)
    with np.load(path) as data:  # rewritten whole
        assert sorted(data["rows"].tolist()) == sorted(rows.tolist())
