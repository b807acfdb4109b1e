"""LiteRT (TensorFlow Lite FlatBuffer) deployables: one file of per-layer signatures, its int8
quantization by the LiteRT quantizer and the host exit loop. They need the ``litert`` extra; every
test but the missing-extra one is skipped only when it is not installed."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dse.artifacts.deploy import DEPLOY_DIR, DEPLOY_FILE, LITERT_FP32_DIR, LITERT_INT8_DIR, deploy_export
from dse.artifacts.export import MODEL_DIR
from dse.artifacts.onnx_export import RUNNER_FILE
from dse.cli import main
from dse.errors import DSEError
from dse.compression.apply import compress
from dse.modeling.early_exit import EarlyExitModel
from tests.conftest import tiny_backbone
from tests.dse.artifacts.test_deploy import _glue, assert_measured_like_the_trial
from tests.dse.artifacts.test_hf_export import SPEC, encoded, export, mid_threshold, texts, tiny_tokenizer
from tests.dse.artifacts.test_onnx_export import (_between_rows, _x, assert_int8_stays_close,
                                                  assert_runner_computes_the_model, assert_runner_exits_as_simulated)

SEQ = 32  # the tiny tokenizer's max_length in encoded()
HAS_LITERT = importlib.util.find_spec("litert_torch") is not None


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A compressed tiny BERT with mean-pooled off-ramps and the static 8-bit AdaptivFloat
    activations a trial simulates, converted once to fp32 and int8 LiteRT folders."""
    pytest.importorskip("litert_torch")
    from dse.artifacts.litert_export import export_litert, quantize_litert

    model, report = compress(EarlyExitModel(tiny_backbone("bert"), num_labels=2, pooling="mean").eval(),
                             dataclasses.replace(SPEC, activation_bits=8),
                             calibration=encoded(tiny_tokenizer(), texts(40, seed=9)), pad_id=0)
    assert report["static_activation_biases"] == 18
    model.eval()
    rows = encoded(tiny_tokenizer(), texts(30))
    thresholds = _between_rows(model, rows)
    out = tmp_path_factory.mktemp("litert")
    export_litert(model, thresholds, out / "fp32", seq_lens=[16, SEQ], label_names=["negative", "positive"])
    quantize_litert(out / "fp32", out / "int8")
    return model, rows, thresholds, out


def _runner(folder: Path):  # noqa: ANN202
    from dse.artifacts.onnx_runner import LiteRTEarlyExitRunner

    return LiteRTEarlyExitRunner(folder, threads=1)


def test_fp32_file_computes_what_the_model_computes(converted) -> None:  # noqa: ANN001
    model, rows, _, out = converted
    runner = _runner(out / "fp32")
    assert_runner_computes_the_model(runner, model, rows)  # each row at the shorter of 16 and 32 tokens that holds it
    lengths = set()
    for ids in rows.input_ids:
        hidden = [h for h, _ in runner.layer_outputs(*_x(ids))]
        assert all(h.shape == (1, len(ids), model.config.hidden_size) for h in hidden)  # padding not returned
        assert runner._length == (16 if len(ids) <= 16 else 32)
        lengths.add(runner._length)
    assert lengths == {16, 32}
    # columns that are padding in every row are dropped: a short row in a wide batch runs at 16
    row = min(rows.input_ids, key=len)
    ids = np.asarray([row + [0] * 20])
    mask = (np.arange(ids.shape[1]) < len(row))[None].astype(np.int64)
    np.testing.assert_allclose(runner.layer_logits(ids, mask), runner.layer_logits(*_x(row)[:2]), atol=1e-6)
    assert runner._length == 16


def test_length_buckets() -> None:
    from dse.artifacts.litert_export import length_buckets

    assert length_buckets(128) == [32, 128] and length_buckets(100) == [32, 100]
    assert length_buckets(32) == [32] and length_buckets(8) == [8]


