"""Model preparation: two-stage off-ramp fine-tuning, cached on disk by a content hash.

Stage 1 (EdgeBERT/DeeBERT) trains the backbone and the final classifier. Stage 2 trains only
the off-ramps; because the backbone is frozen then, it runs on [CLS] features computed once,
which turns minutes of forward passes into seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F

from dse.config import FinetuneConfig, task_spec
from dse.data import load_task_split
from dse.data.metrics import main_metric
from dse.io import DamagedFileError, atomic_folder, read_guarded
from dse.modeling.batching import EncodedSet, encode_dataset, iter_batches
from dse.modeling.device import device_class, model_device, train_autocast
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import dev_layer_logits, predictions
from dse.modeling.loading import load_backbone, load_tokenizer

__all__ = [
    "PREPARE_VERSION",
    "PreparedModel",
    "cache_root",
    "layer_cls_features",
    "load_cached",
    "load_checkpoint",
    "load_prepared",
    "load_train_rows",
    "offramp_rows",
    "prepare_model",
    "save_checkpoint",
    "stage1_parameters",
    "train_offramps",
]

PREPARE_VERSION = 1
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class PreparedInfo:
    key: str
    task: str
    model_source: str
    num_labels: int
    train_rows: int
    baseline_dev_metric: float  # the task's main metric on the full dev set, final layer (0-1)
    baseline_dev_metric_by_layer: list[float]
    stage1_seconds: float
    stage2_seconds: float


@dataclass
class PreparedModel:
    model: EarlyExitModel
    info: PreparedInfo
    path: Path


def cache_root() -> Path:
    """Where prepared checkpoints live: ``$DSE_CACHE_DIR`` or ``~/.cache/edgebert-dse``."""
    return Path(os.environ.get("DSE_CACHE_DIR") or Path.home() / ".cache" / "edgebert-dse")


def _fingerprint_folder(path: Path) -> str:
    """Model identity: config.json content plus the name and size of every file."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(path)}:{f.stat().st_size};".encode())
        h.update((path / "config.json").read_bytes())
    else:  # a hub name
        h.update(str(path).encode())
    return h.hexdigest()


def _fingerprint_data(ds) -> str:  # noqa: ANN001 - datasets.Dataset
    return hashlib.sha256(ds.data.table.to_pandas().to_csv(index=False).encode()).hexdigest()


def preparation_key(*, model_source: str, task: str, max_seq_length: int, finetune: FinetuneConfig,
                    train_fingerprint: str, dev_fingerprint: str, device: str = "cpu") -> str:
    """``device``: the class the model trains on (bf16 autocast on CUDA changes the weights);
    only a non-CPU class enters the key, which keeps the keys of models trained on CPU."""
    blob = json.dumps(
        {**({"device": device_class(device)} if device_class(device) != "cpu" else {}),
            "v": PREPARE_VERSION,
            "model": _fingerprint_folder(Path(model_source)),
            "task": task,
            "max_seq_length": max_seq_length,
            "finetune": finetune.model_dump(mode="json", exclude=set() if finetune.freeze_embeddings
                                            else {"freeze_embeddings"}),  # keeps older keys
            "train": train_fingerprint,
            "dev": dev_fingerprint,
            "torch": torch.__version__.split("+")[0],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _train_subset(enc: EncodedSet, texts: list[str], cfg: FinetuneConfig) -> EncodedSet:
    rows = np.arange(len(enc))
    if cfg.min_words:
        rows = rows[np.array([len(t.split()) >= cfg.min_words for t in texts], dtype=bool)]
    if cfg.train_subset is not None and cfg.train_subset < len(rows):
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.train_subset, replace=False))
    return enc.subset(rows)


def _loss(logits: torch.Tensor, labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    if num_labels == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels.long())


def stage1_parameters(model: EarlyExitModel, finetune: FinetuneConfig) -> list[tuple[str, torch.nn.Parameter]]:
    """What stage 1 (and a compression-aware fine-tune) trains: the backbone and the final
    classifier, not the earlier off-ramps, nor the embedding module when it is frozen."""
    last = model.num_layers - 1
    return [(n, p) for n, p in model.named_parameters()
            if (not n.startswith("off_ramps.") or n.startswith(f"off_ramps.{last}."))
            and not (finetune.freeze_embeddings and n.startswith("backbone.embeddings."))]


