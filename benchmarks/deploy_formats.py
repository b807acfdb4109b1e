"""Every deploy format of one exported design, measured with the same table (issue #20).

    python benchmarks/deploy_formats.py EXPORT_DIR [--max-rows N] [--formats onnx,torchscript,litert]

For each format, ``dse.deploy`` writes EXPORT_DIR/deploy/ and measures fp32 and int8 on the
trial's dev rows at batch size 1: size, accuracy, average exit layer, agreement with the trial's
predictions and exit layers, median / p95 latency per sentence at 1, 2 and 4 threads (TorchScript:
torch threads, one deploy per count). Prints a Markdown table, the issue's targets checked, and
last one JSON line: ``{"benchmark": "deploy_formats", ...}``. The folder's deploy/ holds the last
format's files afterwards. Run on an idle machine: latency is wall-clock.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import dse
from dse.artifacts.hf_export import load_exported_model

THREADS = (1, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--formats", default="onnx,torchscript")
    args = parser.parse_args()
    hf_mb = sum(p.stat().st_size for p in (args.export / "model").glob("*.safetensors")) / 1e6
    rows: list[dict] = []
    trial_accuracy = None
    for fmt in args.formats.split(","):
        per_threads: dict[str, dict] = {}
        if fmt in ("onnx", "litert"):  # both measure 1, 2 and 4 threads in one deploy
            report = dse.deploy(args.export, max_rows=args.max_rows, format=fmt)
            per_threads = {name: getattr(report, name).latency_ms_by_threads for name in ("fp32", "int8")}
        else:  # torch threads are process-wide: one deploy per count, figures of the first kept
            report = None
            per_threads = {"fp32": {}, "int8": {}}
            for t in THREADS:
                r = dse.deploy(args.export, max_rows=args.max_rows, format=fmt, threads=t)
                report = report or r
                for name in ("fp32", "int8"):
                    per_threads[name][str(t)] = getattr(r, name).latency_ms_by_threads[str(t)]
        trial_accuracy = report.trial_accuracy
        for name in ("fp32", "int8"):
            f = getattr(report, name)
            rows.append({"format": fmt, "artifact": name, "size_mb": f.size_mb, "accuracy": f.accuracy,
                         "avg_exit_layer": f.avg_exit_layer, "trial_agreement": f.trial_agreement,
                         "exit_agreement": f.exit_agreement, "latency_ms_by_threads": per_threads[name]})
    exported = load_exported_model(args.export / "model")
    print(f"{exported.settings.task}: {report.dev_rows} dev rows, batch 1; trial accuracy {trial_accuracy:.2f}; "
          f"HF export {hf_mb:.1f} MB; {platform.machine()}, {platform.processor() or '?'}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d}\n")
    print("| format | artifact | size (MB) | accuracy | avg exit | same pred as trial | same exit as trial | "
          + " | ".join(f"median / p95 ms, {t} thr" for t in THREADS) + " |")
    print("|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(THREADS))
    for r in rows:
        lat = [r["latency_ms_by_threads"].get(str(t)) for t in THREADS]
        print(f"| {r['format']} | {r['artifact']} | {r['size_mb']:.2f} | {r['accuracy']:.2f} | {r['avg_exit_layer']:.2f} | "
              f"{100 * r['trial_agreement']:.1f}% | {100 * r['exit_agreement']:.1f}% | "
              + " | ".join(f"{v['median_ms']:.2f} / {v['p95_ms']:.2f}" if v else "-" for v in lat) + " |")
    by = {(r["format"], r["artifact"]): r for r in rows}
    if ("onnx", "int8") in by:
        q, f = by["onnx", "int8"], by["onnx", "fp32"]
        print(f"\nONNX int8 / fp32 size: {100 * q['size_mb'] / f['size_mb']:.1f} % (target <= 25 %); "
              f"int8 accuracy - trial: {q['accuracy'] - trial_accuracy:+.2f} points (target >= -1.0); "
              f"fp32 exit layers as the trial's: {100 * f['exit_agreement']:.1f} % (target >= 99 %)")
    if ("litert", "int8") in by and ("onnx", "int8") in by:
        print(f"LiteRT int8 / ONNX int8 size: {100 * by['litert', 'int8']['size_mb'] / by['onnx', 'int8']['size_mb']:.1f} % "
              "(target within 10 %)")
    print(json.dumps({"benchmark": "deploy_formats", "task": exported.settings.task, "dev_rows": report.dev_rows,
                      "trial_accuracy": trial_accuracy, "hf_export_mb": hf_mb, "rows": rows}))


if __name__ == "__main__":
    main()
