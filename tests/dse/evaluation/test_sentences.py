"""Per-sentence results of a design (dse.evaluation.sentence_results) on a tiny real model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.config import parse_study_config
from dse.evaluation import EvalContext, evaluate_trial, sentence_results
from dse.evaluation.score import compression_profile, hardware_config
from hwmodels import evaluate_hardware

from ..tiny_eval import tiny_context

CONFIG = parse_study_config(
    {"name": "sentences", "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.7}}},
    source="test")


def _context(cache_dir: Path) -> EvalContext:
    return tiny_context(cache_dir, rows=24, baseline_points=50.0)


@pytest.mark.parametrize("threshold", [0.0, 0.69])  # no exit; exit wherever this random model is unsure
def test_sentence_results_match_the_trial_metrics(threshold: float, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    knobs = CONFIG.knob_values({"exit_threshold": threshold, "sram_kb": 256.0})
    metrics = evaluate_trial(ctx, knobs).metrics
    sentences = sentence_results(ctx, knobs)
    assert len(sentences.exit_layers) == len(sentences.latency_ms) == len(sentences.energy_uj) == len(ctx.dev)
    # exit layers: the compressed model's real early exit, one row at a time (not the cached-logits simulation)
    spec = CompressionSpec.from_knobs(knobs)
    model, _ = compress(ctx.model, spec, calibration=ctx.dvfs_rows, pad_id=ctx.pad_id)  # as a trial does
    exits = np.array([int(model.early_exit_forward(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long),
                                                       threshold=threshold)[1]) for ids in ctx.dev.input_ids])
    np.testing.assert_array_equal(sentences.exit_layers, exits)
    np.testing.assert_array_equal(sentences.tokens, [len(ids) for ids in ctx.dev.input_ids])
    # each sentence costed on its own by the hardware model (not a slice of the trial's batch)
    alone = [evaluate_hardware(ctx.shape, tokens=np.array([len(ids)]), exit_layers=np.array([e]),
                               compression=compression_profile(spec, ctx), hardware=hardware_config(knobs))
             for ids, e in zip(ctx.dev.input_ids, exits, strict=True)]
    np.testing.assert_allclose(sentences.latency_ms, [r.latency_ns[0] * 1e-6 for r in alone], rtol=1e-12)
    np.testing.assert_allclose(sentences.energy_uj, [r.energy_pj[0] * 1e-6 for r in alone], rtol=1e-12)
    # the trial's figures from the per-sentence ones, by hand: means and the interpolated 95th percentile
    latency = sorted(r.latency_ns[0] * 1e-6 for r in alone)
    rank = 0.95 * (len(latency) - 1)
    low = int(rank)
    p95 = latency[low] + (rank - low) * (latency[low + 1] - latency[low])
    assert sum(exits) / len(exits) == pytest.approx(metrics["avg_exit_layer"], rel=1e-12)
    assert sum(latency) / len(latency) == pytest.approx(metrics["latency_ms"], rel=1e-12)
    assert sum(r.energy_pj[0] * 1e-6 for r in alone) / len(alone) == pytest.approx(metrics["energy_uj"], rel=1e-12)
    assert p95 == pytest.approx(metrics["p95_latency_ms"], rel=1e-12)
    # longer sentences take longer at the same exit layer (the most common one has enough rows)
    layer = np.bincount(exits).argmax()
    same = exits == layer
    assert len(set(sentences.tokens[same])) > 2
    order = np.argsort(sentences.tokens[same], kind="stable")
    latency_by_length = sentences.latency_ms[same][order]
    assert np.all(np.diff(latency_by_length) >= 0) and latency_by_length[-1] > latency_by_length[0]


def test_sentence_results_come_from_the_logits_cache_without_the_model(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    knobs = CONFIG.knob_values({"exit_threshold": 0.5})
    first = sentence_results(ctx, knobs)
    assert any(tmp_path.glob("*.npz"))  # the per-layer logits were cached on disk
    # a fresh context with no model at all: only the on-disk cache can answer
    cold = dataclasses.replace(ctx, model=None, _memory={})
    again = sentence_results(cold, knobs)
    np.testing.assert_array_equal(again.exit_layers, first.exit_layers)
    np.testing.assert_allclose(again.latency_ms, first.latency_ms, rtol=0, atol=0)
