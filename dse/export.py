"""Versioned design export (``_type``/``_version``/``_data`` envelope) and its loader.

The JSON holds everything needed to rebuild and re-score the design without Optuna: the
resolved study definition, the compression and hardware knobs, and the trial's metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from dse.config import KNOBS, StudyConfig, config_hash, parse_study_config
from dse.errors import DSEError
from dse.results import feasible

__all__ = ["EXPORT_TYPE", "EXPORT_VERSION", "design_record", "load_design", "write_design"]

EXPORT_TYPE = "edgebert-dse.design"
EXPORT_VERSION = 1


def design_record(study: optuna.Study, config: StudyConfig, number: int, *,
                  cache_dir: Path | None = None) -> dict[str, Any]:
    try:
        trial = study.trials[number]
    except IndexError:
        raise DSEError(f"trial {number} does not exist (the study has {len(study.trials)})") from None
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise DSEError(f"trial {number} is {trial.state.name}, not COMPLETE")
    knobs = trial.user_attrs["knobs"]
    accuracy_knobs = {k: v for k, v in knobs.items() if KNOBS[k].affects_accuracy}
    return {
        "_type": EXPORT_TYPE,
        "_version": EXPORT_VERSION,
        "_data": {
            "study": config.name,
            "trial": number,
            "config_hash": config_hash(config),
            "task": config.task,
            "compression": accuracy_knobs,
            "hardware": {k: v for k, v in knobs.items() if k not in accuracy_knobs},
            "metrics": trial.user_attrs["metrics"],
            "constraints": dict(trial.constraints or {}),
            "feasible": feasible(trial),
            "details": trial.user_attrs.get("details", {}),
            "accelerator": accelerator_section(
                config, config.knob_values(knobs),
                train_entropy=cache_dir / f"train-entropy-{study.user_attrs.get('prepared_key')}.npz"
                if cache_dir else None,
            ),
            "study_definition": config.model_dump(mode="json"),
        },
    }


def accelerator_section(config: StudyConfig, knobs: dict[str, Any], *,
                        train_entropy: Path | None) -> dict[str, Any]:
    """The design as a parameter file in EdgeBERT accelerator terms (``hwmodels``).

    With DVFS, the entropy -> exit-layer lookup table is fitted on the study's cached
    training-set entropies, exactly as the trial evaluation does.
    """
    import numpy as np
    from transformers import AutoConfig

    from dse.data import task_spec
    from dse.modeling.loading import resolve_model_source
    from hwmodels import (CompressionProfile, HardwareConfig, ModelShape, accelerator_parameter_file,
                          exit_layers_from_entropies, fit_exit_predictor)

    hf_config = AutoConfig.from_pretrained(resolve_model_source(config.model.name))
    shape = ModelShape.from_hf_config(hf_config, num_labels=task_spec(config.task).num_labels)
    profile = CompressionProfile(
        encoder_density=1 - knobs["encoder_pruning"], embedding_density=1 - knobs["embedding_pruning"],
        weight_bits=knobs["weight_bits"], weight_exp_bits=knobs["weight_exp_bits"],
        attention_span=None if knobs["attention_span"] >= 512 else knobs["attention_span"],
    )
    hardware = HardwareConfig(
        vmac_lanes=knobs["vmac_lanes"], vector_size=knobs["vector_size"], sram_kb=knobs["sram_kb"],
        envm_cell=knobs["envm_cell"], voltage_v=knobs["voltage_v"], dvfs=knobs["dvfs"],
        latency_target_ms=knobs["latency_target_ms"],
    )
    predictor = None
    if knobs["dvfs"] and train_entropy is not None and train_entropy.is_file():
        with np.load(train_entropy, allow_pickle=False) as data:
            ent = data["entropy"]
        predictor = fit_exit_predictor(ent[:, 0], exit_layers_from_entropies(ent, knobs["exit_threshold"]))
    return accelerator_parameter_file(hardware, profile, shape, predictor)


def write_design(record: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def load_design(path: Path) -> tuple[dict[str, Any], StudyConfig]:
    """The design's ``_data`` and its study definition; refuses unknown types and versions."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DSEError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DSEError(f"{path}: not a readable JSON design export ({exc.__class__.__name__})") from None
    if not isinstance(record, dict) or record.get("_type") != EXPORT_TYPE:
        raise DSEError(f"{path}: not an {EXPORT_TYPE} export")
    if record.get("_version") != EXPORT_VERSION:
        raise DSEError(f"{path}: export version {record.get('_version')} is not supported "
                       f"(this tool reads {EXPORT_VERSION})")
    data = record["_data"]
    unknown = set(data["compression"]) | set(data["hardware"])
    unknown -= set(KNOBS)
    if unknown:
        raise DSEError(f"{path}: unknown knobs {sorted(unknown)}")
    return data, parse_study_config(data["study_definition"], source=str(path))
