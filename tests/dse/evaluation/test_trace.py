"""Bring-your-own entropy traces (``dse trace``): every option acts, and the DVFS predictor is
never fitted on a scored row. Runs on the shipped ALBERT-12 example (a config.json and synthetic
traces, no model weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dse.api import evaluate_trace
from dse.config.trace import load_trace_options
from dse.errors import DSEError
from dse.evaluation.trace import held_out_rows
from hwmodels import (ModelShape, evaluate_hardware, exit_layers_from_entropies, fit_exit_predictor,
                      load_entropy_trace)

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "trace"
TRACE = EXAMPLE / "albert12_trace.csv"
FIT_TRACE = EXAMPLE / "albert12_fit_trace.csv"
CONFIG = EXAMPLE / "albert12_config.json"
BASE: dict[str, Any] = {"model": str(CONFIG), "threshold": 0.25}
DVFS: dict[str, Any] = {**BASE, "latency_target_ms": 12.0}


def _run(trace: Path = TRACE, **options: Any) -> dict[str, Any]:
    return evaluate_trace(trace, **options)


def _bert_config(tmp_path: Path) -> str:
    """The example's shape as a BERT (unshared layers, no factorised embeddings)."""
    data = json.loads(CONFIG.read_text())
    data["model_type"] = "bert"
    del data["embedding_size"]
    path = tmp_path / "bert12.json"
    path.write_text(json.dumps(data))
    return str(path)


# (option, base options, value, figures that must change). The base value is the option's default
# (or the base's own), so each row says: setting this option moves these figures.
KNOB_CASES: list[tuple[str, dict[str, Any], Any, tuple[str, ...]]] = [
    ("threshold", BASE, 0.4, ("avg_exit_layer", "energy_uj", "latency_ms")),
    ("threshold", BASE, [0.25, 0.5] + [0.25] * 10, ("avg_exit_layer", "energy_uj")),  # layer 2 alone
    ("num_labels", BASE, 5, ("energy_uj",)),
    ("encoder_density", BASE, 0.3, ("energy_uj", "memory_mb")),
    ("embedding_density", BASE, 0.3, ("memory_mb", "area_mm2")),
    ("weight_bits", BASE, 12, ("energy_uj", "memory_mb")),
    ("weight_exp_bits", BASE, 4, ("energy_uj",)),
    ("activation_bits", BASE, 16, ("energy_uj",)),
    ("attention_span", BASE, 4, ("energy_uj", "latency_ms")),
    ("vmac_lanes", BASE, 64, ("latency_ms", "area_mm2")),
    ("vector_size", BASE, 4, ("latency_ms", "area_mm2")),
    ("sram_kb", BASE, 4096.0, ("energy_uj", "area_mm2")),
    ("envm_cell", BASE, "pcm", ("energy_uj", "area_mm2")),
    ("voltage_v", BASE, 0.6, ("energy_uj", "latency_ms")),
    ("latency_target_ms", BASE, 12.0, ("energy_uj", "latency_ms", "target_met_fraction")),
    ("latency_target_ms", DVFS, 20.0, ("energy_uj", "latency_ms", "target_met_fraction")),
    ("fit_fraction", BASE, 0.5, ("sentences", "energy_uj")),
    ("fit_seed", BASE, 7, ("energy_uj", "avg_exit_layer")),  # other rows held out, other rows scored
    ("fit_seed", DVFS, 7, ("exit_predictor",)),
    ("fit_trace", BASE, str(FIT_TRACE), ("sentences", "energy_uj")),  # every row of the trace scored
    ("fit_trace", DVFS, str(FIT_TRACE), ("exit_predictor", "sentences")),
]


@pytest.mark.parametrize(("option", "base", "value", "figures"), KNOB_CASES,
                         ids=[f"{c[0]}={c[2] if not isinstance(c[2], list) else 'per-layer'}"
                              f"{'-dvfs' if c[1] is DVFS else ''}" for c in KNOB_CASES])
