"""Multi-task designs: per-task scores combined under the mix, one shared embedding table (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from optuna.distributions import FloatDistribution

from dse.config import KNOBS, FaultsConfig, knobs_for_task, parse_study_config
from dse.errors import DSEError
from dse.evaluation import evaluate_trial
from dse.evaluation.multitask import MultiTaskContext, check_shared_embeddings, weighted_percentile
from dse.study.engine import _constraints, distributions
from dse.study.sweep import sweep_cheap_knobs

from ..tiny_eval import tiny_context

CONFIG = {
    "name": "mt", "tasks": [{"name": "sst2", "mix": 3}, {"name": "rte", "mix": 1}],
    "objectives": [{"name": "worst_accuracy_drop"}, {"name": "energy_uj"}, {"name": "memory_mb"}],
    "sweep": {"values_per_knob": 4, "max_derived_trials": 6},
    "search_space": {"sst2.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.2},
                     "rte.encoder_pruning": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.5},
                     "voltage_v": {"type": "float", "low": 0.5, "high": 0.8, "step": 0.1},
                     "vmac_lanes": {"type": "categorical", "choices": [4, 16]}},
}


def _two_tasks(faults: FaultsConfig | None = None, approximations: dict[str, str] | None = None) -> MultiTaskContext:
    """Two tasks on one tiny backbone (same seed: the same embedding tables), different dev rows."""
    sst2, rte = tiny_context(None, rows=32, faults=faults), tiny_context(None, rows=20, faults=faults)
    rte.task, rte.prepared_key = "rte", "tiny-rte"
    return MultiTaskContext({"sst2": sst2, "rte": rte}, {"sst2": 0.75, "rte": 0.25}, approximations or {})


@pytest.fixture
def mctx() -> MultiTaskContext:
    return _two_tasks(approximations={"rte": "approximated"})


def _knobs(**scoped: float) -> dict:
    return {**{n: k.default for n, k in KNOBS.items()}, "weight_bits": 6, "voltage_v": 0.6, **scoped}


def test_metrics_combine_each_tasks_own_evaluation_under_the_mix(mctx: MultiTaskContext) -> None:
    knobs = _knobs(**{"sst2.exit_threshold": 0.4, "rte.encoder_pruning": 0.5})
    outcome = evaluate_trial(mctx, knobs)
    single = {t: evaluate_trial(c, knobs_for_task(knobs, t)) for t, c in mctx.tasks.items()}
    m, s, r = outcome.metrics, single["sst2"].metrics, single["rte"].metrics
    for name in ("accuracy", "accuracy_drop", "energy_uj", "latency_ms", "avg_exit_layer"):
        assert m[f"sst2.{name}"] == s[name] and m[f"rte.{name}"] == r[name]
        assert m[name] == pytest.approx(0.75 * s[name] + 0.25 * r[name])
    assert m["worst_accuracy_drop"] == max(s["accuracy_drop"], r["accuracy_drop"])
    assert s["energy_uj"] != r["energy_uj"]  # different rows and compression: the mix matters
    # memory: the shared embedding tables once, not once per task
    shared_mb = outcome.attrs["memory_breakdown_mb"]["shared_embeddings"]
    assert shared_mb > 0
    assert m["memory_mb"] == pytest.approx(s["memory_mb"] + r["memory_mb"] - shared_mb)
    assert outcome.attrs["memory_breakdown_mb"]["rte.encoder"] < outcome.attrs["memory_breakdown_mb"]["sst2.encoder"]
    assert m["area_mm2"] == pytest.approx(max(s["area_mm2"], r["area_mm2"]))
    limits = parse_study_config({**CONFIG, "constraints": {"max_accuracy_drop_points": 2.0}}, source="test")
    assert _constraints(limits, m)["accuracy_drop"] == pytest.approx(m["worst_accuracy_drop"] - 2.0)  # every task
    assert outcome.attrs["approximations"] == {"rte": "approximated"}
    assert outcome.attrs["tasks"]["rte"]["eval_key"] != outcome.attrs["tasks"]["sst2"]["eval_key"]
    assert len(outcome.sentences.latency_ms) == 32 + 20


def test_weighted_percentile_of_a_mixture() -> None:
    # group a: 4 sentences sharing half the weight (1/8 each); group b: one sentence with the other half
    assert weighted_percentile([np.array([1.0, 2, 3, 4]), np.array([10.0])], [0.5, 0.5], 50) == 4.0
    assert weighted_percentile([np.array([1.0, 2, 3, 4]), np.array([10.0])], [0.5, 0.5], 51) == 10.0
    assert weighted_percentile([np.array([1.0, 2, 3, 4]), np.array([10.0])], [0.9, 0.1], 95) == 10.0
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)  # equal sizes and weights: the plain percentile
    assert weighted_percentile([a, b], [1, 1], 95) == np.percentile(np.concatenate([a, b]), 95, method="inverted_cdf")


def test_task_models_must_share_their_embedding_tables(mctx: MultiTaskContext) -> None:
    check_shared_embeddings(mctx.tasks)
    with torch.no_grad():
        mctx.tasks["rte"].model.backbone.embeddings.word_embeddings.weight[5, 0] += 1.0
    with pytest.raises(DSEError, match="sst2 and rte differ in word_embeddings"):
        check_shared_embeddings(mctx.tasks)


def test_sweep_of_shared_hardware_knobs_matches_full_evaluations(mctx: MultiTaskContext) -> None:
    config = parse_study_config(CONFIG, source="test")
    dists = distributions(config)
    knobs = config.knob_values({"sst2.exit_threshold": 0.2, "rte.encoder_pruning": 0.5, "voltage_v": 0.8,
                                "vmac_lanes": 4})
    designs = sweep_cheap_knobs(mctx, config, knobs, dists, constraints=lambda m: _constraints(config, m))
    assert designs
    for d in designs:
        # per-task knobs keep the trial's values; only the shared cheap knobs vary
        assert (d.params["sst2.exit_threshold"], d.params["rte.encoder_pruning"]) == (0.2, 0.5)
        full = evaluate_trial(mctx, config.knob_values(d.params)).metrics
        assert d.metrics == pytest.approx(full)
    assert len({(d.params["voltage_v"], d.params["vmac_lanes"]) for d in designs}) == len(designs)
    assert isinstance(dists["sst2.exit_threshold"], FloatDistribution)


def test_faults_hit_the_one_shared_table_alike_for_every_task() -> None:
    mctx = _two_tasks(FaultsConfig(enabled=True, repeats=2, error_rate_scale=100.0))
    outcome = evaluate_trial(mctx, _knobs(envm_cell="rram_mlc3", **{"rte.encoder_pruning": 0.5}))
    m, tasks = outcome.metrics, outcome.attrs["tasks"]
    # the same seeded faults in the same stored codes: every task sees the same corrupted cells
    assert tasks["sst2"]["faults"]["faulty_cells"] == tasks["rte"]["faults"]["faulty_cells"]
    assert min(tasks["sst2"]["faults"]["faulty_cells"]) > 0
    assert m["accuracy_under_faults"] == pytest.approx(
        0.75 * m["sst2.accuracy_under_faults"] + 0.25 * m["rte.accuracy_under_faults"])
