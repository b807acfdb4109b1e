"""Deployment: fp32/int8 ONNX early-exit deployables (onnxruntime), and the legacy TorchScript ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dse.artifacts.deploy import (
    DEPLOY_DIR,
    DEPLOY_FILE,
    FP32_FILE,
    INT8_FILE,
    ONNX_FP32_DIR,
    ONNX_INT8_DIR,
    bert_large_fp32_mb,
    build_torchscript,
    calibrate_torchscript_int8,
    deploy_export,
    fp32_parameter_mb,
)
from dse.artifacts.export import MODEL_DIR
from dse.compression.apply import compress
from dse.errors import DSEError
from dse.modeling.early_exit import EarlyExitModel
from tests.conftest import tiny_backbone
from tests.dse.artifacts.test_hf_export import SPEC, encoded, export, mid_threshold, texts, tiny_tokenizer


@pytest.fixture
def compressed_bert() -> EarlyExitModel:
    model, _ = compress(EarlyExitModel(tiny_backbone("bert"), num_labels=2).eval(), SPEC)
    return model.eval()


def _inputs(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.tensor([ids])
    return x, torch.ones_like(x), torch.zeros_like(x)


@pytest.mark.parametrize("kind", ["bert", "albert", "mobilebert"])
def test_fp32_artifact_matches_the_model_and_int8_stays_close(kind: str) -> None:
    """ALBERT too: one shared layer run per position, the E -> H projection in the embedding step;
    MobileBERT: the trigram projection, bottlenecks and stacked FFNs."""
    model, _ = compress(EarlyExitModel(tiny_backbone(kind), num_labels=2).eval(), SPEC)
    rows = encoded(tiny_tokenizer(), texts(30))
    thresholds = torch.full((model.num_layers,), mid_threshold(model, rows))
    fp32 = build_torchscript(model, thresholds, int8=False)
    int8 = build_torchscript(model, thresholds, int8=True)
    same_pred = 0
    for ids in rows.input_ids:  # varied lengths: the traces are not tied to one sequence length
        x = _inputs(ids)
        with torch.no_grad():
            expected = model(*x)
            logits, layer = model.early_exit_forward(*x, threshold=thresholds)
        assert torch.allclose(fp32.layer_logits(*x), expected, atol=1e-5)
        got, got_layer = fp32(*x)
        assert torch.allclose(got, logits, atol=1e-5) and torch.equal(got_layer, layer)
        q_logits = int8.layer_logits(*x)
        assert (q_logits - expected).abs().max() < 0.05  # int8 weights: small, not zero, error
        q, q_layer = int8(*x)
        same_pred += int(q.argmax(-1) == logits.argmax(-1))
        assert 1 <= int(q_layer) <= model.num_layers
    # exit layers are not compared: the median threshold puts half the random model's rows
    # right at the boundary, where int8's small error decides
    assert same_pred >= 0.8 * len(rows)
    tables = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight")
    assert all(any(k.endswith(t) for k in fp32.state_dict()) for t in tables)
    assert not any(k.endswith(tables) for k in int8.state_dict())  # int8 keeps packed uint8 rows instead


def test_int8_torchscript_off_ramps_are_calibrated_on_its_own_features() -> None:
    """Standardised earlier off-ramps are re-centred on the features the int8 module computes
    (its eager steps are checked against the scripted module), as for ONNX and LiteRT int8; the
    encoder and the final off-ramp are left as they were."""
    import dataclasses

    from dse.artifacts.deploy import _TorchInt8Steps
    from tests.dse.compression.test_offramp_calibration import rows as calibration_rows
    from tests.dse.compression.test_offramp_calibration import standardised

    calibration = calibration_rows()
    model, _ = compress(standardised(EarlyExitModel(tiny_backbone("bert"), num_labels=2).eval()),
                        dataclasses.replace(SPEC, activation_bits=8), calibration=calibration, pad_id=0)
    thresholds = torch.full((model.num_layers,), 0.3)
    assert calibrate_torchscript_int8(model, None, pad_id=0) == (model, {"recentred_off_ramps": 0,
                                                                         "tempered_off_ramps": 0})
    calibrated, done = calibrate_torchscript_int8(model, calibration, pad_id=0)
    assert done["recentred_off_ramps"] == model.num_layers - 1
    plain, recal = (build_torchscript(m, thresholds, int8=True) for m in (model, calibrated))
    steps = _TorchInt8Steps(model)
    with torch.jit.optimized_execution(False), torch.no_grad():
        for ids in calibration.input_ids[:10]:
            x = _inputs(ids)
            want = plain.layer_logits(*x)
            eager = np.stack([logits for _, logits in steps.layer_outputs(*(t.numpy() for t in x))])
            np.testing.assert_allclose(eager[:, 0], want[:, 0].numpy(), atol=1e-5)  # the module's own computation
            got = recal.layer_logits(*x)
            torch.testing.assert_close(got[-1], want[-1])  # the final off-ramp is left alone
            assert not torch.allclose(got[:-1], want[:-1])


def test_artifacts_batch_rows_with_padding(compressed_bert: EarlyExitModel) -> None:
    rows = encoded(tiny_tokenizer(), texts(6))
    thresholds = torch.full((3,), mid_threshold(compressed_bert, rows))
    module = build_torchscript(compressed_bert, thresholds, int8=False)
    width = max(len(r) for r in rows.input_ids)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows.input_ids])
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows.input_ids])[:, None]).long()
    logits, layers = module(ids, mask, torch.zeros_like(ids))
    want, want_layers = compressed_bert.early_exit_forward(ids, mask, torch.zeros_like(ids), threshold=thresholds)
    assert torch.allclose(logits, want, atol=1e-5) and torch.equal(layers, want_layers)


def _glue(tmp_path: Path) -> Path:
    """A tiny SST-2 dev file (official layout), so the deploy check reads "the trial's dev rows"."""
    rng = np.random.default_rng(5)
    lines = ["sentence\tlabel", *(f"{t}\t{int(rng.integers(0, 2))}" for t in texts(20, seed=7))]
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    (tmp_path / "glue" / "SST-2" / "dev.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "glue"


def assert_measured_like_the_trial(report, fmt: str) -> None:  # noqa: ANN001
    """A report of 6 dev rows of a 3-layer design without activation quantization (SPEC), so the fp32
    deployable is the trial's model and exit rule; latencies at 1, 2 and 4 threads."""
    assert report.format == fmt and report.dev_rows == 6 and report.threads == 1
    assert 0 < report.int8.size_mb < report.fp32.size_mb
    assert report.fp32.accuracy == pytest.approx(report.trial_accuracy)
    assert report.fp32.trial_agreement == 1.0 and report.fp32.exit_agreement >= 5 / 6  # the median row may tip
    for f in (report.fp32, report.int8):
        assert list(f.latency_ms_by_threads) == ["1", "2", "4"]
        assert all(0 < v["median_ms"] <= v["p95_ms"] for v in f.latency_ms_by_threads.values())
        assert f.latency_median_ms == f.latency_ms_by_threads["1"]["median_ms"] and 1 <= f.avg_exit_layer <= 3


