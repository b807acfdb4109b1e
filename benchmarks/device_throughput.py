"""Throughput of our pipeline on one device: fine-tuning, a full dev pass, a model trial's core.

On the packaged MiniLM (or ``--model``) placed with the same code a study uses
(``dse.modeling.device``: bf16 autocast for training on CUDA only, fp32 evaluation everywhere):
  * fine-tune examples/s of the early-exit model (final off-ramp loss, AdamW) at batch 32 and
    128, sequence length 64, random token ids (throughput does not depend on the text);
  * one full SST-2 dev pass with every off-ramp's logits (``dev_layer_logits``, 872 sentences);
  * a model trial's core: compress (50 % encoder pruning, 6-bit AdaptivFloat weights, 8-bit
    activations; static activation biases and the off-ramp calibration on 256 SST-2 train rows, as
    a trial does), the inactive-knob guards, and that dev pass.

``--random-weights bert-base|albert-base`` times those shapes instead (random weights: throughput
does not depend on them; BERT-base uses ``--model``'s uncased WordPiece vocabulary, ALBERT-base the
SentencePiece model in ``--tokenizer``, a folder with ``spiece.model``).

Run: python benchmarks/device_throughput.py --device cpu|cuda [--steps N]
         [--random-weights bert-base|albert-base [--tokenizer DIR]]
Last line: device=<d> train_ex_per_s_bs128=<a> dev_pass_ms=<b> model_trial_ms=<c>
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from transformers import AlbertConfig, AlbertModel, AlbertTokenizer, BertConfig, BertModel, PreTrainedModel

from dse.compression.apply import compress
from dse.compression.spec import CompressionSpec
from dse.data import load_task_split, resolve_glue_dir
from dse.evaluation.context import load_dvfs_rows
from dse.evaluation.guards import check_knobs_active
from dse.modeling.batching import encode_dataset
from dse.modeling.device import eval_batch_size, resolve_device, train_autocast
from dse.modeling.early_exit import EarlyExitModel
from dse.modeling.inference import dev_layer_logits
from dse.modeling.loading import load_backbone, load_tokenizer, resolve_model_source

SEQ_LEN = 64
TRIAL_SPEC = CompressionSpec(encoder_pruning=0.5, weight_bits=6, weight_exp_bits=3, activation_bits=8)


def random_backbone(arch: str, vocab_size: int) -> PreTrainedModel:
    """BERT-base or ALBERT-base (their published shapes) with seeded random weights."""
    torch.manual_seed(0)
    if arch == "bert-base":
        return BertModel(BertConfig(vocab_size=vocab_size))  # the defaults are bert-base's shape
    return AlbertModel(AlbertConfig(vocab_size=vocab_size, embedding_size=128, hidden_size=768,
                                    num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_examples_per_s(model: EarlyExitModel, device: torch.device, batch: int, steps: int) -> float:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, model.config.vocab_size, (batch, SEQ_LEN), generator=gen).to(device)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    labels = torch.randint(0, model.num_labels, (batch,), generator=gen).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step() -> None:
        with train_autocast(device):
            loss = torch.nn.functional.cross_entropy(model.final_logits(ids, mask, types).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, kernels
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    model.eval()
    return batch * steps / (time.perf_counter() - start)


def timed_ms(fn, device: torch.device, repeats: int = 3) -> float:  # noqa: ANN001
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, (time.perf_counter() - start) * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per batch size")
    parser.add_argument("--random-weights", choices=["bert-base", "albert-base"],
                        help="time this shape with random weights instead of --model")
    parser.add_argument("--tokenizer", help="ALBERT-base: a folder with its spiece.model")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.random_weights == "albert-base":
        if not args.tokenizer:
            raise SystemExit("--random-weights albert-base needs --tokenizer DIR (a folder with spiece.model)")
        tokenizer = AlbertTokenizer.from_pretrained(args.tokenizer)
    else:
        source = resolve_model_source(args.model)
        tokenizer = load_tokenizer(source)
    dev = encode_dataset(load_task_split("sst2", "dev", glue_dir=resolve_glue_dir(None)), tokenizer, max_length=128)
    pad_id = tokenizer.pad_token_id or 0

    if args.random_weights:
        backbone, label = random_backbone(args.random_weights, tokenizer.vocab_size), f"{args.random_weights} (random)"
    else:
        backbone, label = load_backbone(source), args.model
    torch.manual_seed(0)
    model = EarlyExitModel(backbone, num_labels=2).to(device)
    rates = {b: train_examples_per_s(model, device, b, args.steps) for b in (32, 128)}
    dev_ms = timed_ms(lambda: dev_layer_logits(model, dev, pad_id=pad_id), device)
    batch = eval_batch_size(device)
    dev64_ms = dev_ms if batch == 64 else timed_ms(lambda: dev_layer_logits(model, dev, pad_id=pad_id, batch_size=64),
                                                   device)
    calibration = load_dvfs_rows("sst2", tokenizer, glue_dir=resolve_glue_dir(None), max_seq_length=128, seed=0)

    def model_trial() -> None:
        compressed, _ = compress(model, TRIAL_SPEC, calibration=calibration, pad_id=pad_id)
        check_knobs_active(model, compressed, TRIAL_SPEC, dev=dev, pad_id=pad_id)
        dev_layer_logits(compressed, dev, pad_id=pad_id)

    trial_ms = timed_ms(model_trial, device, repeats=1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__}, {label}, {len(dev)} dev rows")
    for b, r in rates.items():
        print(f"fine-tune, batch {b}, length {SEQ_LEN}: {r:,.1f} examples/s")
    print(f"full dev pass, every off-ramp: {dev_ms:,.0f} ms in batches of {batch} ({dev64_ms:,.0f} ms in batches "
          f"of 64); model trial core: {trial_ms:,.0f} ms")
    print(f"device={device} train_ex_per_s_bs128={rates[128]:.1f} dev_pass_ms={dev_ms:.1f} "
          f"model_trial_ms={trial_ms:.1f}")


if __name__ == "__main__":
    main()
