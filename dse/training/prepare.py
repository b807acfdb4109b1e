"""Model preparation: off-ramp fine-tuning, cached on disk by a content hash.

Stage 1 (EdgeBERT/DeeBERT) trains the backbone and the final classifier; with
``offramp_training: joint`` it trains every off-ramp with the backbone (PABEE's depth-weighted
sum of their losses). Stage 2 trains the earlier off-ramps; because the backbone is frozen then,
it runs on pooled features computed once, which turns minutes of forward passes into seconds.

Stage 2 standardises every off-ramp's input per feature (mean and standard deviation over the
training rows, kept in the off-ramp): an early layer's [CLS] vector varies across sentences by
~1e-3 per feature on top of a large fixed offset, and without it the early off-ramps of the
default study stayed 13-25 points below a logistic-regression probe on the same features
(docs/compression.md, "Off-ramps").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
from dse.modeling.early_exit import EarlyExitModel, load_off_ramps
from dse.modeling.inference import dev_layer_logits, layer_features, predictions
from dse.modeling.loading import load_backbone, load_tokenizer
from dse.training.distillation import distillation_loss
from dse.training.probe import feature_standardisation, fit_linear_head

__all__ = [
    "PREPARE_VERSION",
    "PreparedModel",
    "cache_root",
    "fine_tune_off_ramps",
    "joint_loss_weights",
    "load_cached",
    "load_checkpoint",
    "load_prepared",
    "load_train_rows",
    "offramp_rows",
    "prepare_model",
    "save_checkpoint",
    "stage1_parameters",
    "standardize_off_ramps",
    "train_offramps",
]

PREPARE_VERSION = 2  # 2: standardised off-ramp inputs in stage 2; off-ramp pooling/head/training settings
OFFRAMP_DISTILLATION_TEMPERATURE = 2.0  # EdgeBERT's (and FastBERT's) distillation temperature
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
    offramp_pooling: str = "cls"  # absent from checkpoints written before the setting existed
    offramp_head: str = "pooler"
    offramp_training: str = "two_stage"
    offramp_distillation: float = 0.0
    # What the off-ramp settings did, counted where they act (see OFFRAMP_EVIDENCE); the guards
    # (dse.evaluation.guards.check_offramp_design) refuse a model whose settings did nothing.
    offramp_evidence: dict[str, int] = field(default_factory=dict)


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


def stage1_parameters(model: EarlyExitModel, finetune: FinetuneConfig, *,
                      all_off_ramps: bool = False) -> list[tuple[str, torch.nn.Parameter]]:
    """What stage 1 (and a compression-aware fine-tune) trains: the backbone and the final
    classifier (``all_off_ramps``: every off-ramp, for joint training), not the embedding module
    when it is frozen."""
    last = model.num_layers - 1
    return [(n, p) for n, p in model.named_parameters()
            if (all_off_ramps or not n.startswith("off_ramps.") or n.startswith(f"off_ramps.{last}."))
            and not (finetune.freeze_embeddings and n.startswith("backbone.embeddings."))]


def joint_loss_weights(num_layers: int) -> torch.Tensor:
    """PABEE's weights of the off-ramp losses in joint training: j / sum(j) for layer j = 1..L."""
    j = torch.arange(1, num_layers + 1, dtype=torch.float32)
    return j / j.sum()


def _stage1(model: EarlyExitModel, train: EncodedSet, cfg: FinetuneConfig, pad_id: int) -> None:
    joint = cfg.offramp_training == "joint"
    weights = joint_loss_weights(model.num_layers)
    params = [p for _, p in stage1_parameters(model, cfg, all_off_ramps=joint)]
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
                if joint:
                    layer_logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
                    loss = sum(w * _loss(lg.float(), batch.labels, model.num_labels)
                               for w, lg in zip(weights, layer_logits))
                else:
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


def _first_linear(ramp: torch.nn.Module) -> torch.nn.Linear:
    return ramp.pooler if ramp.pooler is not None else ramp.classifier