def test_every_option_acts(option: str, base: dict[str, Any], value: Any, figures: tuple[str, ...]) -> None:
    before = _run(**base)
    after = _run(**{**base, option: value})
    for figure in figures:
        assert after[figure] != before[figure], f"{option}={value!r} left {figure} at {before[figure]}"


def test_the_model_option_acts(tmp_path: Path) -> None:
    albert, bert = _run(**BASE), _run(**{**BASE, "model": _bert_config(tmp_path)})
    # BERT stores 12 layers and 768-wide embeddings; ALBERT one shared layer and 128-wide ones
    assert bert["memory_mb"] > 5 * albert["memory_mb"]
    assert bert["avg_exit_layer"] == albert["avg_exit_layer"]  # the same exits, another chip


def test_a_mobilebert_config_is_costed(tmp_path: Path) -> None:
    """A MobileBERT config.json alone is enough to cost the chip: 12 layers at a 128-wide bottleneck
    and 512-wide off-ramps store about what ALBERT-base does, far less than BERT-base."""
    from transformers import MobileBertConfig

    path = tmp_path / "mobilebert12.json"
    MobileBertConfig(num_hidden_layers=12).to_json_file(path)
    albert, mobile = _run(**BASE), _run(**{**BASE, "model": str(path)})
    bert = _run(**{**BASE, "model": _bert_config(tmp_path)})
    assert mobile["avg_exit_layer"] == albert["avg_exit_layer"]  # the same exits, another chip
    assert mobile["memory_mb"] < bert["memory_mb"] / 4 and mobile["memory_mb"] != albert["memory_mb"]
    assert mobile["energy_uj"] != albert["energy_uj"]


def test_profile_file_and_flags(tmp_path: Path) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(f"model: {CONFIG}\nthreshold: 0.25\nencoder_density: 0.3\n")
    from_file = _run(profile=profile)
    assert from_file == _run(**BASE, encoder_density=0.3)
    assert _run(profile=profile, encoder_density=1.0) == _run(**BASE)  # an option overrides the file
    as_json = tmp_path / "profile.json"
    as_json.write_text(json.dumps({"model": str(CONFIG), "threshold": 0.25, "encoder_density": 0.3}))
    assert _run(profile=as_json) == from_file


def test_held_out_rows_split_the_trace() -> None:
    fit, scored = held_out_rows(48, 0.25, 0)
    assert len(fit) == 12 and len(scored) == 36
    assert not set(fit) & set(scored) and sorted([*fit, *scored]) == list(range(48))
    assert held_out_rows(48, 0.25, 0)[0].tolist() == fit.tolist()  # seeded
    assert held_out_rows(48, 0.25, 1)[0].tolist() != fit.tolist()
    assert [len(r) for r in held_out_rows(2, 0.01, 0)] == [1, 1]  # at least one row each
    assert [len(r) for r in held_out_rows(2, 0.99, 0)] == [1, 1]
    with pytest.raises(ValueError, match="cannot be split"):
        held_out_rows(1, 0.5, 0)


def _write_trace(path: Path, entropies: np.ndarray, tokens: np.ndarray) -> Path:
    header = ",".join(["tokens"] + [f"entropy_{i}" for i in range(1, entropies.shape[1] + 1)])
    path.write_text("\n".join([header] + [",".join([str(t)] + [repr(float(h)) for h in row])
                                          for t, row in zip(tokens, entropies)]) + "\n")
    return path


