"""Every off-ramp's dev accuracy against a linear probe on its own layer's frozen features.

A logistic-regression probe (dse.training.probe: standardised features, L2, C = 1) fitted on the
same training rows stage 2 uses is the floor any off-ramp on those features should reach. For the
study's prepared model (fine-tuned once and cached, like a study run) this prints, per layer:
the off-ramp's dev accuracy, the probe on the off-ramp's own input (its pooling) and the probes
on the [CLS] vector and on the token mean; then the final accuracy and entropy early exit at the
largest threshold that keeps the accuracy within ``--max-drop`` points of the final layer's.

Run: python benchmarks/offramp_probe.py [--config search_spaces/sst2_minilm.yaml] [--full-dev]
         [--set offramp_pooling=mean --set offramp_head=linear ...] [--json out.json]
         [--stage1-from ~/.cache/edgebert-dse/prepared/sst2-<key>]
(``--set`` overrides a ``finetune`` setting; each distinct setting is fine-tuned once and cached.
``--stage1-from``: take the backbone and final classifier of an already fine-tuned checkpoint of
the same two-stage recipe (e.g. one cached before this stage 2 existed) and run only stage 2 with
today's code on it, instead of a fresh fine-tune: stage 1 of ``two_stage`` does not depend on
stage 2, so on a 2-core machine this measures the stage-2 fix without a 30-minute stage 1.)

Ends with ``min_margin_points=... worst_layer=... avg_exit_layer=... exit_accuracy=...``: the
smallest (off-ramp minus own-features probe) dev accuracy over the layers before the last.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dse.config import FinetuneConfig, StudyConfig, load_study_config, task_spec
from dse.data import resolve_glue_dir
from dse.data.metrics import main_metric
from dse.evaluation.context import load_dev_set, prepare_for_study
from dse.evaluation.exits import early_exit_points
from dse.modeling.batching import EncodedSet, iter_batches
from dse.modeling.device import model_device
from dse.modeling.early_exit import EarlyExitModel, pool_hidden
from dse.modeling.inference import dev_layer_logits, predictions
from dse.modeling.loading import load_backbone, load_tokenizer, resolve_model_source
from dse.training.prepare import PreparedModel, load_prepared, load_train_rows, offramp_rows, train_offramps
from dse.training.probe import fit_linear_probe

POOLINGS = ("cls", "mean")


@torch.inference_mode()
def both_poolings(model: EarlyExitModel, enc: EncodedSet, pad_id: int) -> dict[str, torch.Tensor]:
    """[CLS] and token-mean features of every layer: pooling -> ``[layers, rows, hidden]``."""
    model.eval()
    device = model_device(model)
    out = {p: torch.empty(model.num_layers, len(enc), model.config.hidden_size) for p in POOLINGS}  # on the CPU
    for batch in iter_batches(enc, batch_size=64, pad_id=pad_id):
        rows = torch.as_tensor(batch.rows)
        batch = batch.to(device)
        for i, h in enumerate(model.hidden_states(batch.input_ids, batch.attention_mask, batch.token_type_ids)):
            for p in POOLINGS:
                out[p][i, rows] = pool_hidden(h, batch.attention_mask, p).float().cpu()
    return out


def exit_at_max_drop(task: str, logits: torch.Tensor, labels: np.ndarray, max_drop: float,
                     step: float = 0.01) -> dict[str, float]:
    """The threshold (grid of ``step`` nats) with the lowest mean exit layer whose accuracy stays
    within ``max_drop`` points of the final layer's; its accuracy and mean exit layer."""
    final = 100 * main_metric(task, predictions(logits[-1]), labels)
    best = {"threshold": 0.0, "accuracy": final, "avg_exit_layer": float(logits.shape[0])}
    top = math.log(max(logits.shape[-1], 2))
    for thr in np.arange(step, top + step / 2, step):
        points, exits = early_exit_points(task, logits, labels, float(thr))
        mean_exit = float(exits.float().mean())
        if points >= final - max_drop - 1e-9 and mean_exit < best["avg_exit_layer"] - 1e-12:
            best = {"threshold": round(float(thr), 4), "accuracy": points, "avg_exit_layer": mean_exit}
    return best


