"""Per-layer ONNX graphs of an early-exit model, their int8 quantization and the host exit loop."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dse.artifacts.onnx_export import (EMBED_FILE, RUNNER_FILE, _replace_off_ramp_tensors,
                                       calibrate_off_ramps_for_runner, export_onnx, folder_size_mb, layer_file,
                                       quantize_onnx, quantize_onnx_calibrated)
from dse.artifacts.onnx_runner import EarlyExitRunner, entropy_nats
from dse.compression.apply import compress
from dse.modeling.early_exit import EarlyExitModel, entropy, simulate_early_exit
from tests.conftest import tiny_backbone
from dse.modeling.inference import dev_layer_logits
from tests.dse.artifacts.test_hf_export import SPEC, encoded, texts, tiny_tokenizer


@pytest.fixture(scope="module", params=["cls-fp32-activations", "mean-8bit-activations"])
def deployed(request, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """A compressed tiny BERT (50 % pruning, 4-token spans) exported once, fp32 and int8: [CLS]
    off-ramps without activation quantization, and mean-pooled off-ramps with the static 8-bit
    AdaptivFloat activations a trial simulates (calibrated on other rows)."""
    pooling, bits = ("cls", 0) if request.param.startswith("cls") else ("mean", 8)
    spec = dataclasses.replace(SPEC, activation_bits=bits)
    model, report = compress(EarlyExitModel(tiny_backbone("bert"), num_labels=2, pooling=pooling).eval(), spec,
                             calibration=encoded(tiny_tokenizer(), texts(40, seed=9)), pad_id=0)
    assert report["static_activation_biases"] == (18 if bits else 0)  # 3 layers x 6 matmul inputs
    model.eval()
    rows = encoded(tiny_tokenizer(), texts(30))
    thresholds = _between_rows(model, rows)
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(model, thresholds, out / "fp32", label_names=["negative", "positive"])
    quantize_onnx(out / "fp32", out / "int8")
    return model, rows, thresholds, out


def _between_rows(model: EarlyExitModel, rows) -> torch.Tensor:  # noqa: ANN001
    """Per-layer thresholds halfway between two rows' entropies near the median, so that no row
    sits on a threshold (the compressed tiny model gives many rows the same entropy)."""
    ent = entropy(dev_layer_logits(model, rows, pad_id=0))  # [layers, rows]
    out = []
    for layer in ent:
        values = torch.unique(layer)  # sorted
        k = max(1, len(values) // 2)
        out.append(float(values[k - 1] + values[k]) / 2 if len(values) > 1 else float(values[0]) + 1e-3)
    return torch.tensor(out)


def _x(ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray([ids], dtype=np.int64)
    return x, np.ones_like(x), np.zeros_like(x)


def assert_runner_computes_the_model(runner, model: EarlyExitModel, rows) -> None:  # noqa: ANN001
    """Every row alone, at its own length, gives the model's per-layer logits."""
    for ids in rows.input_ids:
        x = _x(ids)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(a) for a in x)).numpy()
        np.testing.assert_allclose(runner.layer_logits(*x), expected, atol=1e-5)


def assert_runner_exits_as_simulated(runner, model: EarlyExitModel, rows, thresholds: torch.Tensor) -> None:  # noqa: ANN001
    """One padded batch through the runner's exit loop gives the simulated exit layers and logits,
    and the rows really exit at different layers."""
    width = max(len(r) for r in rows.input_ids)
    ids = np.asarray([r + [0] * (width - len(r)) for r in rows.input_ids], dtype=np.int64)
    mask = (np.arange(width)[None] < np.asarray([len(r) for r in rows.input_ids])[:, None]).astype(np.int64)
    logits, layers = runner(ids, mask, np.zeros_like(ids))
    with torch.no_grad():
        per_layer = model(torch.from_numpy(ids), torch.from_numpy(mask), torch.zeros(ids.shape, dtype=torch.long))
    want_logits, want_layers = simulate_early_exit(per_layer, thresholds)
    assert np.array_equal(layers, want_layers.numpy())
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-5)
    assert len(set(layers.tolist())) > 1


def assert_int8_stays_close(fp32, int8, rows) -> None:  # noqa: ANN001
    """int8 weights, activations quantized per call: every off-ramp's logits within 0.05 of fp32's
    and the same predictions wherever fp32 is not a near-tie (the random model has many); the exit
    loop runs."""
    clear = 0
    for ids in rows.input_ids:
        x = _x(ids)
        want, got = fp32.layer_logits(*x), int8.layer_logits(*x)
        assert np.abs(got - want).max() < 0.05
        margin = np.abs(want[..., 0] - want[..., 1]) > 0.1
        assert np.array_equal(got.argmax(-1)[margin], want.argmax(-1)[margin])
        clear += int(margin.sum())
        assert 1 <= int(int8(*x)[1][0]) <= len(want)
    assert clear >= 10