def _stage1(model: EarlyExitModel, train: EncodedSet, cfg: FinetuneConfig, pad_id: int) -> None:
    params = [p for _, p in stage1_parameters(model, cfg)]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    steps_per_epoch = -(-len(train) // cfg.batch_size)
    total = max(1, round(steps_per_epoch * cfg.epochs))
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total)
    )
    model.train()
    device = model_device(model)
    step, epoch = 0, 0
    while step < total:
        for batch in iter_batches(train, batch_size=cfg.batch_size, pad_id=pad_id,
                                  shuffle_seed=cfg.seed + epoch):
            batch = batch.to(device)
            with train_autocast(device):
                logits = model.final_logits(batch.input_ids, batch.attention_mask, batch.token_type_ids)
                loss = _loss(logits.float(), batch.labels, model.num_labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                log.info("stage 1: step %d/%d loss %.4f", step, total, loss.item())
            if step >= total:
                break
        epoch += 1


@torch.inference_mode()
def layer_cls_features(model: EarlyExitModel, enc: EncodedSet, pad_id: int) -> torch.Tensor:
    """[CLS] vectors after every layer, ``[layers, rows, hidden]`` in dataset order (fp32, on
    the model's device: stage 2 trains there)."""
    model.eval()
    device = model_device(model)
    out = torch.empty(model.num_layers, len(enc), model.config.hidden_size, device=device)
    for batch in iter_batches(enc, batch_size=64, pad_id=pad_id):
        batch = batch.to(device)
        out[:, torch.as_tensor(batch.rows, device=device)] = model.cls_features(
            batch.input_ids, batch.attention_mask, batch.token_type_ids
        )
    return out


def train_offramps(model: EarlyExitModel, feats: torch.Tensor, labels: torch.Tensor, cfg: FinetuneConfig) -> None:
    """Stage 2: train every off-ramp but the last on cached ``[layers, rows, hidden]`` features."""
    ramps = model.off_ramps[:-1]
    if len(ramps) == 0:
        return
    opt = torch.optim.AdamW(ramps.parameters(), lr=cfg.offramp_learning_rate, weight_decay=0.01)
    gen = torch.Generator().manual_seed(cfg.seed)
    ramps.train()
    for _ in range(cfg.offramp_epochs):
        for idx in torch.randperm(feats.shape[1], generator=gen).split(128):
            loss = sum(_loss(ramp(feats[i, idx]), labels[idx], model.num_labels)
                       for i, ramp in enumerate(ramps))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()


def save_checkpoint(model: EarlyExitModel, info: dict, target: Path) -> None:
    """Backbone, off-ramps, hard spans (when any is finite) and ``info.json``, written atomically.

    If another process wrote ``target`` first (two Ray workers training the same model), its
    checkpoint is kept and ours dropped: both came from the same inputs.
    """
    with atomic_folder(target, if_exists="keep") as tmp:  # a half-written checkpoint is never visible
        model.backbone.save_pretrained(tmp / "backbone")
        safetensors.torch.save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.off_ramps.state_dict().items()},
            str(tmp / "off_ramps.safetensors"),
        )
        if bool(torch.isfinite(model.spans).any()):
            safetensors.torch.save_file({"spans": model.spans.cpu().contiguous()}, str(tmp / "spans.safetensors"))
        (tmp / "info.json").write_text(json.dumps(info, indent=2))


def load_checkpoint(path: Path, num_labels: int) -> EarlyExitModel:
    """The model written by :func:`save_checkpoint`, in eval mode."""
    model = EarlyExitModel(load_backbone(str(path / "backbone")), num_labels)
    model.off_ramps.load_state_dict(safetensors.torch.load_file(str(path / "off_ramps.safetensors")))
    if (path / "spans.safetensors").is_file():
        model.spans.copy_(safetensors.torch.load_file(str(path / "spans.safetensors"))["spans"])
    model.eval()
    return model


def load_prepared(path: Path) -> PreparedModel:
    info = PreparedInfo(**json.loads((path / "info.json").read_text()))
    return PreparedModel(load_checkpoint(path, info.num_labels), info, path)


def load_cached(path: Path, load: Callable[[Path], T], what: str) -> T | None:
    """``load(path)`` of a cached checkpoint, or None (and the folder discarded) if it is damaged.

    A cache holds only what we computed, so a truncated or garbage file (or a pickle: weights
    are read as safetensors only) is recomputed rather than blocking every later run.
    """
    try:
        return read_guarded(path, load)
    except (DamagedFileError, FileNotFoundError) as exc:  # any failure to read our own cache means: damaged
        cause = exc.cause if isinstance(exc, DamagedFileError) else exc
        first = (str(cause).strip().splitlines() or [""])[0][:200] or cause.__class__.__name__
        log.warning("%s: damaged cached %s (%s: %s); discarded, computing it again",
                    path, what, cause.__class__.__name__, first)
        shutil.rmtree(path, ignore_errors=True)
        return None


