"""Trial evaluation with eNVM faults in the stored embeddings (tiny real model, synthetic rows)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dse.config import FaultsConfig, parse_study_config
from dse.evaluation import EvalContext, evaluate_trial

from ..tiny_eval import tiny_context

CONFIG = parse_study_config(
    {"name": "faults", "search_space": {"envm_cell": {"type": "categorical", "choices": ["rram_slc", "rram_mlc3"]}}},
    source="test")
# tiny BERT tables, 8-bit codes in 3-bit cells: ceil(100*32*8/3) + ceil(64*32*8/3) + ceil(2*32*8/3)
MLC3_CELLS = 8534 + 5462 + 171


def _context(cache_dir: Path, faults: FaultsConfig) -> EvalContext:
    return tiny_context(cache_dir, rows=24, baseline_points=50.0, faults=faults)


def test_faults_off_report_the_clean_accuracy(tmp_path: Path) -> None:
    outcome = evaluate_trial(_context(tmp_path, FaultsConfig()), CONFIG.knob_values({"envm_cell": "rram_mlc3"}))
    assert outcome.metrics["accuracy_under_faults"] == outcome.metrics["accuracy"]
    assert "faults" not in outcome.attrs
    assert not list(tmp_path.glob("faults-*.npz"))


def test_error_free_cell_needs_no_faulty_pass(tmp_path: Path) -> None:
    ctx = _context(tmp_path, FaultsConfig(enabled=True, error_rate_scale=100.0))
    outcome = evaluate_trial(ctx, CONFIG.knob_values({"envm_cell": "rram_slc"}))
    assert outcome.metrics["accuracy_under_faults"] == outcome.metrics["accuracy"]
    assert outcome.attrs["faults"]["faulty_cells"] == [0, 0, 0]
    assert not list(tmp_path.glob("faults-*.npz"))


def test_mlc3_faults_are_counted_cached_and_reproducible(tmp_path: Path) -> None:
    faults = FaultsConfig(enabled=True, repeats=2, seed=3, cell_error_prob={"rram_mlc3": 0.3})
    ctx = _context(tmp_path, faults)
    knobs = CONFIG.knob_values({"envm_cell": "rram_mlc3"})
    first = evaluate_trial(ctx, knobs)
    details = first.attrs["faults"]
    assert details["error_prob"] == 0.3 and not details["cache_hit"]
    sigma = math.sqrt(MLC3_CELLS * 0.3 * 0.7)  # binomial: 4,250 +- 54.5
    for count in details["faulty_cells"]:
        assert abs(count - 0.3 * MLC3_CELLS) < 5 * sigma
    assert details["faulty_cells"][0] != details["faulty_cells"][1]  # a different seed per repeat
    assert first.metrics["accuracy_under_faults"] == pytest.approx(np.mean(details["accuracy_per_repeat"]))
    assert len(list(tmp_path.glob("faults-*.npz"))) == 1
    # a hardware-only change reuses the faulty logits (memory), a fresh context reads the disk cache
    again = evaluate_trial(ctx, {**knobs, "voltage_v": 0.6})
    assert again.attrs["faults"]["cache_hit"] and again.attrs["faults"]["faulty_cells"] == details["faulty_cells"]
    fresh = evaluate_trial(_context(tmp_path, faults), knobs)
    assert fresh.attrs["faults"]["cache_hit"] and fresh.metrics == first.metrics
    # another seed is another setting
    other = evaluate_trial(_context(tmp_path, faults.model_copy(update={"seed": 4})), knobs)
    assert not other.attrs["faults"]["cache_hit"] and len(list(tmp_path.glob("faults-*.npz"))) == 2


def test_mlc_faults_reach_encoder_weights_stored_in_envm(tmp_path: Path) -> None:
    from dse.compression.apply import compress, encoder_linears
    from dse.compression.spec import CompressionSpec
    from dse.evaluation.faults import WeightStorage, envm_weights, fault_cache_key

    faults = FaultsConfig(enabled=True, repeats=2, seed=3, cell_error_prob={"rram_mlc3": 0.05})
    ctx = _context(tmp_path, faults)
    knobs = CONFIG.knob_values({"envm_cell": "rram_mlc3"})
    sram = evaluate_trial(ctx, knobs)
    envm = evaluate_trial(ctx, {**knobs, "weight_store": "envm"})
    # the tables take the very same faults either way; the weights add their own cells
    stored = envm_weights(compress(ctx.model, CompressionSpec())[0]).values()  # sparse format: non-zeros only
    weight_cells = sum(-(-int((m.weight != 0).sum()) * 8 // 3) for m in stored)
    extra = np.array(envm.attrs["faults"]["faulty_cells"]) - np.array(sram.attrs["faults"]["faulty_cells"])
    assert np.all(np.abs(extra - 0.05 * weight_cells) < 5 * math.sqrt(weight_cells * 0.05 * 0.95))
    assert envm.attrs["faults"]["accuracy_per_repeat"] != sram.attrs["faults"]["accuracy_per_repeat"]
    assert len(list(tmp_path.glob("faults-*.npz"))) == 2
    # cache keys: weights in SRAM keep the key they had before weight_store existed
    spec = CompressionSpec.from_knobs(knobs)
    assert fault_cache_key(ctx, spec, "rram_mlc3", 0.05) == fault_cache_key(ctx, spec, "rram_mlc3", 0.05, WeightStorage())
    assert fault_cache_key(ctx, spec, "rram_mlc3", 0.05, WeightStorage(in_envm=True)) != \
        fault_cache_key(ctx, spec, "rram_mlc3", 0.05)
    assert set(encoder_linears(ctx.model)) <= set(envm_weights(ctx.model))
