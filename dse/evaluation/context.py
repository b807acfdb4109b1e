"""The evaluation context: everything scoring a design on one task needs, built once per study.

Owns :class:`EvalContext` (the prepared model, the tokenized dev rows, the baseline, the
training rows each design's DVFS exit predictor is fitted on, the model caches), how it is built from a study definition
(:func:`build_task_context`, :func:`prepare_for_study`, :func:`load_dev_set`,
:func:`load_dvfs_rows`, :func:`check_task_data`) and the model a trial's compression starts from (:func:`trial_model`:
the prepared one, or the one fine-tuned under the trial's training-time knobs).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from dse.compression.spec import TrainingSpec
from dse.config import FaultsConfig, FinetuneConfig, StudyConfig, TaskSettings, task_spec
from dse.data import load_task_split, resolve_glue_dir
from dse.data.metrics import main_metric
from dse.errors import DataError, DSEError, ModelError
from dse.evaluation.guards import InactiveKnob, check_offramp_design
from dse.io import DamagedFileError, atomic_write, read_guarded
from dse.modeling.batching import EncodedSet, encode_dataset
from dse.modeling.device import model_device, resolve_device
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import dev_layer_logits, predictions
from dse.modeling.loading import load_tokenizer, resolve_model_source
from dse.training.prepare import PreparedModel, load_train_rows, prepare_model
from dse.training.trainer import CompressionTrainingConfig, TrainedModel, train_compressed, training_key
from hwmodels import ModelShape

__all__ = ["DVFS_TRAIN_ROWS", "MAX_TRAINED_IN_MEMORY", "EvalContext", "TrainingSource", "build_task_context",
           "check_paths", "check_task_data", "load_arrays", "load_dev_set", "load_dvfs_rows", "place_task_context",
           "prepare_for_study", "save_arrays", "study_trained_model", "study_trial_model", "trained_model",
           "trial_model"]

log = logging.getLogger(__name__)
# Training sentences whose off-ramp entropies fit a design's DVFS exit predictor. They run through
# every compression setting's own model (once, next to its dev logits), so they cost a fraction of
# a dev pass (SST-2 dev: 872 rows); 256 still put ~16 sentences in each of the LUT's 16
# equal-population bins, enough for the 0.9-quantile exit layer each bin stores.
DVFS_TRAIN_ROWS = 256


MAX_TRAINED_IN_MEMORY = 2  # compression-trained models a context holds besides the prepared one


@dataclass(frozen=True)
class TrainingSource:
    """What a compression-aware fine-tune needs besides the prepared model: its training rows."""

    finetune: FinetuneConfig
    model_source: str | None = None  # with glue_dir: tokenize the study's train split on demand
    glue_dir: Path | None = None
    rows: EncodedSet | None = None  # or rows already tokenized (then pad_id is theirs)
    pad_id: int = 0
    cache_dir: Path | None = None  # trained checkpoints; None = dse.training.prepare.cache_root()
    train_from_dev: float | None = None  # the task's train rows are part of its dev set
    split_seed: int = 0

    @classmethod
    def for_task(cls, config: StudyConfig, task: TaskSettings) -> "TrainingSource":
        """A study task's training rows: tokenized from its train split (or dev part) on demand."""
        return cls(task.finetune, resolve_model_source(config.model.name), resolve_glue_dir(config.data.glue_dir),
                   train_from_dev=task.train_from_dev, split_seed=config.data.seed)

    def load_rows(self, task: str) -> tuple[EncodedSet, int]:
        if self.rows is not None:
            return self.rows, self.pad_id
        if self.model_source is None:
            raise DSEError("training-time compression needs training rows or a model source")
        return load_train_rows(model_source=self.model_source, task=task, glue_dir=self.glue_dir,
                               finetune=self.finetune, train_from_dev=self.train_from_dev,
                               split_seed=self.split_seed)


