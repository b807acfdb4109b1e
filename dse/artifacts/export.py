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

from dse.config import (KNOBS, StudyConfig, TaskSettings, check_knob_value, config_hash, knob_of, knobs_for_task,
                        parse_study_config)
from dse.errors import DSEError
from dse.artifacts.reading import read_export_file
from dse.io import DamagedFileError, check_writable, read_guarded, remove_stale_temps, write_text_atomic
from dse.study.pareto import feasible, named_constraints

__all__ = ["ACCELERATOR_FILE", "DESIGN_FILE", "EXPORT_TYPE", "EXPORT_VERSION", "MODEL_DIR",
           "READABLE_VERSIONS", "check_export_target", "design_path", "design_record", "export_design", "load_design",
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
                  tensor_max_abs: dict[str, dict[str, float]] | None = None,
                  profiles: dict[str, Any] | None = None,
                  train_entropy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The design JSON of a COMPLETE trial (``tensor_max_abs``: per task, per-tensor AdaptivFloat
    biases; ``profiles``: per task, the ``CompressionProfile`` the trial was costed with, needed
    when it has training-time knobs; ``train_entropy``: per task, the off-ramp entropies on the
    DVFS training rows of the trial's own model, needed with DVFS: see :func:`export_design`)."""
    from dse.compression.spec import CompressionSpec
    from dse.evaluation.score import compression_profile

    trial = _complete_trial(study, number)
    knobs = trial.user_attrs["knobs"]
    accuracy_knobs = {k: v for k, v in knobs.items() if knob_of(k).affects_accuracy}
    accelerator = {}
    for t in config.task_settings():
        task_knobs = knobs_for_task(config.knob_values(knobs), t.name)
        profile = (profiles or {}).get(t.name)
        if profile is None:
            spec = CompressionSpec.from_knobs(task_knobs)
            if not spec.training.is_noop:  # learned spans live in the fine-tuned model
                raise DSEError(f"trial {number} has training-time knobs: its accelerator file needs "
                               "the fine-tuned model (export the design folder)")
            profile = compression_profile(spec)
        accelerator[t.name] = accelerator_section(
            config, task_knobs, task=t, profile=profile, train_entropy=(train_entropy or {}).get(t.name),
            tensor_max_abs=(tensor_max_abs or {}).get(t.name))
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
            "constraints": named_constraints(trial),
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
                        profile: Any, train_entropy: Any | None,
                        tensor_max_abs: dict[str, float] | None = None) -> dict[str, Any]:
    """The design as a parameter file in EdgeBERT accelerator terms (``hwmodels``).

    ``profile`` is the trial's ``CompressionProfile`` (:func:`dse.evaluation.score.compression_profile`:
    trained sparsity, learned spans, activation bits) and the hardware comes from the same
    function as the trial's, so re-costing the file gives the trial's figures. With DVFS, the
    entropy -> exit-layer lookup table is fitted on ``train_entropy`` (the trial's own model's
    off-ramp entropies on the DVFS training rows) by the trial evaluation's own function.
    """
    from transformers import AutoConfig

    from dse.config import task_spec
    from dse.modeling.loading import resolve_model_source
    from dse.evaluation.score import hardware_config
    from hwmodels import ModelShape, accelerator_parameter_file

    hf_config = AutoConfig.from_pretrained(resolve_model_source(config.model.name))
    task = task or config.task_settings()[0]
    shape = ModelShape.from_hf_config(hf_config, num_labels=task_spec(task.name).num_labels,
                                      offramp_head=task.finetune.offramp_head,
                                      offramp_pooling=task.finetune.offramp_pooling)
    hardware = hardware_config(knobs)
    predictor = None
    if hardware.dvfs:
        from dse.evaluation.exits import exit_predictor

        if train_entropy is None:  # without it the chip would have no LUT
            raise DSEError("a DVFS design's exit-predictor table is fitted on its own model's training-row "
                           "entropies: export the design folder")
        predictor = exit_predictor(train_entropy, float(knobs["exit_threshold"]))
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
                  cache_dir: Path | None = None, force: bool = False) -> Path:
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
    from dse.evaluation import prepare_for_study
    from dse.data import resolve_glue_dir
    from dse.evaluation.context import load_dvfs_rows, study_trained_model
    from dse.evaluation.score import compression_profile
    from dse.modeling.loading import load_tokenizer, resolve_model_source

    out = Path(out)
    trial = _complete_trial(study, number)
    for task in config.task_settings():  # a killed export's half-written model/ (tens of MB): ours, by name
        remove_stale_temps(out / _task_dir(config, task))
    check_export_target(out, config, number, force=force)  # before any work: refuse early
    for name, value in trial.user_attrs["knobs"].items():  # e.g. fp32 activations (activation_bits=0) of an older dse
        try:
            check_knob_value(name, value)
        except ValueError as exc:
            raise DSEError(f"trial {number} was scored with {exc}; an older version of dse allowed it, and its "
                           "figures describe another design than this version would export: run the study again") from None
    knobs = config.knob_values(trial.user_attrs["knobs"])
    metrics = trial.user_attrs["metrics"]
    keys = _task_prepared_keys(study, config)
    tokenizer = load_tokenizer(resolve_model_source(config.model.name))
    max_abs: dict[str, dict[str, float]] = {}
    profiles = {}
    train_entropy = {}
    for task in config.task_settings():
        task_knobs = knobs_for_task(knobs, task.name)
        prepared = prepare_for_study(config, task)
        if keys[task.name] is not None and prepared.info.key != keys[task.name]:
            raise DSEError(f"the fine-tuned {task.name} model now has key {prepared.info.key} but the study used "
                           f"{keys[task.name]} (model, data, fine-tuning settings or torch changed); "
                           "its accuracy would differ")
        spec = CompressionSpec.from_knobs(task_knobs)  # training-time knobs: start from the trained model
        trained = study_trained_model(config, prepared, spec.training, task)
        # the trial's DVFS training rows: its activation scales and off-ramps were calibrated on them,
        # its DVFS table fitted on them
        dvfs_rows = load_dvfs_rows(task.name, tokenizer, glue_dir=resolve_glue_dir(config.data.glue_dir),
                                   max_seq_length=config.model.max_seq_length, seed=config.data.seed,
                                   train_from_dev=task.train_from_dev, rows=config.data.calibration_rows)
        compressed, achieved = compress(prepared.model if trained is None else trained.model, spec,
                                        calibration=dvfs_rows, pad_id=tokenizer.pad_token_id or 0)
        # the profile the trial was costed with: trained sparsity, learned spans, activation bits
        profiles[task.name] = compression_profile(spec, trained_info=None if trained is None else trained.info)
        prefix = f"{task.name}." if config.is_multitask else ""
        save_exported_model(
            compressed, tokenizer, out / _task_dir(config, task) / MODEL_DIR,
            task=task.name, max_seq_length=config.model.max_seq_length,
            exit_threshold=float(task_knobs["exit_threshold"]),
            dev_rows=DevRows(glue_dir=config.data.glue_dir, dev_subset=task.dev_subset, seed=config.data.seed,
                             train_from_dev=task.train_from_dev, calibration_rows=config.data.calibration_rows),
            compression={k: v for k, v in task_knobs.items() if KNOBS[k].affects_accuracy},
            achieved=achieved,
            design={"study": config.name, "trial": number, "config_hash": config_hash(config),
                    "prepared_key": prepared.info.key,
                    "metrics": {k: metrics[prefix + k] for k in ("accuracy", "avg_exit_layer")
                                if prefix + k in metrics}},
        )
        max_abs[task.name] = _quantized_max_abs(compressed)
        if bool(task_knobs["dvfs"]):
            train_entropy[task.name] = _trial_train_entropy(config, task, trial, compressed, dvfs_rows,
                                                            tokenizer.pad_token_id or 0, cache_dir)
    record = design_record(study, config, number, cache_dir=cache_dir, tensor_max_abs=max_abs, profiles=profiles,
                           train_entropy=train_entropy)
    accelerator = record["_data"]["accelerator"]
    for task in config.task_settings():
        write_design(accelerator[task.name] if config.is_multitask else accelerator,
                     out / _task_dir(config, task) / ACCELERATOR_FILE)
    write_design(record, out / DESIGN_FILE)
    return out