def test_fp32_graphs_compute_what_the_model_computes(deployed) -> None:  # noqa: ANN001
    model, rows, _, out = deployed
    assert_runner_computes_the_model(EarlyExitRunner(out / "fp32"), model, rows)  # varied, dynamic lengths


def test_host_exit_loop_matches_the_simulated_exit_layers(deployed) -> None:  # noqa: ANN001
    model, rows, thresholds, out = deployed
    assert_runner_exits_as_simulated(EarlyExitRunner(out / "fp32"), model, rows, thresholds)


def test_the_benchmarked_if_graph_exits_as_the_host_loop(deployed) -> None:  # noqa: ANN001
    """benchmarks/onnx_if_graph.py's one-graph form (nested ``If`` nodes) of a folder computes
    what the shipped host loop computes, so its timings compare like with like."""
    import importlib.util

    import onnxruntime as ort

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "onnx_if_graph.py"
    spec = importlib.util.spec_from_file_location("onnx_if_graph", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    _, rows, _, out = deployed
    layers = []
    for name in ("fp32", "int8"):
        runner = EarlyExitRunner(out / name)
        session = ort.InferenceSession(bench.if_graph(out / name).SerializeToString(), providers=["CPUExecutionProvider"])
        for ids in rows.input_ids:
            x, m, t = _x(ids)
            want_logits, want_layer = runner(x, m, t)
            logits, layer = session.run(None, {"input_ids": x, "attention_mask": m, "token_type_ids": t})
            np.testing.assert_array_equal(layer, want_layer)
            np.testing.assert_allclose(logits, want_logits, atol=1e-5)
            layers.append(int(layer[0]))
    assert len(set(layers)) > 1  # rows exit at different layers: the If nodes really branch


def test_int8_quantizes_every_matmul_and_table_and_stays_close(deployed) -> None:  # noqa: ANN001
    model, rows, thresholds, out = deployed
    for name in (EMBED_FILE, *(layer_file(i) for i in range(model.num_layers))):
        ops = {n.op_type for n in onnx.load(str(out / "int8" / name)).graph.node}
        assert "MatMul" not in ops or "MatMulInteger" in ops
        assert "Gemm" not in ops  # off-ramp pooler and classifier too
        if name == EMBED_FILE:  # the tables are 8-bit initializers (onnxruntime stores Gather data as uint8)
            tables = [t for t in onnx.load(str(out / "int8" / name)).graph.initializer
                      if len(t.dims) == 2 and t.data_type != onnx.TensorProto.INT64]  # not position_ids
            assert len(tables) == 3 and all(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for t in tables)
        else:
            assert "MatMulInteger" in ops
    assert folder_size_mb(out / "int8") < 0.75 * folder_size_mb(out / "fp32")  # tiny: graph structure weighs

    def weight_bytes(folder: Path) -> int:
        return sum(len(t.raw_data) for f in folder.glob("*.onnx") for t in onnx.load(str(f)).graph.initializer)

    assert weight_bytes(out / "int8") < 0.4 * weight_bytes(out / "fp32")
    assert_int8_stays_close(EarlyExitRunner(out / "fp32"), EarlyExitRunner(out / "int8"), rows)


def test_the_folder_runs_with_numpy_and_onnxruntime_alone(deployed, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, _, out = deployed
    script = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(out / 'int8')!r})\n"
        "from early_exit_runner import EarlyExitRunner\n"
        f"r = EarlyExitRunner({str(out / 'int8')!r}, threads=1)\n"
        "ids = np.array([[2, 10, 11, 12, 3]])\n"
        "logits, layer = r(ids, np.ones_like(ids))\n"
        "print(logits.shape, int(layer[0]), r.label_names)\n"
        "assert not [k for k in sys.modules if k in ('torch', 'dse', 'transformers') or k.startswith('dse.')]\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "(1, 2)" in run.stdout and "['negative', 'positive']" in run.stdout
    assert (out / "int8" / RUNNER_FILE).read_text() == (out / "fp32" / RUNNER_FILE).read_text()


def test_entropy_matches_the_models() -> None:
    logits = torch.randn(50, 3) * 4
    np.testing.assert_allclose(entropy_nats(logits.numpy()), entropy(logits).numpy(), atol=1e-6)


