"""Export a design to a folder for both worlds, and load the versioned design JSON back.

``OUT/design.json``: the ``_type``/``_version``/``_data`` envelope with everything needed to
rebuild and re-score the design without Optuna (the resolved study definition, the compression
and hardware knobs, the trial's metrics). ``OUT/model/``: the compressed model in Hugging Face
``save_pretrained`` layout (:mod:`dse.artifacts.hf_export`). ``OUT/accelerator.json``: the design as an
EdgeBERT accelerator parameter file (``hwmodels``). A multi-task design has one
``OUT/<task>/model/`` and ``OUT/<task>/accelerator.json`` per task instead (one chip, each
task's own compression and exit predictor), and ``_data.accelerator`` maps task -> file content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from dse.config import KNOBS, StudyConfig, TaskSettings, config_hash, knob_of, knobs_for_task, parse_study_config
from dse.errors import DSEError
from dse.io import write_text_atomic
from dse.study.pareto import feasible

__all__ = ["ACCELERATOR_FILE", "DESIGN_FILE", "EXPORT_TYPE", "EXPORT_VERSION", "MODEL_DIR",
           "READABLE_VERSIONS", "design_path", "design_record", "export_design", "load_design",
           "write_design"]

EXPORT_TYPE = "edgebert-dse.design"
# 2: the design is a folder (design.json, model/, accelerator.json); _data gains
# prepared_key and files. Version 1 files (a lone JSON) still load.
EXPORT_VERSION = 2
READABLE_VERSIONS = (1, 2)
DESIGN_FILE = "design.json"
MODEL_DIR = "model"
ACCELERATOR_FILE = "accelerator.json"


def _complete_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    try:
        trial = study.trials[number]
    except IndexError:
        raise DSEError(f"trial {number} does not exist (the study has {len(study.trials)})") from None
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise DSEError(f"trial {number} is {trial.state.name}, not COMPLETE")
    return trial


def _task_prepared_keys(study: optuna.Study, config: StudyConfig) -> dict[str, str | None]:
    """The fine-tuned model key each task's trials used (a multi-task study records ``task:key,...``)."""
    recorded = study.user_attrs.get("prepared_key")
    if not config.is_multitask:
        return {config.task_settings()[0].name: recorded}
    pairs = dict(item.split(":", 1) for item in recorded.split(",")) if recorded else {}
    return {t.name: pairs.get(t.name) for t in config.task_settings()}


