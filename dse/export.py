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


def design_record(study: optuna.Study, config: StudyConfig, number: int) -> dict[str, Any]:
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
            "study_definition": config.model_dump(mode="json"),
        },
    }


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
