"""ONNX early exit as one graph with ``If`` nodes against the per-layer graphs and host loop that
``dse deploy`` ships (issue #20 item 1: "measure both and pick").

    python benchmarks/onnx_if_graph.py EXPORT_DIR [--max-rows N] [--threads 1]

Needs EXPORT_DIR/deploy/onnx_fp32 and onnx_int8 (``dse deploy EXPORT_DIR``). For each, the
folder's own graphs are composed into one batch-1 graph (:func:`if_graph`): the embedding, then
per layer that layer's nodes, its off-ramp's softmax entropy and an ``If`` whose ``then`` branch
returns the logits and exit layer and whose ``else`` branch holds the rest of the network. The same
weights, nodes and thresholds, so the two forms differ only in where the exit decision runs. Both
are run on the trial's dev rows one sentence at a time: exit layers and predictions compared, and
median / p95 latency. Last line: ``{"benchmark": "onnx_if_graph", ...}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

def _prefixed(path: Path, prefix: str) -> onnx.ModelProto:
    return compose.add_prefix(onnx.load(str(path)), prefix)


def _entropy_nodes(logits: str, threshold: float, prefix: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """Nodes computing ``entropy(softmax(logits)) < threshold`` as a one-element bool (the runner's
    rule; float32 here, float64 on the host)."""
    n = lambda op, ins, outs, **kw: helper.make_node(op, ins, outs, name=f"{prefix}{outs[0]}", **kw)  # noqa: E731
    p = prefix
    consts = [numpy_helper.from_array(np.array([threshold], dtype=np.float32), f"{p}threshold"),
              numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}axis")]
    nodes = [n("LogSoftmax", [logits], [f"{p}log_p"], axis=-1), n("Exp", [f"{p}log_p"], [f"{p}p"]),
             n("Mul", [f"{p}p", f"{p}log_p"], [f"{p}plogp"]),
             n("ReduceSum", [f"{p}plogp", f"{p}axis"], [f"{p}neg_entropy"], keepdims=0),
             n("Neg", [f"{p}neg_entropy"], [f"{p}entropy"]), n("Less", [f"{p}entropy", f"{p}threshold"], [f"{p}exit"])]
    return nodes, consts, f"{p}exit"


def if_graph(folder: Path) -> onnx.ModelProto:
    """One ONNX model (batch 1) of ``folder``'s embedding and layer graphs with the exit rule as
    nested ``If`` nodes; outputs ``logits`` [1, labels] and ``exit_layer`` [1]."""
    meta = json.loads((folder / "runner.json").read_text())
    thresholds, labels = meta["entropy_thresholds_nats"], int(meta["num_labels"])
    embed_model = _prefixed(folder / meta["embed"], "embed_")
    embed = embed_model.graph
    layers = [_prefixed(folder / name, f"l{i + 1}_").graph for i, name in enumerate(meta["layers"])]
    initializers = list(embed.initializer) + [t for g in layers for t in g.initializer]

    def outputs(logits: str, layer: str) -> list[onnx.ValueInfoProto]:
        return [helper.make_tensor_value_info(logits, TensorProto.FLOAT, [1, labels]),
                helper.make_tensor_value_info(layer, TensorProto.INT64, [1])]

    def exit_at(i: int, logits_out: str, layer_out: str) -> list[onnx.NodeProto]:
        """Layer ``i``'s off-ramp logits and its 1-based number as the exiting outputs."""
        p = f"l{i + 1}_"
        return [helper.make_node("Identity", [f"{p}logits"], [logits_out], name=f"{p}{logits_out}"),
                helper.make_node("Constant", [], [layer_out], name=f"{p}{layer_out}",
                                 value=numpy_helper.from_array(np.array([i + 1], dtype=np.int64)))]

    def level(i: int, hidden: str, logits_out: str, layer_out: str) -> list[onnx.NodeProto]:
        """Layer ``i`` (0-based) fed ``hidden``, then its exit decision and the rest, writing the
        exiting logits and layer to ``logits_out`` / ``layer_out`` (unique names: ONNX values are
        defined once, subgraphs included)."""
        g, p = layers[i], f"l{i + 1}_"
        nodes = [helper.make_node("Identity", [hidden], [f"{p}hidden"], name=f"{p}in_hidden"),
                 helper.make_node("Identity", ["attention_mask"], [f"{p}attention_mask"], name=f"{p}in_mask"),
                 *g.node]
        if i == len(layers) - 1:
            return [*nodes, *exit_at(i, logits_out, layer_out)]
        check, consts, cond = _entropy_nodes(f"{p}logits", thresholds[i], f"{p}e_")
        initializers.extend(consts)
        then_out, rest_out = (f"{p}then_logits", f"{p}then_layer"), (f"{p}rest_logits", f"{p}rest_layer")
        then = helper.make_graph(exit_at(i, *then_out), f"{p}exit", [], outputs(*then_out))
        rest = helper.make_graph(level(i + 1, f"{p}hidden_out", *rest_out), f"{p}continue", [], outputs(*rest_out))
        return [*nodes, *check, helper.make_node("If", [cond], [logits_out, layer_out], name=f"{p}if",
                                                 then_branch=then, else_branch=rest)]

    body = [*embed.node, *level(0, "embed_hidden", "logits", "exit_layer")]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "seq"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "seq"]),
              helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, [1, "seq"])]
    for node in embed.node:  # the embedding graph's inputs were prefixed with the rest
        node.input[:] = [{"embed_input_ids": "input_ids", "embed_token_type_ids": "token_type_ids"}.get(x, x)
                         for x in node.input]
    graph = helper.make_graph(body, "early_exit", inputs, outputs("logits", "exit_layer"), initializer=initializers)
    model = helper.make_model(graph, opset_imports=list(embed_model.opset_import))
    model.ir_version = embed_model.ir_version  # the exporter's, which this onnxruntime reads
    onnx.checker.check_model(model, full_check=False)
    return model