def test_int8_off_ramps_are_calibrated_on_the_int8_graphs(tmp_path: Path) -> None:
    """Standardised earlier off-ramps are re-centred (and tempered) on the int8 graphs' own
    features; the encoder and the final off-ramp are the plain int8 graphs'."""
    from tests.dse.compression.test_offramp_calibration import rows as calibration_rows
    from tests.dse.compression.test_offramp_calibration import standardised

    calibration = calibration_rows()
    model, _ = compress(standardised(EarlyExitModel(tiny_backbone("bert"), num_labels=2).eval()),
                        dataclasses.replace(SPEC, activation_bits=8), calibration=calibration, pad_id=0)
    thresholds = torch.full((model.num_layers,), 0.3)
    export_onnx(model, thresholds, tmp_path / "fp32")
    quantize_onnx(tmp_path / "fp32", tmp_path / "plain")
    assert quantize_onnx_calibrated(model, thresholds, tmp_path / "fp32", tmp_path / "none", None, pad_id=0) == {
        "recentred_off_ramps": 0, "tempered_off_ramps": 0}
    done = quantize_onnx_calibrated(model, thresholds, tmp_path / "fp32", tmp_path / "int8", calibration, pad_id=0)
    assert done["recentred_off_ramps"] == model.num_layers - 1
    plain, none, calibrated = (EarlyExitRunner(tmp_path / n) for n in ("plain", "none", "int8"))
    for ids in calibration.input_ids[:10]:
        x = _x(ids)
        hidden = [h for h, _ in plain.layer_outputs(*x)]
        np.testing.assert_array_equal(none.layer_logits(*x), plain.layer_logits(*x))
        for h, (h_cal, _) in zip(hidden, calibrated.layer_outputs(*x)):
            np.testing.assert_array_equal(h_cal, h)  # the same int8 encoder
        got, want = calibrated.layer_logits(*x), plain.layer_logits(*x)
        np.testing.assert_array_equal(got[-1], want[-1])  # the final off-ramp is left alone
        assert not np.allclose(got[:-1], want[:-1])
    # the fp32 graphs' off-ramp tensors were replaced in place: what exporting the calibrated model gives
    calibrated_model, again = calibrate_off_ramps_for_runner(model, EarlyExitRunner(tmp_path / "plain"), calibration,
                                                             pad_id=0)
    assert again == done
    assert _replace_off_ramp_tensors(tmp_path / "fp32", tmp_path / "replaced", model, calibrated_model)
    other = copy.deepcopy(model)  # graphs that do not hold this model's tensors: the caller exports instead
    other.off_ramps[0].input_shift.add_(1.0)
    assert not _replace_off_ramp_tensors(tmp_path / "fp32", tmp_path / "refused", other, calibrated_model)
    export_onnx(calibrated_model, thresholds, tmp_path / "exported")
    exported = EarlyExitRunner(quantize_onnx(tmp_path / "exported", tmp_path / "exported_int8"))
    for ids in calibration.input_ids[:10]:
        np.testing.assert_array_equal(calibrated.layer_logits(*_x(ids)), exported.layer_logits(*_x(ids)))


def test_mobilebert_graphs_compute_what_the_model_computes(tmp_path: Path) -> None:
    """MobileBERT: the trigram embedding and its projection in embed.onnx, the bottlenecks and
    stacked FFNs in every layer graph, with mean-pooled off-ramps and static 8-bit activations
    (the demanding one of the BERT fixture's two settings; one export keeps the suite fast); fp32
    graphs as the model, exits as simulated, int8 runs."""
    spec = dataclasses.replace(SPEC, activation_bits=8)
    model, report = compress(EarlyExitModel(tiny_backbone("mobilebert"), num_labels=2, pooling="mean").eval(), spec,
                             calibration=encoded(tiny_tokenizer(), texts(40, seed=9)), pad_id=0)
    assert report["static_activation_biases"] == 33  # 3 layers x 11 matmul inputs
    model.eval()
    rows = encoded(tiny_tokenizer(), texts(20))
    thresholds = _between_rows(model, rows)
    export_onnx(model, thresholds, tmp_path / "fp32", label_names=["negative", "positive"])
    quantize_onnx(tmp_path / "fp32", tmp_path / "int8")
    runner = EarlyExitRunner(tmp_path / "fp32")
    assert_runner_computes_the_model(runner, model, rows)
    assert_runner_exits_as_simulated(runner, model, rows, thresholds)
    embed_ops = {n.op_type for n in onnx.load(str(tmp_path / "int8" / EMBED_FILE)).graph.node}
    assert "MatMulInteger" in embed_ops  # the trigram projection 3E -> H is quantized too
    int8 = EarlyExitRunner(tmp_path / "int8")
    for ids in rows.input_ids[:5]:
        got = int8.layer_logits(*_x(ids))
        assert got.shape == (model.num_layers, 1, 2) and np.isfinite(got).all()