def test_deploy_onnx_writes_measured_fp32_and_int8_folders(compressed_bert: EarlyExitModel, tmp_path: Path) -> None:
    rows = encoded(tiny_tokenizer(), texts(30))
    export(compressed_bert, tmp_path / "knee" / MODEL_DIR, mid_threshold(compressed_bert, rows))
    report = deploy_export(tmp_path / "knee", glue_dir=_glue(tmp_path), max_rows=6)  # format onnx: the default
    out = tmp_path / "knee" / DEPLOY_DIR
    assert_measured_like_the_trial(report, "onnx")
    for name in (ONNX_FP32_DIR, ONNX_INT8_DIR):
        assert {"embed.onnx", "layer_01.onnx", "layer_03.onnx", "runner.json", "early_exit_runner.py"} <= {
            p.name for p in (out / name).iterdir()}
    meta = json.loads((out / DEPLOY_FILE).read_text())["_data"]
    assert meta["files"]["int8"] == f"{ONNX_INT8_DIR}/" and "onnxruntime" in meta["measured"]["machine"]
    assert not list(out.glob("*.pt"))
    # the seed paper's view: sizes against fp32 and fp32 BERT-large, accuracy drop, sentences/s at 1 thread
    edge = meta["measured"]["edge"]
    assert edge["int8_size_vs_fp32"] == pytest.approx(report.int8.size_mb / report.fp32.size_mb)
    assert edge["times_smaller_than_bert_large_fp32"] == pytest.approx(bert_large_fp32_mb() / report.int8.size_mb)
    assert edge["accuracy_drop_points"] == pytest.approx(report.trial_accuracy - report.int8.accuracy)
    assert edge["sentences_per_s_1_thread"] == pytest.approx(1e3 / report.int8.latency_ms_by_threads["1"]["median_ms"])
    assert edge["at_least_one_inference_per_s"] is True


def test_parameter_bytes_are_counted_from_the_config() -> None:
    backbone = tiny_backbone("bert")
    from transformers import BertForSequenceClassification

    real = sum(p.numel() for p in BertForSequenceClassification(backbone.config).parameters())
    assert fp32_parameter_mb(backbone.config) == pytest.approx(4 * real / 1e6)
    # BERT-large with a 2-class head: 335,143,938 parameters (Devlin et al. 2019: "340M")
    assert bert_large_fp32_mb() == pytest.approx(4 * 335_143_938 / 1e6)