def _session(model: onnx.ModelProto, threads: int):  # noqa: ANN202
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from dse.artifacts.deploy import WARMUP_ROWS, _run_timed  # deploy's own timing, so the figures compare
    from dse.artifacts.hf_export import exported_dev_rows, load_exported_model

    deploy = args.export / "deploy"
    sys.path.insert(0, str(deploy / "onnx_fp32"))
    from early_exit_runner import EarlyExitRunner  # the shipped host runner, as a user runs it

    exported = load_exported_model(args.export / "model")
    dev = exported_dev_rows(exported)
    n = len(dev) if args.max_rows is None else min(args.max_rows, len(dev))
    rows = [(np.asarray([dev.input_ids[i]], dtype=np.int64), np.ones((1, len(dev.input_ids[i])), dtype=np.int64),
             np.asarray([dev.token_type_ids[i]], dtype=np.int64)) for i in range(n)]
    print(f"{exported.settings.task}: {len(rows)} dev rows, batch 1, {args.threads} thread(s); "
          f"{platform.machine()}, {datetime.now(timezone.utc):%Y-%m-%d}\n")
    print("| artifact | form | same exit layer as the host loop | same prediction | median / p95 ms |")
    print("|---|---|---:|---:|---:|")
    out = []
    for name in ("onnx_fp32", "onnx_int8"):
        runner = EarlyExitRunner(deploy / name, threads=args.threads)
        session = _session(if_graph(deploy / name), args.threads)
        if_call = lambda i, m, t: session.run(None, {"input_ids": i, "attention_mask": m, "token_type_ids": t})  # noqa: E731
        timed = {form: _run_timed(call, rows.__getitem__, len(rows), WARMUP_ROWS)
                 for form, call in (("host loop (shipped)", runner), ("one graph, If nodes", if_call))}
        loop_logits, loop_layer, _ = timed["host loop (shipped)"]
        loop_pred = np.array([int(np.argmax(x[0])) for x in loop_logits])
        for form, (logits, layer, times_ms) in timed.items():
            pred = np.array([int(np.argmax(x[0])) for x in logits])
            med, p95 = np.median(times_ms), np.percentile(times_ms, 95)
            print(f"| {name} | {form} | {100 * np.mean(layer == loop_layer):.1f} % | "
                  f"{100 * np.mean(pred == loop_pred):.1f} % | {med:.2f} / {p95:.2f} |")
            out.append({"artifact": name, "form": form, "exit_agreement": float(np.mean(layer == loop_layer)),
                        "prediction_agreement": float(np.mean(pred == loop_pred)),
                        "median_ms": float(med), "p95_ms": float(p95)})
    print(json.dumps({"benchmark": "onnx_if_graph", "rows": len(rows), "threads": args.threads, "results": out}))


if __name__ == "__main__":
    main()
