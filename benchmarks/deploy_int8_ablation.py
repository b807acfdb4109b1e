"""Where ``dse deploy``'s int8 artifact loses accuracy: an ablation on the study's real model and dev rows.

For a few compression settings of the study's fine-tuned model (encoder pruning, AdaptivFloat
weight bits), every variant below is built as the deploy TorchScript artifact and run one
sentence at a time (batch 1, as ``dse deploy`` measures), keeping every off-ramp's logits:

    fp32            no int8 (the fp32 artifact)
    tables          only the embedding tables int8 (uint8 rows, float scale and offset per row)
    linears         only the nn.Linear layers (dynamic int8: qint8 weights per tensor,
                    activations quantized per call; x86/fbgemm uses 7 of the 8 bits)
    off-ramps       only the off-ramps' linears (the exit decision)
    deploy          linears + tables: what ``dse deploy`` ships
    deploy, fp32 ramps           the same with the off-ramps left in fp32
    deploy, per-ch, fp32 ramps   per-channel weight scales, off-ramps in fp32

Accuracy is then taken under the entropy exit rule at several thresholds (0 = no early exit,
the last layer decides), plus each off-ramp's own accuracy. A last table gives the statistics
of the [CLS] hidden state each off-ramp reads: one outlier dimension sets the dynamic range
that a per-tensor int8 activation scale must cover.

Run: python benchmarks/deploy_int8_ablation.py [--config search_spaces/smoke.yaml] [--all-dev]
(about 3 minutes on 2 cores for the 200 smoke dev rows, once the model is prepared).
"""

from __future__ import annotations

import argparse
import copy
import platform
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.config import KNOBS, load_study_config
from dse.data import resolve_glue_dir
from dse.artifacts.deploy import build_torchscript
from dse.evaluation import load_dev_set, prepare_for_study
from dse.data.metrics import main_metric
from dse.modeling.early_exit import simulate_early_exit
from dse.modeling.loading import load_tokenizer, resolve_model_source
from dse.modeling.inference import predictions

DESIGNS = [(0.5, 6), (0.5, 8), (0.0, 8), (0.0, 16)]  # (encoder_pruning, weight_bits); 3 exponent bits
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6)  # nats; ln 2 = 0.693 is the maximum for two labels
VARIANTS = ("fp32", "tables", "linears", "off-ramps", "deploy", "deploy, fp32 ramps", "deploy, per-ch, fp32 ramps")
Q = torch.ao.quantization


