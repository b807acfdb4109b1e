"""The DVFS exit predictor is fitted on each design's own model, on training rows (issue #15 item 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.evaluation import EvalContext
from dse.evaluation.cache import design_arrays, eval_key
from dse.evaluation.exits import InvalidDesign, exit_predictor
from dse.evaluation.score import compression_profile, hardware_config, score_design
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import entropy
from dse.modeling.inference import dev_layer_logits
from hwmodels import evaluate_hardware

from tests.dse.artifacts.test_hf_export import tiny_tokenizer
from tests.dse.data.test_glue import GLUE_DIR, needs_glue

from ..tiny_eval import tiny_config, tiny_context, tiny_train_rows

PRUNED = {"encoder_pruning": 0.5, "weight_bits": 4, "weight_exp_bits": 2}  # changes the model's entropies


def _context(cache: Path | None) -> EvalContext:
    ctx = tiny_context(cache)
    ctx.dvfs_rows = tiny_train_rows()
    return ctx


def _own_entropy(model, rows: EncodedSet) -> np.ndarray:  # noqa: ANN001
    return entropy(dev_layer_logits(model, rows, pad_id=0)).T.numpy()


def _knobs(ctx: EvalContext, threshold: float) -> dict:
    return tiny_config().knob_values({**PRUNED, "exit_threshold": threshold, "dvfs": True, "latency_target_ms": 0.05})


def test_the_dvfs_table_is_fitted_on_the_designs_own_model(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "cache")
    spec = CompressionSpec.from_knobs(_knobs(ctx, 0.0))
    compressed, _ = compress(ctx.model, spec, calibration=ctx.dvfs_rows, pad_id=ctx.pad_id)  # as a trial does
    own = _own_entropy(compressed, ctx.dvfs_rows)
    prepared = _own_entropy(ctx.model, ctx.dvfs_rows)
    # a threshold inside the compressed model's entropies, so that its table predicts several layers
    threshold = float(np.quantile(own[:, 1], 0.5))
    knobs = _knobs(ctx, threshold)
    score = score_design(ctx, knobs)

    arrays, _ = design_arrays(ctx, spec)
    np.testing.assert_array_equal(arrays["train_entropy"], own)  # the training rows, through this design's model
    assert arrays["train_entropy"].shape == (len(ctx.dvfs_rows), ctx.shape.num_layers)
    logits = dev_layer_logits(compressed, ctx.dev, pad_id=0)
    want = exit_predictor(own, threshold).predict(entropy(logits[0]).numpy())
    stale = exit_predictor(prepared, threshold).predict(entropy(logits[0]).numpy())
    assert not np.array_equal(want, stale)  # the prepared model's table would predict other exits
    hw = evaluate_hardware(ctx.shape, tokens=ctx.dev.lengths, exit_layers=score.exit_layers.numpy(),
                           compression=compression_profile(spec), hardware=hardware_config(knobs),
                           predicted_exit_layers=want)
    assert score.hw.mean_energy_uj == hw.mean_energy_uj and score.hw.mean_latency_ms == hw.mean_latency_ms
    assert score.hw.fraction_target_met == hw.fraction_target_met


def test_the_dvfs_rows_key_the_cache_and_the_entry_carries_them(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "cache")
    spec = CompressionSpec(**PRUNED)
    other = _context(tmp_path / "cache")
    other.dvfs_rows = tiny_train_rows(seed=2)
    assert eval_key(ctx, spec) != eval_key(other, spec)
    design_arrays(ctx, spec)
    with np.load(tmp_path / "cache" / f"{eval_key(ctx, spec)}.npz") as saved:
        assert {"logits", "train_entropy", "activation_bits"} <= set(saved.files)
        assert saved["train_entropy"].shape == (48, 3)


def test_an_entry_without_the_dvfs_entropies_is_recomputed(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    ctx = _context(tmp_path / "cache")
    spec = CompressionSpec(**PRUNED)
    first, _ = design_arrays(ctx, spec)
    path = tmp_path / "cache" / f"{eval_key(ctx, spec)}.npz"
    np.savez(path, logits=first["logits"])  # what an entry of the logits alone would hold
    again, hit = design_arrays(_context(tmp_path / "cache"), spec)
    assert not hit and "damaged cache file" in caplog.text
    np.testing.assert_array_equal(again["train_entropy"], first["train_entropy"])
    _, hit = design_arrays(_context(tmp_path / "cache"), spec)  # rewritten whole
    assert hit


def test_a_task_without_training_rows_refuses_dvfs(tmp_path: Path) -> None:
    ctx = tiny_context(tmp_path / "cache")  # no dvfs_rows: never falls back to the dev rows
    arrays, _ = design_arrays(ctx, CompressionSpec(**PRUNED))
    assert arrays["train_entropy"].shape == (0, 3)
    with pytest.raises(InvalidDesign, match="training-set entropies"):
        score_design(ctx, _knobs(ctx, 0.3))



@needs_glue
def test_the_dvfs_rows_are_a_seeded_subset_not_the_whole_train_split() -> None:
    # select() keeps the whole Arrow table behind an index mapping; encode_dataset reads the table,
    # so a select()ed subset once tokenized (and ran every design through) all 67,349 SST-2 rows
    from dse.data import load_task_split
    from dse.evaluation.context import DVFS_TRAIN_ROWS, load_dvfs_rows
    from dse.modeling.batching import encode_dataset

    rows = load_dvfs_rows("sst2", tiny_tokenizer(), glue_dir=GLUE_DIR, max_seq_length=32, seed=0)
    assert rows is not None and len(rows) == DVFS_TRAIN_ROWS
    fewer = load_dvfs_rows("sst2", tiny_tokenizer(), glue_dir=GLUE_DIR, max_seq_length=32, seed=0, rows=40)
    assert fewer is not None and len(fewer) == 40  # data.calibration_rows
    train = load_task_split("sst2", "train", glue_dir=GLUE_DIR, seed=0)
    with pytest.raises(ValueError, match="rows selected from"):
        encode_dataset(train.select([0, 5, 9]), tiny_tokenizer(), max_length=32)  # not contiguous: an index mapping