def test_the_predictor_never_sees_a_scored_row(tmp_path: Path) -> None:
    entropies, tokens = load_entropy_trace(TRACE)
    fit_rows, scored_rows = held_out_rows(len(tokens), 0.25, 0)
    reference = _run(**DVFS)
    assert reference["sentences"] == len(scored_rows) and reference["dvfs_fit"]["sentences"] == len(fit_rows)

    # the scored rows changed beyond recognition (their first-layer entropies reversed, every later
    # layer confident): the table is the same, because it never saw them
    changed = entropies.copy()
    changed[scored_rows, 0] = changed[scored_rows[::-1], 0]
    changed[scored_rows, 1:] = 0.0
    other = _run(_write_trace(tmp_path / "scored_changed.csv", changed, tokens), **DVFS)
    assert other["exit_predictor"]["exit_layer_per_bin"] == reference["exit_predictor"]["exit_layer_per_bin"]
    assert other["exit_predictor"]["first_layer_entropy_edges"] == \
        reference["exit_predictor"]["first_layer_entropy_edges"]
    assert other["avg_exit_layer"] != reference["avg_exit_layer"]  # while the scored figures moved

    # one held-out row made confident from layer 1: the table changes (so the check above can fail)
    changed = entropies.copy()
    changed[fit_rows, 1:] = 0.0
    refit = _run(_write_trace(tmp_path / "fit_changed.csv", changed, tokens), **DVFS)
    assert refit["exit_predictor"]["exit_layer_per_bin"] != reference["exit_predictor"]["exit_layer_per_bin"]
    assert refit["avg_exit_layer"] == reference["avg_exit_layer"]  # no scored row changed


def test_figures_are_the_hardware_models_on_the_scored_rows() -> None:
    from transformers import AutoConfig

    entropies, tokens = load_entropy_trace(TRACE)
    fit_rows, scored = held_out_rows(len(tokens), 0.25, 0)
    options = load_trace_options(**DVFS)
    threshold = 0.25
    predictor = fit_exit_predictor(entropies[fit_rows, 0], exit_layers_from_entropies(entropies[fit_rows], threshold))
    exits = exit_layers_from_entropies(entropies[scored], threshold)
    hw = evaluate_hardware(ModelShape.from_hf_config(AutoConfig.from_pretrained(str(CONFIG)), num_labels=2),
                           tokens=tokens[scored], exit_layers=exits, compression=options.compression(),
                           hardware=options.hardware(), predicted_exit_layers=predictor.predict(entropies[scored, 0]))
    out = _run(**DVFS)
    assert out["energy_uj"] == hw.mean_energy_uj and out["latency_ms"] == hw.mean_latency_ms
    assert out["target_met_fraction"] == hw.fraction_target_met and out["avg_exit_layer"] == exits.mean()
    assert out["exit_predictor"]["exit_layer_per_bin"] == predictor.exit_layer_per_bin.tolist()


def test_a_fit_trace_fits_the_predictor_and_every_row_is_scored() -> None:
    fit_entropies, _ = load_entropy_trace(FIT_TRACE)
    predictor = fit_exit_predictor(fit_entropies[:, 0], exit_layers_from_entropies(fit_entropies, 0.25))
    out = _run(**DVFS, fit_trace=FIT_TRACE)
    assert out["sentences"] == 48 and out["dvfs_fit"] == {"source": "fit_trace", "trace": str(FIT_TRACE),
                                                          "sentences": 32}
    assert out["exit_predictor"]["exit_layer_per_bin"] == predictor.exit_layer_per_bin.tolist()


def test_the_scored_trace_cannot_fit_itself(tmp_path: Path) -> None:
    copy = tmp_path / "copy.csv"
    copy.write_bytes(TRACE.read_bytes())
    for fit in (TRACE, copy):
        with pytest.raises(DSEError, match="is the trace being scored"):
            _run(**DVFS, fit_trace=fit)


def test_layer_counts_must_match(tmp_path: Path) -> None:
    entropies, tokens = load_entropy_trace(TRACE)
    short = _write_trace(tmp_path / "six.csv", entropies[:, :6], tokens)
    with pytest.raises(DSEError, match="six.csv has 6 layers but .* has 12"):
        _run(short, **BASE)
    with pytest.raises(DSEError, match="six.csv has 6 layers but .* has 12"):
        _run(**BASE, fit_trace=short)
    with pytest.raises(DSEError, match="threshold has 3 values but .* has 12 layers"):
        _run(**{**BASE, "threshold": [0.1, 0.2, 0.3]})


def test_the_example_traces_are_what_their_script_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_traces", EXAMPLE / "make_traces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert TRACE.read_text() == module.trace(48, seed=1)
    assert FIT_TRACE.read_text() == module.trace(32, seed=2)
