"""Per-sentence results of a design (dse.evaluation.sentence_results) on a tiny real model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dse.config import parse_study_config
from dse.evaluation import EvalContext, evaluate_trial, sentence_results

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
    assert sentences.exit_layers.min() >= 1 and sentences.exit_layers.max() <= ctx.shape.num_layers
    assert np.mean(sentences.exit_layers) == pytest.approx(metrics["avg_exit_layer"])
    assert np.mean(sentences.latency_ms) == pytest.approx(metrics["latency_ms"], rel=1e-12)
    assert np.mean(sentences.energy_uj) == pytest.approx(metrics["energy_uj"], rel=1e-12)
    assert np.percentile(sentences.latency_ms, 95) == pytest.approx(metrics["p95_latency_ms"], rel=1e-12)
    # longer sentences take longer at the same exit layer
    same = sentences.exit_layers == ctx.shape.num_layers
    if same.sum() > 2:
        order = np.argsort(sentences.tokens[same])
        assert np.all(np.diff(sentences.latency_ms[same][order]) >= 0)


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
