"""Dev accuracy of each compression technique alone and combined, on the study's real model and data.

Every row is a real evaluation through the same path a study trial takes (compression of the
fine-tuned model, guards, one dev pass, entropy early exit on the per-layer logits, the hardware
model at its default design). "Alone" rows keep the weights at 16-bit AdaptivFloat (5 exponent
bits), the finest format the knobs allow; the first rows show that it costs no accuracy.

Run: python benchmarks/technique_accuracy.py [--config search_spaces/sst2_minilm.yaml]
Prints a Markdown table (as in the README).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from dse.config import load_study_config
from dse.evaluation import build_context, evaluate_trial

NEAR_LOSSLESS = {"weight_bits": 16, "weight_exp_bits": 5}
SETTINGS: list[tuple[str, dict]] = [
    ("AdaptivFloat 16 bits (5 exp)", {}),
    ("AdaptivFloat 8 bits (4 exp)", {"weight_bits": 8, "weight_exp_bits": 4}),
    ("AdaptivFloat 8 bits (3 exp)", {"weight_bits": 8, "weight_exp_bits": 3}),
    ("AdaptivFloat 6 bits (4 exp)", {"weight_bits": 6, "weight_exp_bits": 4}),
    ("AdaptivFloat 4 bits (3 exp)", {"weight_bits": 4, "weight_exp_bits": 3}),
    ("encoder pruning 20%", {"encoder_pruning": 0.2}),
    ("encoder pruning 40%", {"encoder_pruning": 0.4}),
    ("encoder pruning 60%", {"encoder_pruning": 0.6}),
    ("embedding pruning 40%", {"embedding_pruning": 0.4}),
    ("embedding pruning 80%", {"embedding_pruning": 0.8}),
    ("attention span 32", {"attention_span": 32}),
    ("attention span 16", {"attention_span": 16}),
    ("attention span 8", {"attention_span": 8}),
    ("early exit, entropy < 0.1", {"exit_threshold": 0.1}),
    ("early exit, entropy < 0.3", {"exit_threshold": 0.3}),
    ("early exit, entropy < 0.5", {"exit_threshold": 0.5}),
    ("combined: prune 20% / emb 40%, AF8 (4 exp), span 32",
     {"encoder_pruning": 0.2, "embedding_pruning": 0.4, "weight_bits": 8, "weight_exp_bits": 4,
      "attention_span": 32}),
    ("combined: the same, exit < 0.1",
     {"encoder_pruning": 0.2, "embedding_pruning": 0.4, "weight_bits": 8, "weight_exp_bits": 4,
      "attention_span": 32, "exit_threshold": 0.1}),
    ("combined: prune 40% / emb 60%, AF8 (4 exp), span 32, exit < 0.3",
     {"encoder_pruning": 0.4, "embedding_pruning": 0.6, "weight_bits": 8, "weight_exp_bits": 4,
      "attention_span": 32, "exit_threshold": 0.3}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("search_spaces/sst2_minilm.yaml"))
    args = parser.parse_args()
    config = load_study_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = build_context(config, cache_dir=Path(tmp))
        print(f"{config.task} dev, {len(ctx.dev)} sentences, model {config.model.name}\n")
        print("| setting | accuracy (points) | drop | avg exit layer | energy/sentence (µJ) |")
        print("|---|---:|---:|---:|---:|")
        print(f"| fine-tuned baseline (fp32, no exit) | {ctx.baseline_points:.2f} | 0.00 | "
              f"{ctx.shape.num_layers} | |")
        defaults = config.knob_values({})
        for label, overrides in SETTINGS:
            knobs = {**defaults, "exit_threshold": 0.0, "attention_span": 512, "encoder_pruning": 0.0,
                     "embedding_pruning": 0.0, **NEAR_LOSSLESS, **overrides}
            m = evaluate_trial(ctx, knobs).metrics
            print(f"| {label} | {m['accuracy']:.2f} | {m['accuracy_drop']:.2f} | "
                  f"{m['avg_exit_layer']:.2f} | {m['energy_uj']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
