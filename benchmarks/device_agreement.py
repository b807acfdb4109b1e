"""The same designs scored on the CPU and on a GPU: how many dev predictions agree.

For the study's prepared model (fine-tuned once and cached, as a study run leaves it), each design
below is compressed and scored on both devices the way a model trial does it (``compress`` on the
model's device with the trial's calibration rows, then ``dev_layer_logits``, fp32 on both:
``dse.modeling.device``). Printed per design: the share of (sentence, off-ramp) predictions that
agree, the smallest share over the thresholds of sentences with the same exit prediction and exit
layer, and the largest logit difference.

Run: python benchmarks/device_agreement.py --config STUDY.yaml [--device cuda] [--full-dev]
Last line: device=<d> designs=<n> rows=<r> min_offramp_agree=<a> min_exit_agree=<b> max_abs_logit_diff=<c>
(the shares are fractions; the target is >= 0.995 of dev predictions.)
"""

from __future__ import annotations

import argparse
import copy
import platform
from pathlib import Path

import numpy as np
import torch

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.config import load_study_config, task_spec
from dse.data import resolve_glue_dir
from dse.evaluation.context import load_dev_set, load_dvfs_rows, prepare_for_study
from dse.evaluation.exits import simulate_early_exit
from dse.modeling.device import resolve_device
from dse.modeling.inference import dev_layer_logits, predictions
from dse.modeling.loading import load_tokenizer, resolve_model_source

DESIGNS = {  # from none to the study's most aggressive corner
    "16-bit weights, fp32 activations": CompressionSpec(weight_bits=16, weight_exp_bits=5, activation_bits=0),
    "8-bit AdaptivFloat weights and activations": CompressionSpec(weight_bits=8, weight_exp_bits=4),
    "50 % encoder pruning, 6-bit weights, span 32": CompressionSpec(encoder_pruning=0.5, weight_bits=6,
                                                                      weight_exp_bits=3, attention_span=32),
    "60 % encoder + 80 % embedding pruning, 6-bit, span 16": CompressionSpec(
        encoder_pruning=0.6, embedding_pruning=0.8, weight_bits=6, weight_exp_bits=3, attention_span=16),
}
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # nats: the default study's exit_threshold range


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("search_spaces/sst2_minilm.yaml"))
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU")
    parser.add_argument("--full-dev", action="store_true", help="score on the whole dev split")
    args = parser.parse_args()
    config = load_study_config(args.config)
    if config.is_multitask:
        raise SystemExit("a single-task study, please")
    other = resolve_device(args.device)
    tokenizer = load_tokenizer(resolve_model_source(config.model.name))
    glue_dir = resolve_glue_dir(config.data.glue_dir)
    dev = load_dev_set(task_spec(config.task).name, tokenizer, glue_dir=glue_dir,
                       max_seq_length=config.model.max_seq_length,
                       dev_subset=None if args.full_dev else config.data.dev_subset, seed=config.data.seed)
    pad_id = tokenizer.pad_token_id or 0
    calibration = load_dvfs_rows(config.task, tokenizer, glue_dir=glue_dir, max_seq_length=config.model.max_seq_length,
                                 seed=config.data.seed, rows=config.data.calibration_rows)  # a trial's calibration rows
    # fine-tuned where ``other`` is (a model trained on CUDA has its own cache key); scored on both
    prepared = prepare_for_study(config, device=other).model
    name = torch.cuda.get_device_name(other) if other.type == "cuda" else platform.machine()
    print(f"{config.task} dev, {len(dev)} sentences; prepared model {config.model.name}; cpu vs {other} ({name}), "
          f"torch {torch.__version__}\n")
    print("| design | off-ramp predictions that agree | same exit prediction and layer, worst threshold | "
          "max |logit diff| |\n|---|---:|---:|---:|")
    ramp_agree, exit_agree, max_diff = [], [], 0.0
    for label, spec in DESIGNS.items():
        logits = {}
        for device in (torch.device("cpu"), other):
            model = copy.deepcopy(prepared).to(device)
            compressed, _ = compress(model, spec, calibration=calibration, pad_id=pad_id)
            logits[device.type] = dev_layer_logits(compressed, dev, pad_id=pad_id).float().cpu()
        a, b = logits["cpu"], logits[other.type]
        if a.shape[-1] == 1:
            raise SystemExit("a classification task, please: a regression value has no prediction to agree on")
        ramp = float(np.mean(predictions(a) == predictions(b)))
        worst_exit = 1.0
        for threshold in THRESHOLDS:
            (la, ea), (lb, eb) = simulate_early_exit(a, threshold), simulate_early_exit(b, threshold)
            same = (predictions(la) == predictions(lb)) & (ea == eb).numpy()
            worst_exit = min(worst_exit, float(np.mean(same)))
        diff = float((a - b).abs().max())
        ramp_agree.append(ramp)
        exit_agree.append(worst_exit)
        max_diff = max(max_diff, diff)
        print(f"| {label} | {100 * ramp:.2f} % | {100 * worst_exit:.2f} % | {diff:.2e} |")
    print(f"\ndevice={other} designs={len(DESIGNS)} rows={len(dev)} min_offramp_agree={min(ramp_agree):.4f} "
          f"min_exit_agree={min(exit_agree):.4f} max_abs_logit_diff={max_diff:.3e}")


if __name__ == "__main__":
    main()