def measure(model: EarlyExitModel, *, task: str, train: EncodedSet, dev: EncodedSet, pad_id: int,
            max_drop: float = 1.0, train_feats: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Off-ramp and probe dev accuracies per layer (points), final accuracy, early exit at ``max_drop``
    (``train_feats``: :func:`both_poolings` of ``train``, if computed already)."""
    num_labels = model.num_labels
    t0 = time.perf_counter()
    train_feats = train_feats or both_poolings(model, train, pad_id)
    dev_feats = both_poolings(model, dev, pad_id)
    labels = torch.as_tensor(train.labels)
    probes: dict[str, list[float]] = {}
    for p in POOLINGS:
        probes[p] = []
        for i in range(model.num_layers):
            probe = fit_linear_probe(train_feats[p][i], labels, num_labels)
            probes[p].append(100 * main_metric(task, predictions(probe.logits(dev_feats[p][i]).float()), dev.labels))
    logits = dev_layer_logits(model, dev, pad_id=pad_id)
    ramps = [100 * main_metric(task, predictions(layer), dev.labels) for layer in logits]
    return {
        "pooling": model.pooling, "head": model.head, "train_rows": len(train), "dev_rows": len(dev),
        "off_ramps": ramps, "probe_own": probes[model.pooling], "probe_cls": probes["cls"],
        "probe_mean": probes["mean"], "final": ramps[-1],
        "early_exit": exit_at_max_drop(task, logits, dev.labels, max_drop), "max_drop": max_drop,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def with_finetune(config: StudyConfig, overrides: dict[str, Any]) -> StudyConfig:
    finetune = FinetuneConfig.model_validate({**config.finetune.model_dump(), **overrides})
    return config.model_copy(update={"finetune": finetune})


def study_rows(config: StudyConfig) -> tuple[EncodedSet, EncodedSet, int]:
    """The off-ramp training rows and the study's dev rows, tokenized, and the pad id."""
    source = resolve_model_source(config.model.name)
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    train, pad_id = load_train_rows(model_source=source, task=config.task, glue_dir=glue_dir,
                                    finetune=config.finetune, split_seed=config.data.seed)
    dev = load_dev_set(task_spec(config.task).name, load_tokenizer(source), glue_dir=glue_dir,
                       max_seq_length=config.model.max_seq_length, dev_subset=config.data.dev_subset,
                       seed=config.data.seed)
    return offramp_rows(train, config.finetune), dev, pad_id


def restage(folder: Path, config: StudyConfig, ramp_rows: EncodedSet,
            pad_id: int) -> tuple[PreparedModel, dict[str, torch.Tensor]]:
    """The checkpoint in ``folder``'s backbone and final off-ramp with stage 2 re-run by today's code
    (its earlier off-ramps re-initialised as :func:`prepare_model` does)."""
    finetune = config.finetune
    if finetune.offramp_training != "two_stage":
        raise SystemExit("--stage1-from reuses a two-stage fine-tune's stage 1; offramp_training must be two_stage")
    old = load_prepared(folder.expanduser())
    if (old.model.pooling, old.model.head) != (finetune.offramp_pooling, finetune.offramp_head):
        raise SystemExit(f"{folder}: off-ramps {old.model.pooling}/{old.model.head}, not the setting's "
                         f"{finetune.offramp_pooling}/{finetune.offramp_head}")
    torch.manual_seed(finetune.seed)
    model = EarlyExitModel(load_backbone(str(folder.expanduser() / "backbone")), old.model.num_labels,
                           pooling=finetune.offramp_pooling, head=finetune.offramp_head)
    model.off_ramps[-1].load_state_dict(old.model.off_ramps[-1].state_dict())
    model.spans.copy_(old.model.spans)
    feats = both_poolings(model, ramp_rows, pad_id)  # stage 2 leaves the backbone, hence these, as they are
    train_offramps(model, feats[model.pooling], torch.as_tensor(ramp_rows.labels), finetune)
    model.eval()
    return PreparedModel(model, old.info, old.path), feats


def markdown(result: dict[str, Any], label: str) -> str:
    def cells(values: list[float]) -> str:
        return " / ".join(f"{v:.1f}" for v in values)

    ee = result["early_exit"]
    return (f"| {label} | {cells(result['off_ramps'])} | {cells(result['probe_own'])} | {result['final']:.2f} | "
            f"{ee['threshold']:.2f} | {ee['accuracy']:.2f} | {ee['avg_exit_layer']:.2f} |")


HEADER = ("| setting | off-ramp accuracy, layer 1 / 2 / ... (points) | linear probe on the same features | "
          "final | threshold | early-exit accuracy | mean exit layer |\n|---|---|---|---:|---:|---:|---:|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("search_spaces/sst2_minilm.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a finetune setting (YAML value), e.g. offramp_pooling=mean")
    parser.add_argument("--full-dev", action="store_true", help="score on the whole dev split, not the study's subset")
    parser.add_argument("--max-drop", type=float, default=1.0, help="early-exit accuracy drop allowed (points)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--stage1-from", type=Path, help="a cached two-stage checkpoint whose stage 1 to reuse")
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    config = with_finetune(load_study_config(args.config), overrides)
    if args.full_dev:
        config = config.model_copy(update={"data": config.data.model_copy(update={"dev_subset": None})})
    if config.is_multitask:
        raise SystemExit("a single-task study, please")
    train, dev, pad_id = study_rows(config)
    feats = None
    if args.stage1_from is not None:
        prepared, feats = restage(args.stage1_from, config, train, pad_id)
    else:
        prepared = prepare_for_study(config)
    result = measure(prepared.model, task=config.task, train=train, dev=dev, pad_id=pad_id, max_drop=args.max_drop,
                     train_feats=feats)
    result.update(prepared_key=prepared.info.key, finetune=config.finetune.model_dump(mode="json"),
                  stage1_from=str(args.stage1_from) if args.stage1_from else None)
    label = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "study defaults"
    print(f"{config.task} dev, {len(dev)} sentences; off-ramps trained on {len(train)} rows; "
          f"model {config.model.name} ({prepared.info.key})\n")
    print(HEADER)
    print(markdown(result, label))
    print("\nprobe on [CLS]:     " + " / ".join(f"{v:.1f}" for v in result["probe_cls"]))
    print("probe on token mean: " + " / ".join(f"{v:.1f}" for v in result["probe_mean"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    margins = [r - p for r, p in zip(result["off_ramps"][:-1], result["probe_own"][:-1], strict=True)]
    worst = int(np.argmin(margins))
    ee = result["early_exit"]
    print(f"min_margin_points={margins[worst]:.2f} worst_layer={worst + 1} "
          f"avg_exit_layer={ee['avg_exit_layer']:.3f} exit_accuracy={ee['accuracy']:.2f}")


if __name__ == "__main__":
    main()
