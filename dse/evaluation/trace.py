"""Cost a bring-your-own entropy trace (``dse trace``): the hardware model without a model run.

Owns :func:`evaluate_trace` and :func:`held_out_rows`. The trace's entropies give every
sentence's exit layer under the options' threshold(s); the hardware model costs the scored
sentences with the options' compression profile and accelerator. With DVFS, EdgeBERT's
entropy -> exit-layer table is fitted on rows that are never scored: a seeded held-out part of the
trace, or a second trace. The split does not depend on DVFS, so the same sentences are scored with
DVFS on and off.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from dse.config.trace import TraceOptions
from dse.errors import DSEError
from dse.modeling.loading import load_model_config
from hwmodels import ModelShape, evaluate_hardware, exit_layers_from_entropies, fit_exit_predictor, load_entropy_trace

__all__ = ["evaluate_trace", "held_out_rows", "read_trace"]


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(entropies [n, L], tokens [n])`` of a trace CSV; every problem is one ``DSEError`` line."""
    if path.is_dir():
        raise DSEError(f"{path} is a folder; give the CSV trace file")
    if not path.is_file():
        raise DSEError(f"{path}: no such file")
    try:
        return load_entropy_trace(path)
    except (UnicodeDecodeError, csv.Error):  # csv.Error: NUL bytes
        raise DSEError(f"{path}: not a text CSV file (binary or not UTF-8)") from None
    except OSError as exc:
        raise DSEError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except ValueError as exc:  # the trace loader's messages name the file
        raise DSEError(str(exc).strip().splitlines()[0]) from None


def held_out_rows(n_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_rows, scored_rows)``: sorted, disjoint row indices covering ``range(n_rows)``;
    ``round(fraction * n_rows)`` rows (at least one, and one fewer than all) are drawn with
    ``seed`` to fit the DVFS predictor."""
    if n_rows < 2:
        raise ValueError(f"{n_rows} sentence(s) cannot be split into rows that fit the DVFS predictor "
                         "and rows that are scored")
    n_fit = min(max(round(fraction * n_rows), 1), n_rows - 1)
    order = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(order[:n_fit]), np.sort(order[n_fit:])


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve() or a.read_bytes() == b.read_bytes()


def evaluate_trace(csv_path: Path, options: TraceOptions) -> dict[str, Any]:
    """Exits, energy, latency and area of the trace's scored sentences under ``options``, and
    where the DVFS predictor was fitted (JSON-ready; every user error is one ``DSEError`` line)."""
    csv_path = Path(csv_path)
    entropies, tokens = read_trace(csv_path)
    fit_path = options.fit_trace
    fit_entropies = read_trace(fit_path)[0] if fit_path is not None else None
    try:
        shape = ModelShape.from_hf_config(load_model_config(options.model), num_labels=options.num_labels,
                                          offramp_head=options.offramp_head, offramp_pooling=options.offramp_pooling)
    except (ValueError, AttributeError, TypeError) as exc:  # a config.json with odd values
        raise DSEError(f"{options.model}: not a usable model config ({str(exc).strip().splitlines()[0]})") from None
    for path, h in ((csv_path, entropies), (fit_path, fit_entropies)):
        if h is not None and h.shape[1] != shape.num_layers:
            raise DSEError(f"{path} has {h.shape[1]} layers but {options.model} has {shape.num_layers}")
    threshold = np.asarray(options.threshold, dtype=float)
    if threshold.ndim == 1 and threshold.size != shape.num_layers:
        raise DSEError(f"threshold has {threshold.size} values but {options.model} has {shape.num_layers} "
                       "layers; give one threshold, or one per layer")

    if fit_path is not None:
        if _same_file(csv_path, fit_path):
            raise DSEError(f"fit_trace {fit_path} is the trace being scored; the DVFS predictor must be "
                           "fitted on other sentences (give another trace, or no fit_trace to hold out part "
                           "of this one)")
        scored = np.arange(len(tokens))
        fit = {"source": "fit_trace", "trace": str(fit_path), "sentences": int(len(fit_entropies))}
    else:
        try:
            fit_rows, scored = held_out_rows(len(tokens), options.fit_fraction, options.fit_seed)
        except ValueError as exc:
            raise DSEError(f"{csv_path}: {exc}; give a longer trace or a fit_trace") from None
        fit_entropies = entropies[fit_rows]
        fit = {"source": "held_out", "trace": str(csv_path), "sentences": int(len(fit_rows)),
               "fraction": options.fit_fraction, "seed": options.fit_seed}

    exits = exit_layers_from_entropies(entropies[scored], threshold)
    predictor = predicted = None
    if options.dvfs:
        predictor = fit_exit_predictor(fit_entropies[:, 0], exit_layers_from_entropies(fit_entropies, threshold))
        predicted = predictor.predict(entropies[scored, 0])
    try:
        hw = evaluate_hardware(shape, tokens=tokens[scored], exit_layers=exits, compression=options.compression(),
                               hardware=options.hardware(), predicted_exit_layers=predicted)
    except ValueError as exc:
        raise DSEError(str(exc).strip().splitlines()[0]) from None
    return {
        "sentences": int(len(scored)), "avg_exit_layer": float(exits.mean()),
        "energy_uj": hw.mean_energy_uj, "latency_ms": hw.mean_latency_ms,
        "p95_latency_ms": hw.p95_latency_ms, "target_met_fraction": hw.fraction_target_met,
        "area_mm2": hw.area_mm2, "memory_mb": hw.memory_bytes / 1e6, "valid": hw.valid,
        "invalid_reason": hw.invalid_reason,
        "scored": {"trace": str(csv_path), "sentences": int(len(scored))},
        "dvfs_fit": fit,
        "exit_predictor": None if predictor is None else {
            "first_layer_entropy_edges": predictor.inner_edges.tolist(),
            "exit_layer_per_bin": predictor.exit_layer_per_bin.tolist(),
            "under_predicted_fraction": float(np.mean(predicted < exits)),
        },
    }