@dataclass
class EvalContext:
    """Everything a trial evaluation needs; built once per study (and once per Ray worker)."""

    task: str
    model: EarlyExitModel
    prepared_key: str
    dev: EncodedSet
    pad_id: int
    shape: ModelShape
    baseline_points: float  # main metric of the uncompressed model on this dev set, no exit
    cache_dir: Path | None
    dvfs_rows: EncodedSet | None = None  # training rows DVFS predictors are fitted on (never dev rows)
    training_source: TrainingSource | None = None  # where compression-aware fine-tunes get their rows
    faults: FaultsConfig = field(default_factory=FaultsConfig)  # eNVM fault injection (off by default)
    _memory: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # cached arrays by name
    _trained: dict[str, TrainedModel] = field(default_factory=dict)

    @property
    def dev_key(self) -> str:
        h = hashlib.sha256()
        for ids in self.dev.input_ids:
            h.update(np.asarray(ids, dtype=np.int32).tobytes() + b"|")
        h.update(np.asarray(self.dev.labels).tobytes())
        return h.hexdigest()[:16]

    @property
    def dvfs_key(self) -> str | None:
        """Identifies the DVFS fitting rows (None: the task has none, DVFS designs are refused)."""
        if self.dvfs_rows is None:
            return None
        h = hashlib.sha256()
        for ids in self.dvfs_rows.input_ids:
            h.update(np.asarray(ids, dtype=np.int32).tobytes() + b"|")
        return h.hexdigest()[:16]


def check_paths(config: StudyConfig) -> None:
    """The definition's model and GLUE folder exist (one line if not): cheap, so ``config
    validate`` and a new study check them before anything is written."""
    source = resolve_model_source(config.model.name)
    if not Path(source).is_dir():
        _check_hub_model(source)
    resolve_glue_dir(config.data.glue_dir)


def _check_hub_model(name: str) -> None:
    """A hub model must be in the local cache or reachable: one quick probe, not a minute of
    retries and warnings inside transformers."""
    from huggingface_hub import model_info, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    try:
        model_info(name, timeout=10)
    except Exception as exc:  # offline, unknown name, no network: all one line
        raise ModelError(f"model {name!r} is neither a local folder nor in the Hugging Face cache, and the hub "
                         f"cannot serve it ({exc.__class__.__name__}); give a local model folder, or run once "
                         "with network access") from None


def check_task_data(config: StudyConfig) -> None:
    """Load every task's fine-tuning and dev rows once, so that a task whose data is missing
    stops a study before any other task is fine-tuned (one ``DataError`` line)."""
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    for task in config.task_settings():
        for split in ("train", "dev"):
            try:
                load_task_split(task.name, split, glue_dir=glue_dir, train_from_dev=task.train_from_dev,
                                seed=config.data.seed)
            except DataError as exc:
                hint = ("; in a multi-task study, train_from_dev on the task fine-tunes it on part of its dev rows"
                        if split == "train" and "available splits: dev" in str(exc) else "")
                raise DataError(f"{exc}{hint}") from None


def prepare_for_study(config: StudyConfig, task: TaskSettings | None = None,
                      device: torch.device | str | None = None) -> PreparedModel:
    """A task's fine-tuned (uncompressed) early-exit model, on ``device`` (None: the study's
    ``device`` setting): from the cache, else trained (``task``: one of
    ``config.task_settings()``; None: the single task)."""
    task = task or config.task_settings()[0]
    device = resolve_device(config.device) if device is None else torch.device(device)
    return prepare_model(device=device,
        model_source=resolve_model_source(config.model.name), task=task.name,
        glue_dir=resolve_glue_dir(config.data.glue_dir),
        max_seq_length=config.model.max_seq_length, finetune=task.finetune,
        train_from_dev=task.train_from_dev, split_seed=config.data.seed,
    )