def _trial_train_entropy(config: StudyConfig, task: TaskSettings, trial: optuna.trial.FrozenTrial,
                         compressed: Any, rows: Any, pad_id: int, cache_dir: Path | None) -> Any:
    """The off-ramp entropies on the DVFS training rows of the trial's own model, which its DVFS
    table was fitted on: read from the trial's logits cache entry (its recorded ``eval_key``),
    else computed again from ``compressed`` (the same model on the same ``rows``)."""
    import numpy as np

    from dse.evaluation.cache import DESIGN_ARRAYS
    from dse.evaluation.context import load_arrays
    from dse.modeling.early_exit import entropy
    from dse.modeling.inference import dev_layer_logits

    details = trial.user_attrs.get("details") or {}
    if config.is_multitask:
        details = (details.get("tasks") or {}).get(task.name) or {}
    key = details.get("eval_key")
    if cache_dir is not None and isinstance(key, str) and key.isalnum():
        path = Path(cache_dir) / f"{key}.npz"
        arrays = load_arrays(path, DESIGN_ARRAYS) if path.is_file() else None  # a damaged one: discarded
        if arrays is not None:
            return arrays["train_entropy"]
    if rows is None:
        return np.zeros((0, compressed.num_layers), dtype=np.float32)  # refused with the trial's reason
    return entropy(dev_layer_logits(compressed, rows, pad_id=pad_id)).T.numpy()