@torch.no_grad()
def standardize_off_ramps(ramps: torch.nn.ModuleList, feats: torch.Tensor, *, keep_function: bool) -> None:
    """Set each off-ramp's input standardisation from its layer's features ``[ramps, rows, hidden]``.

    The scale is 1 / std per feature, with the std floored at 1 % of the layer's median std so
    that a (nearly) constant feature is not blown up into noise (see
    :func:`dse.training.probe.feature_standardisation`). ``keep_function``: rewrite the
    first matmul so that every off-ramp computes what it computed before (an off-ramp trained
    already, jointly or in an earlier stage 2); otherwise its weights are left as initialised.
    """
    for ramp, x in zip(ramps, feats, strict=True):
        mean, scale = (t.float() for t in feature_standardisation(x))
        if keep_function:
            lin = _first_linear(ramp)
            # W z_old + b with z_old = (x - s0) k0 and z_new = (x - mean) scale:
            # z_old = z_new k0 / scale + (mean - s0) k0
            lin.bias.add_(lin.weight @ ((mean - ramp.input_shift) * ramp.input_scale))
            lin.weight.mul_(ramp.input_scale / scale)
        ramp.input_shift.copy_(mean)
        ramp.input_scale.copy_(scale)


def train_offramps(model: EarlyExitModel, feats: torch.Tensor, labels: torch.Tensor, cfg: FinetuneConfig, *,
                   warm_start: bool = False) -> dict[str, int]:
    """Stage 2: train every off-ramp but the last on cached pooled features ``[layers, rows, hidden]``.

    Inputs are standardised per feature (:func:`standardize_off_ramps`). A ``linear`` off-ramp is
    then a convex problem, solved to convergence: L2-regularised logistic (or ridge) regression
    with the strength picked on held-out rows (:func:`dse.training.probe.fit_linear_head`). A
    ``pooler`` off-ramp is trained with AdamW, ``offramp_epochs`` epochs of batches of 128 rows,
    the learning rate decaying linearly from ``offramp_learning_rate`` to 0; ``warm_start``: the
    off-ramps were trained already (jointly, or before a compression-aware fine-tune) and this
    continues from what they compute. With ``offramp_distillation`` > 0 the loss mixes in the KL
    divergence to the final classifier's softened output (temperature 2) with that weight.

    Returns how many off-ramps were standardised (``standardised_off_ramps``) and trained with the
    distillation term in their loss (``distilled_off_ramps``), counted where it happens.
    """
    ramps = model.off_ramps[:-1]
    evidence = {"standardised_off_ramps": 0, "distilled_off_ramps": 0}
    if len(ramps) == 0:
        return evidence
    kd = cfg.offramp_distillation
    teacher = None
    if kd > 0:
        model.off_ramps[-1].eval()
        with torch.no_grad():
            teacher = model.off_ramps[-1](feats[-1])
    if model.head == "linear":
        with torch.no_grad():
            for ramp, x in zip(ramps, feats[:-1], strict=True):
                head = fit_linear_head(x, labels, model.num_labels, seed=cfg.seed, teacher=teacher, kd_weight=kd,
                                       temperature=OFFRAMP_DISTILLATION_TEMPERATURE)
                ramp.input_shift.copy_(head.mean.float())
                ramp.input_scale.copy_(head.scale.float())
                ramp.classifier.weight.copy_(head.weight.float())
                ramp.classifier.bias.copy_(head.bias.float())
                evidence["standardised_off_ramps"] += int(not torch.all(ramp.input_scale == 1.0))
                evidence["distilled_off_ramps"] += int(head.kd_weight > 0)
        model.eval()
        return evidence
    standardize_off_ramps(ramps, feats[:-1], keep_function=warm_start)
    evidence["standardised_off_ramps"] = sum(int(not torch.all(r.input_scale == 1.0)) for r in ramps)
    distilled: set[int] = set()
    opt = torch.optim.AdamW(ramps.parameters(), lr=cfg.offramp_learning_rate, weight_decay=0.01)
    total = cfg.offramp_epochs * -(-feats.shape[1] // 128)
    # decays linearly to 0 so that Adam settles instead of wandering at a constant step size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (total - s) / total))
    gen = torch.Generator().manual_seed(cfg.seed)
    ramps.train()
    with torch.random.fork_rng(devices=[]):  # dropout: the same result whatever ran before
        torch.manual_seed(cfg.seed)
        for _ in range(cfg.offramp_epochs):
            for idx in torch.randperm(feats.shape[1], generator=gen).split(128):
                if teacher is None:
                    loss = sum(_loss(ramp(feats[i, idx]), labels[idx], model.num_labels)
                               for i, ramp in enumerate(ramps))
                else:
                    loss = sum(distillation_loss(ramp(feats[i, idx]), teacher[idx], labels[idx], alpha_ce=1.0 - kd,
                                                 alpha_kd=kd, temperature=OFFRAMP_DISTILLATION_TEMPERATURE)
                               for i, ramp in enumerate(ramps))
                    distilled.update(range(len(ramps)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    evidence["distilled_off_ramps"] = len(distilled)
    model.eval()
    return evidence


def fine_tune_off_ramps(model: EarlyExitModel, train: EncodedSet, finetune: FinetuneConfig,
                        pad_id: int) -> tuple[dict[str, int], tuple[float, float, float]]:
    """Stage 1 then stage 2 on ``train``, in place; what the off-ramp settings did (the
    ``offramp_evidence`` of :class:`PreparedInfo`) and the start, stage-2 start and end times."""
    t0 = time.perf_counter()
    before = [[p.detach().clone() for p in ramp.parameters()] for ramp in model.off_ramps[:-1]]
    _stage1(model, train, finetune, pad_id)
    t1 = time.perf_counter()
    evidence = {"stage1_trained_off_ramps": sum(  # joint training moves every earlier off-ramp
        int(any(not torch.equal(b, p) for b, p in zip(old, ramp.parameters(), strict=True)))
        for old, ramp in zip(before, model.off_ramps[:-1], strict=True))}
    ramp_rows = offramp_rows(train, finetune)
    evidence |= train_offramps(model, layer_features(model, ramp_rows, pad_id),
                               torch.as_tensor(ramp_rows.labels, device=model_device(model)),
                               finetune, warm_start=finetune.offramp_training == "joint")
    return evidence, (t0, t1, time.perf_counter())


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
        info = {**info, "offramp_pooling": model.pooling, "offramp_head": model.head}
        (tmp / "info.json").write_text(json.dumps(info, indent=2))


def load_checkpoint(path: Path, num_labels: int) -> EarlyExitModel:
    """The model written by :func:`save_checkpoint`, in eval mode."""
    info = json.loads((path / "info.json").read_text()) if (path / "info.json").is_file() else {}
    model = EarlyExitModel(load_backbone(str(path / "backbone")), num_labels,
                           pooling=info.get("offramp_pooling", "cls"), head=info.get("offramp_head", "pooler"))
    load_off_ramps(model.off_ramps, safetensors.torch.load_file(str(path / "off_ramps.safetensors")))
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
    """The seeded subset of training rows whose pooled features train the off-ramps."""
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
    model = EarlyExitModel(load_backbone(model_source), spec.num_labels, pooling=finetune.offramp_pooling,
                           head=finetune.offramp_head).to(device)  # initialised on CPU: same seeds

    evidence, (t0, t1, t2) = fine_tune_off_ramps(model, train, finetune, pad_id)

    dev = encode_dataset(dev_ds, tokenizer, max_length=max_seq_length)
    logits = dev_layer_logits(model, dev, pad_id=pad_id)
    by_layer = [main_metric(spec.name, predictions(layer), dev.labels) for layer in logits]
    info = PreparedInfo(
        key=key, task=spec.name, model_source=model_source, num_labels=spec.num_labels,
        train_rows=len(train), baseline_dev_metric=by_layer[-1],
        baseline_dev_metric_by_layer=by_layer, stage1_seconds=round(t1 - t0, 1),
        stage2_seconds=round(t2 - t1, 1), offramp_pooling=model.pooling, offramp_head=model.head,
        offramp_training=finetune.offramp_training, offramp_distillation=finetune.offramp_distillation,
        offramp_evidence=evidence,
    )
    save_checkpoint(model, asdict(info), target)
    log.info("prepared %s: dev %s %.4f (stage 1 %.0f s, stage 2 %.1f s)",
             spec.name, spec.main_metric, info.baseline_dev_metric, t1 - t0, t2 - t1)
    return PreparedModel(model, info, target)