def load_dev_set(task: str, tokenizer: PreTrainedTokenizerBase, *, glue_dir: Path | None,
                 max_seq_length: int, dev_subset: int | None, seed: int,
                 train_from_dev: float | None = None) -> EncodedSet:
    """The dev rows a study scores on, tokenized: all of them, or a seeded subset (with
    ``train_from_dev``: of the dev rows not fine-tuned on)."""
    rows = load_task_split(task, "dev", glue_dir=glue_dir, train_from_dev=train_from_dev, seed=seed)
    dev = encode_dataset(rows, tokenizer, max_length=max_seq_length)
    if dev_subset is not None and dev_subset < len(dev):
        rng = np.random.default_rng(seed)
        dev = dev.subset(np.sort(rng.choice(len(dev), dev_subset, replace=False)))
    return dev


def build_task_context(config: StudyConfig, task: TaskSettings, *, cache_dir: Path | None,
                       baseline_points: float | None = None, device: torch.device | str | None = None) -> EvalContext:
    """Prepare (or load) one task's fine-tuned model, on ``device`` (None: the study's
    setting), and tokenize its dev rows."""
    spec = task_spec(task.name)
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    prepared = prepare_for_study(config, task, device)
    try:
        check_offramp_design(prepared.model, task.finetune, prepared.info.offramp_evidence)
    except InactiveKnob as exc:  # a defect in preparation, not in any one trial: no trial may use it
        raise DSEError(f"{prepared.path}: the fine-tuned model does not carry its off-ramp settings: {exc}") from None
    tokenizer = load_tokenizer(resolve_model_source(config.model.name))
    dev = load_dev_set(spec.name, tokenizer, glue_dir=glue_dir, max_seq_length=config.model.max_seq_length,
                       dev_subset=task.dev_subset, seed=config.data.seed, train_from_dev=task.train_from_dev)
    ctx = EvalContext(
        task=spec.name, model=prepared.model, prepared_key=prepared.info.key, dev=dev,
        pad_id=tokenizer.pad_token_id or 0,
        shape=ModelShape.from_hf_config(prepared.model.config, num_labels=spec.num_labels,
                                        offramp_head=prepared.model.head, offramp_pooling=prepared.model.pooling),
        baseline_points=0.0, cache_dir=cache_dir,
        training_source=TrainingSource.for_task(config, task),
        faults=config.faults,
    )
    if baseline_points is not None:
        ctx.baseline_points = float(baseline_points)
    elif task.dev_subset is None:
        # every dev row, tokenized at the same length as preparation scored them: the prepared
        # model's recorded baseline is this one (a dev pass saved at every study start)
        ctx.baseline_points = 100 * prepared.info.baseline_dev_metric
    else:
        uncompressed = dev_layer_logits(ctx.model, dev, pad_id=ctx.pad_id)
        ctx.baseline_points = 100 * main_metric(spec.name, predictions(uncompressed[-1]), dev.labels)
    ctx.dvfs_rows = load_dvfs_rows(spec.name, tokenizer, glue_dir=glue_dir, max_seq_length=config.model.max_seq_length,
                                   seed=config.data.seed, train_from_dev=task.train_from_dev,
                                   rows=config.data.calibration_rows)
    return ctx


def load_dvfs_rows(task: str, tokenizer: PreTrainedTokenizerBase, *, glue_dir: Path | None, max_seq_length: int,
                   seed: int, train_from_dev: float | None = None, rows: int = DVFS_TRAIN_ROWS) -> EncodedSet | None:
    """The training rows a design's DVFS exit predictor is fitted on (EdgeBERT fits its LUT on
    the training set; its compression is calibrated on them too): a fixed seeded subset of ``rows``
    (the study's ``data.calibration_rows``) of the train split (with
    ``train_from_dev``: of the dev rows fine-tuned on, never those scored), tokenized like the dev
    rows; None when the task has no train split here (DVFS designs then fail with a reason)."""
    try:
        train_ds = load_task_split(task, "train", glue_dir=glue_dir, train_from_dev=train_from_dev, seed=seed)
    except DataError:  # e.g. QNLI/MNLI offline
        return None
    if len(train_ds) > rows:  # pick before tokenizing: the train split can be 400k rows
        picked = np.sort(np.random.default_rng(0).choice(len(train_ds), rows, replace=False))
        # a new table, not select(): encode_dataset reads the Arrow table, which select() leaves whole
        train_ds = type(train_ds)(train_ds.data.table.take(picked))
    return encode_dataset(train_ds, tokenizer, max_length=max_seq_length)


