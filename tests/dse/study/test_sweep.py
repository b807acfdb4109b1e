"""Cheap-knob sweep: grid construction and derived designs from cached logits (tiny model)."""

from __future__ import annotations

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dse.config import FaultsConfig, parse_study_config
from dse.evaluation import EvalContext, evaluate_trial
from dse.modeling.batching import EncodedSet
from dse.study.engine import _constraints, distributions
from dse.study.pareto import pareto_mask
from dse.study.sweep import cheap_knob_grid, sweep_cheap_knobs
from hwmodels import ModelShape

from ..tiny_eval import tiny_train_rows


def test_grid_spreads_each_distribution_and_skips_compression_knobs() -> None:
    dists = {
        "exit_threshold": FloatDistribution(0.0, 0.6, step=0.05),
        "voltage_v": FloatDistribution(0.5, 0.8),
        "vmac_lanes": CategoricalDistribution([4, 8, 16]),
        "sram_kb": FloatDistribution(64, 4096, log=True),
        "vector_size": IntDistribution(4, 64, step=4),
        "encoder_pruning": FloatDistribution(0.0, 0.5, step=0.1),
    }
    grid = cheap_knob_grid(dists, per_knob=4)
    assert "encoder_pruning" not in grid
    assert grid["exit_threshold"] == pytest.approx([0.0, 0.2, 0.4, 0.6])  # 13 steps -> 4 evenly
    assert grid["voltage_v"] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert grid["vmac_lanes"] == [4, 8, 16]
    assert grid["sram_kb"] == pytest.approx([64, 256, 1024, 4096])
    assert grid["vector_size"] == [4, 24, 44, 64]
    for name, values in grid.items():
        assert all(dists[name]._contains(dists[name].to_internal_repr(v)) for v in values)


@pytest.fixture
def study_config():  # noqa: ANN201
    return parse_study_config({
        "name": "sweep", "constraints": {"latency_target_ms": 50.0},
        "sweep": {"values_per_knob": 4, "max_derived_trials": 5},
        "search_space": {
            "encoder_pruning": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
            "exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.2},
            "vmac_lanes": {"type": "categorical", "choices": [4, 16]},
            "voltage_v": {"type": "float", "low": 0.5, "high": 0.8, "step": 0.1},
        },
    }, source="test")


def _six_sentence_context(model, faults: FaultsConfig | None = None) -> EvalContext:  # noqa: ANN001
    """The tiny model on six synthetic dev sentences of varied length (baseline 50 points)."""
    rng = np.random.default_rng(0)
    lengths = [12, 5, 9, 30, 17, 8]
    dev = EncodedSet([[1, *rng.integers(2, 100, n - 2).tolist(), 2] for n in lengths],
                     [[0] * n for n in lengths], np.array([0, 1, 0, 1, 1, 0]))
    return EvalContext(task="sst2", model=model, prepared_key="tiny", dev=dev, pad_id=0,
                       shape=ModelShape.from_hf_config(model.config, num_labels=2),
                       baseline_points=50.0, cache_dir=None, faults=faults or FaultsConfig())


def test_sweep_returns_feasible_front_matching_single_evaluations(tiny_model, study_config) -> None:  # noqa: ANN001
    ctx = _six_sentence_context(tiny_model)
    dists = distributions(study_config)
    knobs = study_config.knob_values({"encoder_pruning": 0.25, "exit_threshold": 0.2, "vmac_lanes": 4,
                                      "voltage_v": 0.5})
    designs = sweep_cheap_knobs(ctx, study_config, knobs, dists,
                                constraints=lambda m: _constraints(study_config, m))
    assert 1 <= len(designs) <= 5
    names = study_config.objective_names()
    values = np.array([[d.metrics[n] for n in names] for d in designs])
    assert pareto_mask(values, study_config.directions()).all()
    for d in designs:
        assert d.params["encoder_pruning"] == 0.25  # compression is never swept
        assert d.metrics["latency_ms"] <= 50.0
        # each derived design is exactly what a regular trial with those knobs scores
        single = evaluate_trial(ctx, study_config.knob_values(d.params))
        assert single.metrics == pytest.approx(d.metrics)


def test_sweep_scores_faults_per_cell_like_single_evaluations(tiny_model) -> None:  # noqa: ANN001
    config = parse_study_config({
        "name": "sweep-faults", "sweep": {"values_per_knob": 2, "max_derived_trials": 10},
        "objectives": [{"name": "accuracy_under_faults"}, {"name": "area_mm2"}],
        "faults": {"enabled": True, "repeats": 2, "cell_error_prob": {"rram_mlc3": 0.2}},
        "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.6},
                         "envm_cell": {"type": "categorical", "choices": ["rram_slc", "rram_mlc3"]}},
    }, source="test")
    ctx = _six_sentence_context(tiny_model, faults=config.faults)
    dists = distributions(config)
    knobs = config.knob_values({"exit_threshold": 0.0, "envm_cell": "rram_mlc3"})
    designs = sweep_cheap_knobs(ctx, config, knobs, dists, constraints=lambda m: _constraints(config, m))
    assert designs
    for d in designs:
        details = d.attrs["faults"]
        assert details["cell"] == d.params["envm_cell"] and len(details["faulty_cells"]) == 2
        assert (min(details["faulty_cells"]) > 0) == (d.params["envm_cell"] == "rram_mlc3")
        single = evaluate_trial(ctx, config.knob_values(d.params))
        assert single.metrics == pytest.approx(d.metrics)


def test_sweep_covers_the_new_hardware_knobs_and_skips_inert_ones(tiny_model) -> None:  # noqa: ANN001
    from dse.study.sweep import _task_scores

    config = parse_study_config({
        "name": "sweep-hw", "sweep": {"values_per_knob": 2, "max_derived_trials": 50},
        "objectives": [{"name": "energy_uj"}, {"name": "memory_mb"}, {"name": "area_mm2"}],
        "fixed": {"latency_target_ms": 0.05},
        "search_space": {"dvfs": {"type": "categorical", "choices": [False, True]},
                         "dvfs_layer1": {"type": "categorical", "choices": ["nominal", "previous", "min"]},
                         "sparse_format": {"type": "categorical", "choices": ["dense", "bitmask", "relative_index"]},
                         "weight_store": {"type": "categorical", "choices": ["sram", "envm", "dram"]}},
    }, source="test")
    ctx = _six_sentence_context(tiny_model)
    ctx.dvfs_rows = tiny_train_rows()
    dists = distributions(config)
    assert set(cheap_knob_grid(dists, per_knob=2)) == {"dvfs", "dvfs_layer1", "sparse_format", "weight_store"}
    base = config.knob_values({"dvfs": True, "dvfs_layer1": "nominal", "sparse_format": "bitmask",
                               "weight_store": "sram"})
    points = [{**base, "dvfs": False, "dvfs_layer1": "previous"}, {**base, "dvfs_layer1": "previous"},
              {**base, "weight_store": "dram"}, {**base, "weight_store": "envm", "sparse_format": "dense"}]
    scores = _task_scores(ctx, points)
    assert scores[0] is None  # dvfs_layer1 without DVFS: not a design of its own
    assert all(s is not None for s in scores[1:])  # the tiny model fits in 64 KiB: dram streams it
    designs = sweep_cheap_knobs(ctx, config, base, dists, constraints=lambda m: _constraints(config, m))
    assert designs
    for d in designs:
        assert d.params["dvfs"] or d.params["dvfs_layer1"] == "nominal"
        single = evaluate_trial(ctx, config.knob_values(d.params))  # would raise InactiveKnob if inert
        assert single.metrics == pytest.approx(d.metrics)