def test_albert_fp32_file_computes_what_the_model_computes(tmp_path: Path) -> None:
    """ALBERT: one shared layer run per position, the E -> H projection in the embedding step."""
    pytest.importorskip("litert_torch")
    from dse.artifacts.litert_export import export_litert

    model, _ = compress(EarlyExitModel(tiny_backbone("albert"), num_labels=2).eval(), SPEC)
    model.eval()
    export_litert(model, torch.full((model.num_layers,), 0.5), tmp_path, seq_lens=[SEQ])
    assert_runner_computes_the_model(_runner(tmp_path), model, encoded(tiny_tokenizer(), texts(10)))


def test_host_exit_loop_matches_the_simulated_exit_layers(converted) -> None:  # noqa: ANN001
    model, rows, thresholds, out = converted
    assert_runner_exits_as_simulated(_runner(out / "fp32"), model, rows, thresholds)  # run a row at a time


@pytest.mark.parametrize(("threshold", "layer"), [(0.0, 3), (1e9, 1)])
def test_thresholds_decide_the_exit_layer(converted, threshold: float, layer: int) -> None:  # noqa: ANN001
    _, rows, _, out = converted
    for name in ("fp32", "int8"):
        runner = _runner(out / name)
        runner.thresholds = np.full(3, threshold)  # 0: no entropy is below it; huge: every one is
        for ids in rows.input_ids[:5]:
            assert int(runner(*_x(ids))[1][0]) == layer


def test_int8_quantizes_every_fully_connected_and_table_and_stays_close(converted) -> None:  # noqa: ANN001
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    from dse.artifacts.litert_export import MODEL_FILE, litert_size_mb

    model, rows, _, out = converted
    int8_types = {}
    for name in ("fp32", "int8"):
        flat = tfl.read_model(str(out / name / MODEL_FILE))
        weights = {}  # (op, signature) -> the weight operand's types (TensorType: 0 float32, 9 int8)
        for graph in flat.subgraphs:
            for op in graph.operators:
                code = flat.operatorCodes[op.opcodeIndex].builtinCode
                if code in (7, 9):  # EMBEDDING_LOOKUP (table: input 1), FULLY_CONNECTED (weight: input 1)
                    weights.setdefault((code, graph.name), []).append(graph.tensors[op.inputs[1]].type)
        assert {k[0] for k in weights} == {7, 9}
        # at each of the two lengths: the word and token-type tables; q, k, v, out, ff1, ff2, pooler, classifier
        assert sum(len(v) for k, v in weights.items() if k[0] == 7) == 2 * 2
        assert sum(len(v) for k, v in weights.items() if k[0] == 9) == 2 * 3 * 8
        int8_types[name] = {t for v in weights.values() for t in v}
    assert int8_types == {"fp32": {0}, "int8": {9}}
    # tiny: the float constants of each length (position rows, masks) weigh as much as the weights
    assert litert_size_mb(out / "int8") < 0.9 * litert_size_mb(out / "fp32")
    assert_int8_stays_close(_runner(out / "fp32"), _runner(out / "int8"), rows)


def test_the_folder_runs_with_numpy_and_ai_edge_litert_alone(converted, tmp_path: Path) -> None:  # noqa: ANN001
    _, _, _, out = converted
    script = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(out / 'int8')!r})\n"
        "from early_exit_runner import LiteRTEarlyExitRunner\n"
        f"r = LiteRTEarlyExitRunner({str(out / 'int8')!r}, threads=2)\n"
        "ids = np.array([[2, 10, 11, 12, 3]])\n"
        "logits, layer = r(ids, np.ones_like(ids))\n"
        "print(logits.shape, int(layer[0]), r.label_names)\n"
        "assert not [k for k in sys.modules if k in ('torch', 'dse', 'transformers', 'onnxruntime', 'litert_torch')"
        " or k.startswith('dse.')]\n"
        "try:\n"
        "    r(np.ones((1, 33), dtype=np.int64), np.ones((1, 33), dtype=np.int64))\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "(1, 2)" in run.stdout and "['negative', 'positive']" in run.stdout
    assert "33 tokens: this LiteRT model takes at most 32" in run.stdout
    assert (out / "int8" / RUNNER_FILE).read_text() == (out / "fp32" / RUNNER_FILE).read_text()


