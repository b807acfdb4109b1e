"""A tiny real evaluation context: random-weight BERT, synthetic dev rows, the real evaluation code.

A plain module (not a conftest) so that child processes of the tests can import it too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel

from dse.config import FaultsConfig, StudyConfig, parse_study_config
from dse.evaluation import EvalContext
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import dev_layer_logits, predictions
from hwmodels import ModelShape

SPACE = {"encoder_pruning": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.5},
         "exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.1},
         "envm_cell": {"type": "categorical", "choices": ["rram_slc", "pcm"]},
         "voltage_v": {"type": "float", "low": 0.5, "high": 0.8, "step": 0.1}}


def tiny_config(name: str = "unit", **extra) -> StudyConfig:  # noqa: ANN003
    return parse_study_config({"name": name, "search_space": SPACE, "sweep": {"enabled": False}, **extra},
                              source="test")


def tiny_context(cache_dir: Path | None, *, rows: int = 32, baseline_points: float | None = None,
                 faults: FaultsConfig | None = None) -> EvalContext:
    """A 3-layer random BERT and ``rows`` synthetic dev rows; the baseline is the model's own
    final-layer accuracy unless given."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    model = EarlyExitModel(BertModel(cfg), num_labels=2).eval()
    rng = np.random.default_rng(0)
    ids = [[98, *rng.integers(1, 98, int(n)).tolist(), 99] for n in rng.integers(3, 20, rows)]
    dev = EncodedSet(ids, [[0] * len(r) for r in ids], rng.integers(0, 2, rows))
    if baseline_points is None:
        baseline_points = 100 * float((predictions(dev_layer_logits(model, dev, pad_id=0)[-1]) == dev.labels).mean())
    return EvalContext(task="sst2", model=model, prepared_key="tiny", dev=dev, pad_id=0,
                       shape=ModelShape.from_hf_config(cfg, num_labels=2), baseline_points=baseline_points,
                       cache_dir=cache_dir, faults=faults or FaultsConfig())


def tiny_train_rows(n: int = 48, seed: int = 1) -> EncodedSet:
    """Synthetic training rows for a tiny context's DVFS predictor (``ctx.dvfs_rows``), disjoint
    from its dev rows (another seed)."""
    rng = np.random.default_rng(seed)
    ids = [[98, *rng.integers(1, 98, int(k)).tolist(), 99] for k in rng.integers(3, 20, n)]
    return EncodedSet(ids, [[0] * len(r) for r in ids], rng.integers(0, 2, n))


def perfect_context(cache_dir: Path | None, rows: int = 400) -> EvalContext:
    """A tiny context whose dev labels are its uncompressed model's own predictions: 100 points
    (the random model's last off-ramp answers 1 for every row, its first one 0: a design whose
    rows all exit after layer 1, exit_threshold 0.7, scores 0)."""
    ctx = tiny_context(cache_dir, rows=rows, baseline_points=100.0)
    labels = predictions(dev_layer_logits(ctx.model, ctx.dev, pad_id=0)[-1])
    return replace(ctx, dev=replace(ctx.dev, labels=np.asarray(labels)), _memory={}, _trained={})