def quantized(model: nn.Module, variant: str) -> nn.Module:
    """A copy of ``model`` with the variant's modules dynamically quantized (torch.ao)."""
    linears = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    ramps = {n for n in linears if n.startswith("off_ramps.")}
    tables = {n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    dyn, per_ch, table = Q.default_dynamic_qconfig, Q.per_channel_dynamic_qconfig, Q.float_qparams_weight_only_qconfig
    spec = {
        "fp32": {},
        "tables": dict.fromkeys(tables, table),
        "linears": dict.fromkeys(linears, dyn),
        "off-ramps": dict.fromkeys(ramps, dyn),
        "deploy": dict.fromkeys(linears, dyn) | dict.fromkeys(tables, table),
        "deploy, fp32 ramps": dict.fromkeys(linears - ramps, dyn) | dict.fromkeys(tables, table),
        "deploy, per-ch, fp32 ramps": dict.fromkeys(linears - ramps, per_ch) | dict.fromkeys(tables, table),
    }[variant]
    model = copy.deepcopy(model)
    if not spec:
        return model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for quantized tensors
        return Q.quantize_dynamic(model, spec, dtype=torch.qint8)


@torch.no_grad()
def artifact_layer_logits(model: nn.Module, rows) -> torch.Tensor:  # noqa: ANN001
    """Every off-ramp's logits ``[layers, rows, labels]`` of the traced artifact, one row at a time."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = build_torchscript(model, torch.zeros(model.num_layers), int8=False)  # already quantized
    out = []
    with torch.jit.optimized_execution(False):
        for i in range(len(rows)):
            ids = torch.tensor([rows.input_ids[i]])
            out.append(module.layer_logits(ids, torch.ones_like(ids), torch.tensor([rows.token_type_ids[i]])))
    return torch.cat(out, dim=1)


@torch.no_grad()
def cls_statistics(model, rows) -> list[tuple[int, float, float, float]]:  # noqa: ANN001
    """Per layer: the dimension with the largest mean |x| of the [CLS] state the off-ramp reads,
    that mean, the median |x| of a row, and the 7-bit step of a row's [min, max] range."""
    seen: list[list[torch.Tensor]] = [[] for _ in range(model.num_layers)]
    hooks = [ramp.register_forward_pre_hook(lambda _m, args, i=i: seen[i].append(args[0].clone()))
             for i, ramp in enumerate(model.off_ramps)]
    try:
        for i in range(len(rows)):
            ids = torch.tensor([rows.input_ids[i]])
            model(ids, torch.ones_like(ids), torch.tensor([rows.token_type_ids[i]]))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for states in seen:
        x = torch.cat(states)  # [rows, hidden]
        dim = int(x.abs().mean(0).argmax())
        step = (x.max(1).values - x.min(1).values) / 127
        out.append((dim, float(x[:, dim].abs().mean()), float(x.abs().median(1).values.median()),
                    float(step.median())))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("search_spaces/smoke.yaml"))
    parser.add_argument("--all-dev", action="store_true", help="every dev row, not the study's dev_subset")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_study_config(args.config)
    task = config.task_settings()[0]
    prepared = prepare_for_study(config, task)
    tokenizer = load_tokenizer(resolve_model_source(config.model.name))
    rows = load_dev_set(task.name, tokenizer, glue_dir=resolve_glue_dir(config.data.glue_dir),
                        max_seq_length=config.model.max_seq_length,
                        dev_subset=None if args.all_dev else task.dev_subset, seed=config.data.seed)
    print(f"{task.name} dev, {len(rows)} sentences, model {config.model.name} ({args.config}), batch 1, "
          f"torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}, {platform.machine()}\n")

    for pruning, bits in DESIGNS:
        knobs = {k: v.default for k, v in KNOBS.items()} | {"encoder_pruning": pruning, "weight_bits": bits}
        model, _ = compress(prepared.model, CompressionSpec.from_knobs(knobs))
        print(f"### encoder pruning {pruning:.0%}, AdaptivFloat {bits} bits\n")
        print("| int8 variant | " + " | ".join(f"exit < {t}" if t else "no exit" for t in THRESHOLDS)
              + " | rows exiting at each layer (exit < 0.6) | each off-ramp's accuracy (no exit) |")
        print("|---|" + "---:|" * len(THRESHOLDS) + "---|---|")
        for variant in VARIANTS:
            logits = artifact_layer_logits(quantized(model, variant), rows)
            cells = []
            for t in THRESHOLDS:
                exit_logits, _ = simulate_early_exit(logits, t)
                cells.append(f"{100 * main_metric(task.name, predictions(exit_logits), rows.labels):.1f}")
            ramps = " ".join(f"{100 * main_metric(task.name, predictions(layer), rows.labels):.1f}" for layer in logits)
            _, exits = simulate_early_exit(logits, 0.6)
            counts = " ".join(str(c) for c in np.bincount(exits.numpy(), minlength=len(logits) + 1)[1:])
            print(f"| {variant} | " + " | ".join(cells) + f" | {counts} | {ramps} |", flush=True)
        print()

    model, _ = compress(prepared.model, CompressionSpec.from_knobs(
        {k: v.default for k, v in KNOBS.items()} | {"encoder_pruning": 0.5, "weight_bits": 6}))
    print("### [CLS] state read by each off-ramp (encoder pruning 50%, AdaptivFloat 6 bits, fp32)\n")
    print("| layer | largest dim | its mean abs | median abs of a row | 7-bit step of a row's range |")
    print("|---:|---:|---:|---:|---:|")
    for layer, (dim, big, median, step) in enumerate(cls_statistics(model, rows), start=1):
        print(f"| {layer} | {dim} | {big:.2f} | {median:.3f} | {step:.3f} ({step / median:.1f}x the median) |")


if __name__ == "__main__":
    main()