def design_record(study: optuna.Study, config: StudyConfig, number: int, *,
                  cache_dir: Path | None = None,
                  tensor_max_abs: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The design JSON of a COMPLETE trial (``tensor_max_abs``: per task, per-tensor AdaptivFloat biases)."""
    trial = _complete_trial(study, number)
    knobs = trial.user_attrs["knobs"]
    accuracy_knobs = {k: v for k, v in knobs.items() if knob_of(k).affects_accuracy}
    keys = _task_prepared_keys(study, config)
    accelerator = {
        t.name: accelerator_section(
            config, knobs_for_task(config.knob_values(knobs), t.name), task=t,
            train_entropy=cache_dir / f"train-entropy-{keys[t.name]}.npz" if cache_dir else None,
            tensor_max_abs=(tensor_max_abs or {}).get(t.name))
        for t in config.task_settings()
    }
    return {
        "_type": EXPORT_TYPE,
        "_version": EXPORT_VERSION,
        "_data": {
            "study": config.name,
            "trial": number,
            "config_hash": config_hash(config),
            "prepared_key": study.user_attrs.get("prepared_key"),
            **({"tasks": {t.name: {"mix": t.mix, "approximation": t.approximation}
                          for t in config.task_settings()}} if config.is_multitask else {"task": config.task}),
            "compression": accuracy_knobs,
            "hardware": {k: v for k, v in knobs.items() if k not in accuracy_knobs},
            "metrics": trial.user_attrs["metrics"],
            "constraints": dict(trial.constraints or {}),
            "feasible": feasible(trial),
            "details": trial.user_attrs.get("details", {}),
            "accelerator": accelerator if config.is_multitask else accelerator[config.task_settings()[0].name],
            "files": ({t: {"model": f"{t}/{MODEL_DIR}", "accelerator": f"{t}/{ACCELERATOR_FILE}"}
                       for t in accelerator} if config.is_multitask
                      else {"model": MODEL_DIR, "accelerator": ACCELERATOR_FILE}),
            "study_definition": config.model_dump(mode="json"),
        },
    }


def accelerator_section(config: StudyConfig, knobs: dict[str, Any], *, task: TaskSettings | None = None,
                        train_entropy: Path | None,
                        tensor_max_abs: dict[str, float] | None = None) -> dict[str, Any]:
    """The design as a parameter file in EdgeBERT accelerator terms (``hwmodels``).

    With DVFS, the entropy -> exit-layer lookup table is fitted on the study's cached
    training-set entropies, exactly as the trial evaluation does.
    """
    import numpy as np
    from transformers import AutoConfig

    from dse.config import task_spec
    from dse.modeling.loading import resolve_model_source
    from hwmodels import (CompressionProfile, HardwareConfig, ModelShape, accelerator_parameter_file,
                          exit_layers_from_entropies, fit_exit_predictor)

    hf_config = AutoConfig.from_pretrained(resolve_model_source(config.model.name))
    task = task or config.task_settings()[0]
    shape = ModelShape.from_hf_config(hf_config, num_labels=task_spec(task.name).num_labels)
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
    return accelerator_parameter_file(hardware, profile, shape, predictor, tensor_max_abs=tensor_max_abs)


def write_design(record: dict[str, Any], path: Path) -> Path:
    """Write a JSON file atomically (a reader never sees half of it)."""
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def _quantized_max_abs(model: Any) -> dict[str, float]:
    """max |w| of every AdaptivFloat-quantized weight (all linears, embedding tables), by name."""
    from torch import nn

    from dse.compression.apply import embedding_tables

    tables = {id(m) for m in embedding_tables(model).values()}
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or id(module) in tables:
            amax = float(module.weight.detach().abs().max())
            if amax > 0:  # an all-zero tensor has no bias to set
                out[f"{name}.weight"] = amax
    return out


def export_design(study: optuna.Study, config: StudyConfig, number: int, out: Path, *,
                  cache_dir: Path | None = None) -> Path:
    """Write trial ``number`` into the folder ``out``: design.json, model/, accelerator.json
    (a multi-task design: design.json and one <task>/model/, <task>/accelerator.json per task).

    The model is the study's prepared model (from the fine-tune cache, or fine-tuned again as
    the study did), fine-tuned under the trial's training-time knobs if it has any, then
    compressed with the trial's knobs by the same code as the trial evaluation, so its weights
    are exactly those the trial was scored with. design.json is written last:
    its presence marks a complete export.
    """
    from dse.artifacts.hf_export import DevRows, save_exported_model
    from dse.compression.apply import compress
    from dse.compression.spec import CompressionSpec
    from dse.evaluation import prepare_for_study, study_trial_model
    from dse.modeling.loading import load_tokenizer, resolve_model_source

    out = Path(out)
    if out.suffix == ".json":
        raise DSEError(f"{out}: the export is a folder (design.json, model/, accelerator.json); "
                       "give a folder name")
    if out.exists() and not out.is_dir():
        raise DSEError(f"{out} exists and is not a folder")
    trial = _complete_trial(study, number)
    knobs = config.knob_values(trial.user_attrs["knobs"])
    metrics = trial.user_attrs["metrics"]
    keys = _task_prepared_keys(study, config)
    tokenizer = load_tokenizer(resolve_model_source(config.model.name))
    max_abs: dict[str, dict[str, float]] = {}
    for task in config.task_settings():
        task_knobs = knobs_for_task(knobs, task.name)
        prepared = prepare_for_study(config, task)
        if keys[task.name] is not None and prepared.info.key != keys[task.name]:
            raise DSEError(f"the fine-tuned {task.name} model now has key {prepared.info.key} but the study used "
                           f"{keys[task.name]} (model, data, fine-tuning settings or torch changed); "
                           "its accuracy would differ")
        spec = CompressionSpec.from_knobs(task_knobs)  # training-time knobs: start from the trained model
        compressed, achieved = compress(study_trial_model(config, prepared, spec.training, task), spec)
        prefix = f"{task.name}." if config.is_multitask else ""
        save_exported_model(
            compressed, tokenizer, out / _task_dir(config, task) / MODEL_DIR,
            task=task.name, max_seq_length=config.model.max_seq_length,
            exit_threshold=float(task_knobs["exit_threshold"]),
            dev_rows=DevRows(glue_dir=config.data.glue_dir, dev_subset=task.dev_subset, seed=config.data.seed,
                             train_from_dev=task.train_from_dev),
            compression={k: v for k, v in task_knobs.items() if KNOBS[k].affects_accuracy},
            achieved=achieved,
            design={"study": config.name, "trial": number, "config_hash": config_hash(config),
                    "prepared_key": prepared.info.key,
                    "metrics": {k: metrics[prefix + k] for k in ("accuracy", "avg_exit_layer")
                                if prefix + k in metrics}},
        )
        max_abs[task.name] = _quantized_max_abs(compressed)
    record = design_record(study, config, number, cache_dir=cache_dir, tensor_max_abs=max_abs)
    accelerator = record["_data"]["accelerator"]
    for task in config.task_settings():
        write_design(accelerator[task.name] if config.is_multitask else accelerator,
                     out / _task_dir(config, task) / ACCELERATOR_FILE)
    write_design(record, out / DESIGN_FILE)
    return out


def _task_dir(config: StudyConfig, task: TaskSettings) -> str:
    """Where a task's model and accelerator file go inside an export folder."""
    return task.name if config.is_multitask else ""