def place_task_context(ctx: EvalContext, device: torch.device) -> None:
    """Move ``ctx``'s models (the prepared one and the trained ones it holds) to ``device``, in place."""
    ctx.model.to(device)
    for trained in ctx._trained.values():
        trained.model.to(device)


def trial_model(ctx: EvalContext, training: TrainingSpec) -> EarlyExitModel:
    """The model a trial's post-training compression starts from: the prepared one, or the one
    fine-tuned under the trial's training-time knobs (trained once, cached on disk and here)."""
    if training.is_noop:
        return ctx.model
    return trained_model(ctx, training).model


def study_trial_model(config: StudyConfig, prepared: PreparedModel, training: TrainingSpec,
                      task: TaskSettings | None = None) -> EarlyExitModel:
    """:func:`trial_model` outside a study's evaluation context (exports, re-evaluation)."""
    trained = study_trained_model(config, prepared, training, task)
    return prepared.model if trained is None else trained.model


def study_trained_model(config: StudyConfig, prepared: PreparedModel, training: TrainingSpec,
                        task: TaskSettings | None = None) -> TrainedModel | None:
    """:func:`trained_model` outside a study's evaluation context, with its info (learned spans,
    achieved sparsity); None when ``training`` trains nothing."""
    if training.is_noop:
        return None
    task = task or config.task_settings()[0]
    source = TrainingSource.for_task(config, task)
    return train_compressed(prepared.model, parent_key=prepared.info.key, task=task.name, spec=training,
                            finetune=task.finetune, train_rows=lambda: source.load_rows(task.name))


def trained_model(ctx: EvalContext, training: TrainingSpec) -> TrainedModel:
    key = training_key(ctx.prepared_key, training, CompressionTrainingConfig(), model_device(ctx.model))
    if key not in ctx._trained:
        source = ctx.training_source
        if source is None:
            raise DSEError("training-time compression knobs need the study's training data")
        while len(ctx._trained) >= MAX_TRAINED_IN_MEMORY:  # the disk cache keeps the others
            ctx._trained.pop(next(iter(ctx._trained)))
        ctx._trained[key] = train_compressed(
            ctx.model, parent_key=ctx.prepared_key, task=ctx.task, spec=training,
            finetune=source.finetune, train_rows=lambda: source.load_rows(ctx.task),
            cache_dir=source.cache_dir,
        )
    return ctx._trained[key]


def load_arrays(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """The arrays of a cached ``.npz`` (never unpickled), or None when it is missing or damaged
    (a damaged one is deleted and said so: the caller recomputes and rewrites it)."""
    if not path.is_file():
        return None
    def read(p: Path) -> dict[str, np.ndarray]:
        with np.load(p, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}  # read every array now: a truncated one fails here
        missing = [n for n in names if n not in arrays]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        return arrays

    try:  # BadZipFile, EOFError, ValueError (a pickle), KeyError, OSError: all damage
        return read_guarded(path, read)
    except (DamagedFileError, FileNotFoundError) as exc:
        cause = exc.cause if isinstance(exc, DamagedFileError) else exc
        log.warning("%s: damaged cache file (%s); discarded, computing it again", path, cause.__class__.__name__)
        path.unlink(missing_ok=True)
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an ``.npz`` file, written atomically (the evaluation caches)."""
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