def test_deploy_writes_artifacts_that_load_without_dse(compressed_bert: EarlyExitModel, tmp_path: Path) -> None:
    rows = encoded(tiny_tokenizer(), texts(30))
    export(compressed_bert, tmp_path / "knee" / MODEL_DIR, mid_threshold(compressed_bert, rows))
    report = deploy_export(tmp_path / "knee", threads=1, glue_dir=_glue(tmp_path), format="torchscript")
    out = tmp_path / "knee" / DEPLOY_DIR
    assert report.path == out and report.dev_rows == 10  # the export's dev_subset
    assert report.fp32.size_mb > 0 and 0 < report.int8.size_mb < report.fp32.size_mb
    assert report.fp32.accuracy == pytest.approx(report.trial_accuracy)  # no activation quantization in SPEC
    assert report.prediction_agreement >= 0.7
    for f in (report.fp32, report.int8):
        assert 0 < f.latency_median_ms <= f.latency_p95_ms and 1 <= f.avg_exit_layer <= 3
    meta = json.loads((out / DEPLOY_FILE).read_text())
    assert meta["_type"] == "edgebert-dse.deploy" and meta["_data"]["measured"]["int8"] == json.loads(
        json.dumps(report.to_json()))["int8"]

    # a fresh interpreter with torch alone: no dse module may be imported to run the artifacts
    script = (
        "import sys, torch\n"
        "ids = torch.tensor([[2, 10, 11, 12, 3]])\n"
        f"for name in ({FP32_FILE!r}, {INT8_FILE!r}):\n"
        f"    m = torch.jit.load({str(out)!r} + '/' + name)\n"
        "    logits, layer = m(ids, torch.ones_like(ids), torch.zeros_like(ids))\n"
        "    print(name, tuple(logits.shape), int(layer[0]), tuple(m.layer_logits(ids, torch.ones_like(ids), "
        "torch.zeros_like(ids)).shape))\n"
        "assert not [k for k in sys.modules if k == 'dse' or k.startswith('dse.')]\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"{FP32_FILE} (1, 2)" in run.stdout and "(3, 1, 2)" in run.stdout


def test_deploy_measures_the_first_max_rows(compressed_bert: EarlyExitModel, tmp_path: Path) -> None:
    rows = encoded(tiny_tokenizer(), texts(30))
    export(compressed_bert, tmp_path / "knee" / MODEL_DIR, mid_threshold(compressed_bert, rows))
    report = deploy_export(tmp_path / "knee", threads=1, max_rows=4, glue_dir=_glue(tmp_path), format="torchscript")
    assert report.dev_rows == 4  # of the export's 10
    assert json.loads((report.path / DEPLOY_FILE).read_text())["_data"]["measured"]["dev_rows"] == 4


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no such export folder"),
    ("empty", "not a design export folder (no model/config.json"),
    ("format", "unknown deploy format 'tflite' (choose from onnx, torchscript, litert)"),
])
def test_bad_folders_are_one_line_errors(case: str, message: str, tmp_path: Path) -> None:
    folder = tmp_path / "x"
    if case == "empty":
        folder.mkdir()
    with pytest.raises(DSEError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        deploy_export(folder, format="tflite" if case == "format" else "onnx")
    assert "\n" not in str(info.value)


def test_static_activation_quantization_is_traced_and_the_model_kept(compressed_bert: EarlyExitModel) -> None:
    import dataclasses

    from dse.compression.apply import activation_format, attach_activation_quantization, calibrate_activation_biases

    rows = encoded(tiny_tokenizer(), texts(5))
    x = _inputs(rows.input_ids[0])
    with torch.no_grad():
        plain = compressed_bert(*x)
    spec = dataclasses.replace(SPEC, activation_bits=4)
    handles = attach_activation_quantization(compressed_bert, spec)  # dynamic: per-call scales
    with torch.no_grad():
        dynamic = compressed_bert(*x)
    assert not torch.allclose(dynamic, plain)  # 4-bit activations change the logits
    module = build_torchscript(compressed_bert, torch.full((3,), 0.1), int8=False)
    assert torch.allclose(module.layer_logits(*x), plain, atol=1e-5)  # no deployable has per-batch scales
    for h in handles:
        h.remove()
    calibration = encoded(tiny_tokenizer(), texts(20, seed=7))
    biases = calibrate_activation_biases(compressed_bert, activation_format(spec), calibration, pad_id=0)
    attach_activation_quantization(compressed_bert, spec, biases=biases)
    with torch.no_grad():
        static = compressed_bert(*x)
    assert not torch.allclose(static, plain)
    module = build_torchscript(compressed_bert, torch.full((3,), 0.1), int8=False)
    assert torch.allclose(module.layer_logits(*x), static, atol=1e-5)  # the chip's activations, traced
    with torch.no_grad():
        assert torch.equal(compressed_bert(*x), static)  # the source model keeps its hooks