def design_path(path: Path) -> Path:
    """The design JSON of ``path``: an export folder's design.json, or the file itself."""
    path = Path(path)
    if path.is_dir():
        if not (path / DESIGN_FILE).is_file():
            hint = "; score an exported model with: dse evaluate --model" if (path / "config.json").is_file() else ""
            raise DSEError(f"{path}: not a design export folder (no {DESIGN_FILE}){hint}")
        return path / DESIGN_FILE
    return path


def load_design(path: Path) -> tuple[dict[str, Any], StudyConfig]:
    """The design's ``_data`` and its study definition; refuses unknown types and versions.

    ``path`` is an export folder or its design.json (or a version-1 lone JSON file).
    """
    path = design_path(path)
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DSEError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DSEError(f"{path}: not a readable JSON design export ({exc.__class__.__name__})") from None
    if not isinstance(record, dict) or record.get("_type") != EXPORT_TYPE:
        raise DSEError(f"{path}: not an {EXPORT_TYPE} export")
    if record.get("_version") not in READABLE_VERSIONS:
        raise DSEError(f"{path}: export version {record.get('_version')} is not supported "
                       f"(this tool reads {', '.join(map(str, READABLE_VERSIONS))})")
    data = record.get("_data")
    if not isinstance(data, dict) or not {"compression", "hardware", "study_definition"} <= set(data):
        raise DSEError(f"{path}: malformed {EXPORT_TYPE} export (missing compression, hardware "
                       "or study_definition)")
    unknown = {k for k in set(data["compression"]) | set(data["hardware"]) if k.split(".", 1)[-1] not in KNOBS}
    if unknown:
        raise DSEError(f"{path}: unknown knobs {sorted(unknown)}")
    return data, parse_study_config(data["study_definition"], source=str(path))