def offramp_rows(train: EncodedSet, finetune: FinetuneConfig) -> EncodedSet:
    """The seeded subset of training rows whose [CLS] features train the off-ramps."""
    if finetune.offramp_train_subset is not None and finetune.offramp_train_subset < len(train):
        rng = np.random.default_rng(finetune.seed)
        return train.subset(np.sort(rng.choice(len(train), finetune.offramp_train_subset, replace=False)))
    return train


def load_train_rows(*, model_source: str, task: str, glue_dir: Path | None, finetune: FinetuneConfig,
                    train_from_dev: float | None = None, split_seed: int = 0) -> tuple[EncodedSet, int]:
    """The tokenized fine-tuning rows (``finetune``'s subset) and the tokenizer's pad id
    (``train_from_dev``, ``split_seed``: see :func:`dse.data.load_task_split`)."""
    train_ds = load_task_split(task_spec(task).name, "train", glue_dir=glue_dir,
                               train_from_dev=train_from_dev, seed=split_seed)
    tokenizer = load_tokenizer(model_source)
    train_all = encode_dataset(train_ds, tokenizer, max_length=finetune.max_train_seq_length)
    train = _train_subset(train_all, train_ds.data.column("text_a").to_pylist(), finetune)
    return train, tokenizer.pad_token_id or 0


def prepare_model(
    *,
    model_source: str,
    task: str,
    glue_dir: Path | None,
    max_seq_length: int,
    finetune: FinetuneConfig,
    cache_dir: Path | None = None,
    train_from_dev: float | None = None,
    split_seed: int = 0,
    device: torch.device | str = "cpu",
) -> PreparedModel:
    """Fine-tuned early-exit model for ``task``, on ``device``; trained once, then loaded from the cache.

    ``train_from_dev``: fine-tune on that seeded fraction of the dev rows instead of the train
    split (see :func:`dse.data.load_task_split`); the baseline is then on the other dev rows.
    """
    spec = task_spec(task)
    train_ds = load_task_split(spec.name, "train", glue_dir=glue_dir, train_from_dev=train_from_dev, seed=split_seed)
    dev_ds = load_task_split(spec.name, "dev", glue_dir=glue_dir, train_from_dev=train_from_dev, seed=split_seed)
    key = preparation_key(
        model_source=model_source, task=spec.name, max_seq_length=max_seq_length,
        finetune=finetune, train_fingerprint=_fingerprint_data(train_ds),
        dev_fingerprint=_fingerprint_data(dev_ds), device=device_class(device),
    )
    target = (cache_dir or cache_root()) / "prepared" / f"{spec.name}-{key}"
    if (target / "info.json").is_file():
        cached = load_cached(target, load_prepared, "fine-tuned model")
        if cached is not None:
            log.info("prepared model found in cache: %s", target)
            cached.model.to(device)
            return cached

    torch.manual_seed(finetune.seed)
    tokenizer = load_tokenizer(model_source)
    pad_id = tokenizer.pad_token_id or 0
    train_all = encode_dataset(train_ds, tokenizer, max_length=finetune.max_train_seq_length)
    train = _train_subset(train_all, train_ds.data.column("text_a").to_pylist(), finetune)
    model = EarlyExitModel(load_backbone(model_source), spec.num_labels).to(device)  # initialised on CPU: same seeds

    t0 = time.perf_counter()
    _stage1(model, train, finetune, pad_id)
    t1 = time.perf_counter()
    ramp_rows = offramp_rows(train, finetune)
    train_offramps(model, layer_cls_features(model, ramp_rows, pad_id),
                   torch.as_tensor(ramp_rows.labels, device=model_device(model)), finetune)
    t2 = time.perf_counter()

    dev = encode_dataset(dev_ds, tokenizer, max_length=max_seq_length)
    logits = dev_layer_logits(model, dev, pad_id=pad_id)
    by_layer = [main_metric(spec.name, predictions(layer), dev.labels) for layer in logits]
    info = PreparedInfo(
        key=key, task=spec.name, model_source=model_source, num_labels=spec.num_labels,
        train_rows=len(train), baseline_dev_metric=by_layer[-1],
        baseline_dev_metric_by_layer=by_layer, stage1_seconds=round(t1 - t0, 1),
        stage2_seconds=round(t2 - t1, 1),
    )
    save_checkpoint(model, asdict(info), target)
    log.info("prepared %s: dev %s %.4f (stage 1 %.0f s, stage 2 %.1f s)",
             spec.name, spec.main_metric, info.baseline_dev_metric, t1 - t0, t2 - t1)
    return PreparedModel(model, info, target)
