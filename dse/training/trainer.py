"""Compression-aware fine-tune of a prepared model, cached on disk (the study's slow fidelity).

Starting from the prepared (stage 1 + 2) early-exit model, a short stage-1-style fine-tune
trains the backbone and final classifier under the training-time compression of
:class:`TrainingSpec` — movement or magnitude pruning on the cubic schedule, adaptive attention
span, embedding pruning, distillation from the unpruned prepared model — then bakes the masks
and spans into the weights and re-trains the off-ramps on cached pooled features (stage 2, as
in preparation, continuing from the prepared off-ramps). The result is cached under a hash of the parent's key and the training-time
settings, so every trial with the same training-time sub-configuration reuses it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from dse.compression.apply import embedding_tables, encoder_linears
from dse.compression.movement import TrainingPruner
from dse.compression.pruning import achieved_sparsity, embedding_prune_schedule, magnitude_mask
from dse.compression.spec import TrainingSpec
from dse.config import FinetuneConfig
from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.device import device_class, model_device, train_autocast
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import layer_features
from dse.training.distillation import distillation_loss
from dse.training.prepare import (
    cache_root,
    load_cached,
    load_checkpoint,
    offramp_rows,
    save_checkpoint,
    stage1_parameters,
    train_offramps,
)
from dse.training.schedule import PruningSchedule

__all__ = [
    "TRAIN_VERSION",
    "CompressionTrainingConfig",
    "TrainedModel",
    "train_compressed",
    "training_key",
]

TRAIN_VERSION = 1
log = logging.getLogger(__name__)
TrainRows = Callable[[], tuple[EncodedSet, int]]  # loads (training rows, pad id) only on a cache miss


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompressionTrainingConfig(_Strict):
    """Hyper-parameters of the compression-aware fine-tune (not searched)."""

    # EdgeBERT's --mask_scores_learning_rate is 1e-2, for scores that start at 0 and train for
    # thousands of steps. Starting at |W| (~0.05) in a short run, Adam's ~lr-sized steps then
    # reshuffle the ranking: MiniLM, 1,500 SST-2 rows, 47 steps, 50 % + KD, dev-300 final
    # layer 46.7 % at 1e-2, 75.3 % at 1e-3, 79.7 % at 1e-4 (unpruned 79.7 %).
    score_learning_rate: float = Field(default=1e-4, gt=0, description="movement score learning rate")
    score_init: Literal["magnitude", "constant"] = Field(
        default="magnitude", description="movement scores start at |W| (ours) or 0 (EdgeBERT)")
    span_learning_rate: float = Field(default=1e-2, gt=0, description="ours: z moves ~S/100 tokens per step")
    max_span_tokens: int = Field(default=512, ge=1, description="S, EdgeBERT --max_span")
    span_ramp_tokens: int = Field(default=32, ge=1, description="R; ours (EdgeBERT's 256 outlasts most sentences)")
    span_loss_coeff: float = Field(default=5e-6, ge=0, description="per mean span token, EdgeBERT's value")
    alpha_ce: float = Field(default=0.1, ge=0)
    alpha_kd: float = Field(default=0.9, ge=0)
    temperature: float = Field(default=2.0, gt=0)
    schedule: PruningSchedule = PruningSchedule()
    global_topk: bool = False
    global_topk_every_steps: int = Field(default=25, ge=1, description="EdgeBERT recomputes every 25 steps")


@dataclass
class TrainedModel:
    model: EarlyExitModel
    info: dict[str, Any]
    path: Path
    cache_hit: bool


def training_key(parent_key: str, spec: TrainingSpec, config: CompressionTrainingConfig,
                 device: torch.device | str = "cpu") -> str:
    """``device``: where it trains (bf16 autocast on CUDA); only a non-CPU class enters the key."""
    blob = json.dumps(
        {**({"device": device_class(device)} if device_class(device) != "cpu" else {}),
         "v": TRAIN_VERSION, "parent": parent_key, "spec": spec.canonical().model_dump(mode="json"),
         "config": config.model_dump(mode="json")},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels.long())


@torch.no_grad()
def _prune_tables(model: EarlyExitModel, sparsity: float) -> None:
    if sparsity > 0:
        for emb in embedding_tables(model).values():
            emb.weight.mul_(magnitude_mask(emb.weight, sparsity=sparsity))


def _check_sparsity(report: dict[str, float], sizes: dict[str, int], target: float, *, global_topk: bool) -> None:
    """Per matrix (or over all of them, with a global ranking) within one weight of the target."""
    if global_topk:
        total = sum(sizes.values())
        achieved = sum(report[n] * sizes[n] for n in report) / total
        checks = {"all encoder matrices": (achieved, total)}
    else:
        checks = {n: (report[n], sizes[n]) for n in report}
    for name, (achieved, numel) in checks.items():
        if achieved < target - 1.0 / numel - 1e-9:
            raise RuntimeError(f"{name}: sparsity {achieved:.4f} below the target {target:.4f}")


def _fine_tune(model: EarlyExitModel, teacher: EarlyExitModel | None, train: EncodedSet, pad_id: int,
               spec: TrainingSpec, finetune: FinetuneConfig, config: CompressionTrainingConfig) -> dict[str, Any]:
    """Stage 1 under compression; returns what was achieved (sparsities, spans)."""
    pruner = None
    if spec.pruning_method != "none":
        pruner = TrainingPruner(encoder_linears(model), spec.pruning_method, global_topk=config.global_topk,
                                score_init=config.score_init)
    spans = None
    if spec.span_init > 0:
        spans = model.attach_adaptive_spans(max_span_tokens=config.max_span_tokens,
                                            ramp_tokens=config.span_ramp_tokens,
                                            init_tokens=min(spec.span_init, config.max_span_tokens))
    if spec.train_embedding_pruning > 0:  # EdgeBERT freezes the tables so pruned entries stay zero
        for emb in embedding_tables(model).values():
            emb.weight.requires_grad_(False)

    scores = pruner.score_parameters() if pruner else []
    span_params = list(spans.parameters()) if spans is not None else []
    special = {id(p) for p in scores + span_params}
    main = [p for _, p in stage1_parameters(model, finetune) if p.requires_grad and id(p) not in special]
    groups = [{"params": main, "lr": finetune.learning_rate, "weight_decay": 0.01}]
    if scores:
        groups.append({"params": scores, "lr": config.score_learning_rate, "weight_decay": 0.0})
    if span_params:
        groups.append({"params": span_params, "lr": config.span_learning_rate, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    steps_per_epoch = -(-len(train) // finetune.batch_size)
    total = max(1, round(steps_per_epoch * spec.train_epochs))
    epochs = math.ceil(total / steps_per_epoch)
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total)
    )
    params = main + scores + span_params
    model.train()
    device = model_device(model)
    step, epoch = 0, 0
    while step < total:
        for batch in iter_batches(train, batch_size=finetune.batch_size, pad_id=pad_id,
                                  shuffle_seed=finetune.seed + 1000 + epoch):
            batch = batch.to(device)
            if pruner is not None:
                keep = config.schedule.keep_fraction(step, total_steps=total, target_sparsity=spec.train_pruning)
                if not config.global_topk or step % config.global_topk_every_steps == 0:
                    pruner.set_keep_fraction(keep)
            with train_autocast(device):
                logits = model.final_logits(batch.input_ids, batch.attention_mask, batch.token_type_ids).float()
                if teacher is not None:
                    with torch.no_grad():
                        target = teacher.final_logits(batch.input_ids, batch.attention_mask,
                                                      batch.token_type_ids).float()
            if teacher is not None:
                loss = distillation_loss(logits, target, batch.labels, alpha_ce=config.alpha_ce,
                                         alpha_kd=config.alpha_kd, temperature=config.temperature)
            else:
                loss = _task_loss(logits, batch.labels)
            if spans is not None:
                loss = loss + config.span_loss_coeff * torch.stack([s.loss() for s in spans.values()]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            if spans is not None:
                for s in spans.values():
                    s.clamp_()
            step += 1
            if step % 50 == 0:
                log.info("compression fine-tune: step %d/%d loss %.4f", step, total, loss.item())
            if step >= total:
                break
        _prune_tables(model, embedding_prune_schedule(epoch, epochs=epochs,
                                                      final_percentile=100 * spec.train_embedding_pruning) / 100)
        epoch += 1
    model.eval()

    achieved: dict[str, Any] = {"matrix_sparsity": {}, "embedding_sparsity": {}, "spans": None}
    if pruner is not None:
        sizes = {n: m.weight.numel() for n, m in pruner.modules.items()}
        pruner.set_keep_fraction(1.0 - spec.train_pruning)  # the final mask is exactly the target
        achieved["matrix_sparsity"] = pruner.bake()
        _check_sparsity(achieved["matrix_sparsity"], sizes, spec.train_pruning, global_topk=config.global_topk)
    _prune_tables(model, spec.train_embedding_pruning)
    for emb in embedding_tables(model).values():
        emb.weight.requires_grad_(True)
    achieved["embedding_sparsity"] = {n: achieved_sparsity(e.weight) for n, e in embedding_tables(model).items()}
    if spans is not None:
        achieved["spans"] = model.bake_adaptive_spans().tolist()
    achieved["steps"] = total
    return achieved


def train_compressed(
    parent: EarlyExitModel,
    *,
    parent_key: str,
    task: str,
    spec: TrainingSpec,
    finetune: FinetuneConfig,
    train_rows: TrainRows,
    config: CompressionTrainingConfig | None = None,
    cache_dir: Path | None = None,
) -> TrainedModel:
    """The parent model fine-tuned under ``spec``'s training-time compression; trained once, then cached.

    ``parent`` is not modified; it is also the distillation teacher (the unpruned model).
    """
    config = config or CompressionTrainingConfig()
    spec = spec.canonical()
    if spec.is_noop:
        raise ValueError("this training spec trains nothing; use the prepared model")
    device = model_device(parent)
    key = training_key(parent_key, spec, config, device)
    target = (cache_dir or cache_root()) / "trained" / f"{task}-{key}"
    if (target / "info.json").is_file():
        def load(path: Path) -> TrainedModel:
            info = json.loads((path / "info.json").read_text())
            return TrainedModel(load_checkpoint(path, info["num_labels"]).to(device), info, path, cache_hit=True)

        cached = load_cached(target, load, "compression-trained model")
        if cached is not None:
            log.info("compression-trained model found in cache: %s", target)
            return cached

    train, pad_id = train_rows()
    torch.manual_seed(finetune.seed)
    model = copy.deepcopy(parent)
    teacher = parent.eval() if spec.distillation else None
    t0 = time.perf_counter()
    achieved = _fine_tune(model, teacher, train, pad_id, spec, finetune, config)
    t1 = time.perf_counter()
    ramps = offramp_rows(train, finetune)
    evidence = train_offramps(model, layer_features(model, ramps, pad_id), torch.tensor(ramps.labels, device=device),
                              finetune, warm_start=True)
    t2 = time.perf_counter()
    info = {
        "key": key, "parent_key": parent_key, "task": task, "num_labels": model.num_labels,
        "spec": spec.model_dump(mode="json"), "config": config.model_dump(mode="json"),
        "train_rows": len(train), **achieved,
        "train_seconds": round(t1 - t0, 1), "offramp_seconds": round(t2 - t1, 1),
        "offramp_evidence": evidence,
    }
    save_checkpoint(model, info, target)
    log.info("compression-trained %s (%s) in %.0f s", task, key, t2 - t0)
    return TrainedModel(model, info, target, cache_hit=False)