def test_int8_off_ramps_are_calibrated_on_the_int8_file(tmp_path: Path) -> None:
    """As for the ONNX int8 graphs: standardised earlier off-ramps re-centred on the int8 file's
    own features; the encoder and the final off-ramp are the plain int8 file's."""
    pytest.importorskip("litert_torch")
    from dse.artifacts.litert_export import export_litert, quantize_litert, quantize_litert_calibrated
    from tests.dse.compression.test_offramp_calibration import rows as calibration_rows
    from tests.dse.compression.test_offramp_calibration import standardised

    calibration = calibration_rows()
    model, _ = compress(standardised(EarlyExitModel(tiny_backbone("bert"), num_labels=2).eval()),
                        dataclasses.replace(SPEC, activation_bits=8), calibration=calibration, pad_id=0)
    thresholds = torch.full((model.num_layers,), 0.3)
    seq = max(len(r) for r in calibration.input_ids)
    export_litert(model, thresholds, tmp_path / "fp32", seq_lens=[seq])
    quantize_litert(tmp_path / "fp32", tmp_path / "plain")
    done = quantize_litert_calibrated(model, thresholds, tmp_path / "fp32", tmp_path / "int8", calibration,
                                      pad_id=0)
    assert done["recentred_off_ramps"] == model.num_layers - 1
    plain, calibrated = _runner(tmp_path / "plain"), _runner(tmp_path / "int8")
    for ids in calibration.input_ids[:10]:
        x = _x(ids)
        for (h, _), (h_cal, _) in zip(plain.layer_outputs(*x), calibrated.layer_outputs(*x)):
            np.testing.assert_array_equal(h_cal, h)  # the same int8 encoder
        got, want = calibrated.layer_logits(*x), plain.layer_logits(*x)
        np.testing.assert_array_equal(got[-1], want[-1])  # the final off-ramp is left alone
        assert not np.allclose(got[:-1], want[:-1])


def test_deploy_litert_or_a_one_line_error_without_the_extra(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without the extra: ``dse deploy --format litert`` is one line naming the install command and
    a non-zero exit. With it: the fp32 and int8 folders, measured like the ONNX ones."""
    model, _ = compress(EarlyExitModel(tiny_backbone("bert"), num_labels=2).eval(), SPEC)
    model.eval()
    rows = encoded(tiny_tokenizer(), texts(30))
    export(model, tmp_path / "knee" / MODEL_DIR, mid_threshold(model, rows))
    if not HAS_LITERT:
        assert main(["deploy", str(tmp_path / "knee"), "--format", "litert"]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install 'edgebert-dse[litert]'" in err, err
        assert not (tmp_path / "knee" / DEPLOY_DIR).exists()
        return
    glue = _glue(tmp_path)
    report = deploy_export(tmp_path / "knee", glue_dir=glue, max_rows=6, format="litert")
    out = tmp_path / "knee" / DEPLOY_DIR
    assert_measured_like_the_trial(report, "litert")
    for name in (LITERT_FP32_DIR, LITERT_INT8_DIR):
        assert {p.name for p in (out / name).iterdir()} == {"model.tflite", "runner.json", RUNNER_FILE}
    meta = json.loads((out / DEPLOY_FILE).read_text())["_data"]
    assert meta["files"]["int8"] == f"{LITERT_INT8_DIR}/" and "ai-edge-litert" in meta["measured"]["machine"]
    assert json.loads((out / LITERT_INT8_DIR / "runner.json").read_text())["seq_lens"] == [32]  # the default
    with pytest.raises(DSEError, match=r"--lengths 8,999: each must be in 2\.\.32"):
        deploy_export(tmp_path / "knee", glue_dir=glue, max_rows=6, format="litert", lengths=[999, 8])