def _ours(path: Path, config: StudyConfig) -> set[Path]:
    """The paths an export of ``config`` writes inside its folder (nothing else is ever replaced)."""
    names = {Path(DESIGN_FILE)}
    for task in config.task_settings():
        names |= {Path(_task_dir(config, task)) / MODEL_DIR, Path(_task_dir(config, task)) / ACCELERATOR_FILE}
    return {path / n for n in names}


def _is_exported_model(folder: Path) -> bool:
    from dse.artifacts.hf_export import CONFIG_KEY

    try:
        config = read_guarded(folder / "config.json", _read_json)
    except (OSError, DamagedFileError):  # damaged or missing: not a model we wrote
        return False
    return isinstance(config, dict) and CONFIG_KEY in config


def check_export_target(out: Path, config: StudyConfig, number: int, *, force: bool = False) -> None:
    """Refuse, before any work, a target we could not write or would clobber.

    An existing non-empty folder is written into only if it is an export of the same design
    (same study definition and trial: it is refreshed), or with ``force``; even then a
    ``model/`` that is not an exported model is never replaced, and nothing else is touched.
    """
    out = Path(out)
    if out.suffix == ".json":
        raise DSEError(f"{out}: the export is a folder (design.json, model/, accelerator.json); "
                       "give a folder name")
    if out.exists() and not out.is_dir():
        raise DSEError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        same = False
        if (out / DESIGN_FILE).is_file():
            try:
                record = read_guarded(out / DESIGN_FILE, _read_json)
                data = record.get("_data", {}) if isinstance(record, dict) else {}
                same = (isinstance(data, dict) and data.get("trial") == number
                        and data.get("config_hash") == config_hash(config))
            except (OSError, DamagedFileError):  # a damaged design.json is not ours to overwrite
                same = False
        if not same and not force:
            raise DSEError(f"{out} is not empty and not an export of trial {number} of this study; "
                           "give an empty or new folder (or --force to write our files into it)")
        for path in _ours(out, config):
            if path.name == MODEL_DIR and path.exists() and not (path.is_dir() and _is_exported_model(path)):
                raise DSEError(f"{path} exists and is not an exported model; it will not be replaced: "
                               "move it away or export elsewhere")
            if path.name != MODEL_DIR and path.is_dir():
                raise DSEError(f"{path} is a folder; move it away or export elsewhere")
    _check_writable(out)


def _check_writable(out: Path) -> None:
    """Fail now, not after minutes of work, if the export folder cannot be written."""
    try:
        check_writable(out)
    except OSError as exc:
        raise DSEError(f"cannot write the export to {out}: {exc.strerror or exc.__class__.__name__}"
                       + (f" ({exc.filename})" if exc.filename else "")) from None


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


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_design(path: Path) -> tuple[dict[str, Any], StudyConfig]:
    """The design's ``_data`` and its study definition; refuses unknown types and versions.

    ``path`` is an export folder or its design.json (or a version-1 lone JSON file).
    """
    path = design_path(path)
    try:
        record = read_export_file(Path(path), _read_json, "JSON design export")  # damage: one line naming it
    except FileNotFoundError:
        raise DSEError(f"{path}: no such file") from None
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
    for name, value in {**data["compression"], **data["hardware"]}.items():  # before any model work
        try:
            check_knob_value(name, value)
        except ValueError as exc:
            raise DSEError(f"{path}: {exc}; this design.json was edited or damaged: export the design again") from None
    return data, parse_study_config(data["study_definition"], source=str(path))
