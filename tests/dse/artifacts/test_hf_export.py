"""The compressed model as a Hugging Face folder: save, load back, identical behaviour."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel, BertTokenizerFast

import dse
from dse.artifacts.hf_export import (
    CONFIG_KEY,
    OFF_RAMPS_FILE,
    DevRows,
    load_exported_model,
    save_exported_model,
)
from dse.compression.adaptivfloat import AdaptivFloatFormat, quantize
from dse.compression.apply import compress, embedding_tables, encoder_linears
from dse.compression.spec import CompressionSpec
from dse.errors import DSEError
from dse.evaluation import early_exit_points
from dse.modeling.batching import EncodedSet
from dse.modeling.early_exit import EarlyExitModel, entropy, simulate_early_exit
from dse.modeling.inference import dev_layer_logits, predictions

WORDS = ["".join(p) for p in itertools.product("abcdefghij", repeat=2)][:95]
# fp32 activations (not a study setting): the deploy tests compare the fp32 artifact with it exactly
SPEC = CompressionSpec(encoder_pruning=0.5, embedding_pruning=0.25, weight_bits=6, weight_exp_bits=3,
                       attention_span=4, activation_bits=0)


def tiny_tokenizer() -> BertTokenizerFast:
    """A WordPiece tokenizer over the tiny models' 100-token vocabulary."""
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    return BertTokenizerFast(vocab=vocab)


def texts(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 20)))) for _ in range(n)]


def encoded(tokenizer: BertTokenizerFast, rows: list[str]) -> EncodedSet:
    enc = tokenizer(rows, truncation=True, max_length=32)
    labels = np.random.default_rng(4).integers(0, 2, len(rows))
    return EncodedSet(enc["input_ids"], enc["token_type_ids"], labels)


def export(model, folder: Path, threshold: float) -> Path:  # noqa: ANN001
    return save_exported_model(
        model, tiny_tokenizer(), folder, task="sst2", max_seq_length=32, exit_threshold=threshold,
        dev_rows=DevRows(dev_subset=10, seed=1), compression=SPEC.as_dict(),
        design={"study": "tiny", "trial": 3},
    )


@pytest.fixture
def compressed(tiny_model):  # noqa: ANN001, ANN201
    out, _ = compress(tiny_model, SPEC)
    return out


def mid_threshold(model, rows: EncodedSet) -> float:  # noqa: ANN001
    """An entropy threshold that makes about half the rows exit after layer 1, the rest later."""
    return float(entropy(dev_layer_logits(model, rows, pad_id=0)[0]).median())


def test_round_trip_gives_identical_logits_predictions_and_exits(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    rows = encoded(tiny_tokenizer(), texts(40))
    threshold = mid_threshold(compressed, rows)
    loaded = load_exported_model(export(compressed, tmp_path / "model", threshold))

    expected = dev_layer_logits(compressed, rows, pad_id=0)
    got = loaded.layer_logits(rows)
    assert torch.equal(got, expected)
    score = loaded.score(rows)
    points, exits = early_exit_points("sst2", expected, rows.labels, threshold)
    assert score.accuracy == points
    assert np.array_equal(score.exit_layers, exits.numpy())
    assert len(set(score.exit_layers.tolist())) > 1  # the exit rule is really exercised
    assert np.array_equal(score.predictions, predictions(simulate_early_exit(expected, threshold)[0]))

    # real early exit on raw text: the saved tokenizer and spans give the same result
    sentences = texts(8, seed=5)
    enc = tiny_tokenizer()(sentences, padding=True, return_tensors="pt")
    want_logits, want_exits = compressed.early_exit_forward(
        enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], threshold=threshold)
    pred, pred_exits = loaded.predict(sentences)
    assert np.array_equal(pred, predictions(want_logits)) and np.array_equal(pred_exits, want_exits.numpy())


def test_round_trip_keeps_masks_rounding_spans_and_settings(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    loaded = load_exported_model(export(compressed, tmp_path / "model", 0.3))
    saved = compressed.state_dict()
    for name, value in loaded.model.state_dict().items():
        if compressed.config.model_type == "mobilebert" and name.startswith("backbone.pooler.dense."):
            # the export gives MobileBERT's HF head the pooler Linear it lacks without
            # classifier_activation: the final off-ramp's pooler, which the early-exit model never reads
            assert name not in saved and loaded.model.config.classifier_activation
            continue
        assert torch.equal(value, saved[name]), name
    assert set(saved) <= set(loaded.model.state_dict())
    assert torch.equal(loaded.model.spans, compressed.spans) and (loaded.model.spans == 4).all()
    fmt = AdaptivFloatFormat(SPEC.weight_bits, SPEC.weight_exp_bits)
    weights = [m.weight for m in encoder_linears(loaded.model).values()]
    weights += [m.weight for m in embedding_tables(loaded.model).values()]
    weights += [ramp.classifier.weight for ramp in loaded.model.off_ramps]
    for w in weights:
        assert torch.equal(quantize(w, fmt), w)  # already on the AdaptivFloat grid
        assert w.abs().unique().numel() <= 2 ** (SPEC.weight_bits - 1)
    originals = {n: m.weight for n, m in encoder_linears(compressed).items()}
    for name, lin in encoder_linears(loaded.model).items():
        w = lin.weight
        assert (w == 0).float().mean() == (originals[name] == 0).float().mean() >= 0.5
        assert torch.equal(w.unique(), originals[name].unique())
    s = loaded.settings
    assert (s.task, s.num_labels, s.label_names, s.max_seq_length) == ("sst2", 2, ["negative", "positive"], 32)
    assert s.entropy_thresholds_nats == [0.3] * compressed.num_layers
    assert s.dev_rows == DevRows(dev_subset=10, seed=1) and s.design["trial"] == 3
    assert torch.equal(loaded.thresholds, torch.full((compressed.num_layers,), 0.3))


def test_backbone_loads_with_plain_transformers(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    folder = export(compressed, tmp_path / "model", 0.3)
    backbone = AutoModel.from_pretrained(folder)
    for name, value in backbone.state_dict().items():
        if not name.startswith("pooler."):  # the saved pooler is the final off-ramp's (HF-native head)
            assert torch.equal(value, compressed.backbone.state_dict()[name]), name
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["finetuning_task"] == "sst2"


def test_public_loader_is_reexported() -> None:
    assert dse.load_exported_model is load_exported_model
    assert "load_exported_model" in dse.__all__


def test_export_replaces_an_old_model_folder(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "stale.bin").write_text("old")
    export(compressed, folder, 0.3)
    assert not (folder / "stale.bin").exists() and (folder / OFF_RAMPS_FILE).is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folders left


def _edit_section(folder: Path, change) -> None:  # noqa: ANN001
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def _bert() -> BertModel:
    return BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64))


BAD_FOLDERS = [
    ("missing", "no such exported model folder"),
    ("no-config", "not an exported model folder (no config.json)"),
    ("not-json", "config.json is damaged or not a readable JSON model config (JSONDecodeError"),
    ("plain-hf", "not an edgebert-dse.model export"),
    ("version", "exported model version 99 is not supported"),
    ("unknown-key", "invalid 'edgebert' section: colour"),
    ("no-off-ramps", "exported model has no off_ramps.safetensors"),
    ("spans", "spans or thresholds do not match"),
]


@pytest.mark.parametrize(("case", "message"), BAD_FOLDERS, ids=[c for c, _ in BAD_FOLDERS])
def test_bad_export_folders_are_one_line_errors(case: str, message: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    if case != "missing":
        model, _ = compress(EarlyExitModel(_bert(), 2), SPEC)
        export(model, folder, 0.3)
    if case == "no-config":
        (folder / "config.json").unlink()
    elif case == "not-json":
        (folder / "config.json").write_text("{")
    elif case == "plain-hf":
        shutil.rmtree(folder)
        _bert().save_pretrained(folder)
    elif case == "version":
        _edit_section(folder, lambda c: c["edgebert"].update(_version=99))
    elif case == "unknown-key":
        _edit_section(folder, lambda c: c["edgebert"].update(colour="red"))
    elif case == "no-off-ramps":
        (folder / OFF_RAMPS_FILE).unlink()
    elif case == "spans":
        _edit_section(folder, lambda c: c["edgebert"].update(attention_spans_tokens=[[None]]))
    with pytest.raises(DSEError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_exported_model(folder)
    assert "\n" not in str(err.value)


def test_save_refuses_unbaked_adaptive_spans(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    compressed.attach_adaptive_spans(max_span_tokens=16, ramp_tokens=4, init_tokens=8.0)
    with pytest.raises(ValueError, match="bake the adaptive spans"):
        export(compressed, tmp_path / "m", 0.3)
    compressed.bake_adaptive_spans()
    loaded = load_exported_model(export(compressed, tmp_path / "m", 0.3))
    assert torch.equal(loaded.model.spans, compressed.spans) and (loaded.model.spans <= 4).all()


def test_save_refuses_a_model_of_another_task(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="task mnli has 3"):
        save_exported_model(compressed, tiny_tokenizer(), tmp_path / "m", task="mnli", max_seq_length=32,
                            exit_threshold=0.3, dev_rows=DevRows(), compression={})


def test_round_trip_reattaches_activation_quantization(tiny_model, tmp_path: Path) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.3, weight_bits=8, weight_exp_bits=3, activation_bits=6)
    out, report = compress(tiny_model, spec)
    assert report["activation_quantizers"] > 0
    rows = encoded(tiny_tokenizer(), texts(20))
    folder = save_exported_model(out, tiny_tokenizer(), tmp_path / "m", task="sst2", max_seq_length=32,
                                 exit_threshold=0.3, dev_rows=DevRows(dev_subset=10, seed=1),
                                 compression=spec.as_dict(), design={"study": "tiny", "trial": 1})
    loaded = load_exported_model(folder)
    expected = dev_layer_logits(out, rows, pad_id=0)
    assert torch.equal(loaded.layer_logits(rows), expected)
    plain, _ = compress(tiny_model, CompressionSpec(encoder_pruning=0.3, weight_bits=8, weight_exp_bits=3))
    assert not torch.equal(dev_layer_logits(plain, rows, pad_id=0), expected)  # the hooks really act


def test_round_trip_keeps_static_activation_biases(tiny_model, tmp_path: Path) -> None:  # noqa: ANN001
    spec = CompressionSpec(encoder_pruning=0.3, weight_bits=8, weight_exp_bits=3, activation_bits=6)
    out, report = compress(tiny_model, spec, calibration=encoded(tiny_tokenizer(), texts(16, seed=9)), pad_id=0)
    assert report["static_activation_biases"] == report["activation_quantizers"] > 0
    rows = encoded(tiny_tokenizer(), texts(20))
    folder = save_exported_model(out, tiny_tokenizer(), tmp_path / "m", task="sst2", max_seq_length=32,
                                 exit_threshold=0.3, dev_rows=DevRows(dev_subset=10, seed=1),
                                 compression=spec.as_dict(), design={"study": "tiny", "trial": 1})
    loaded = load_exported_model(folder)
    assert loaded.settings.activation_biases == out.activation_biases
    assert torch.equal(loaded.layer_logits(rows), dev_layer_logits(out, rows, pad_id=0))
    config = json.loads((folder / "config.json").read_text())  # a tampered list: one line, not a traceback
    config[CONFIG_KEY]["activation_biases"] = config[CONFIG_KEY]["activation_biases"][:-1]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DSEError, match="activation biases for"):
        load_exported_model(folder)


def test_hf_native_sequence_classifier_and_pipeline_run_the_full_depth_model(tiny_model, tmp_path: Path) -> None:  # noqa: ANN001
    """BERT, ALBERT and MobileBERT: the final off-ramp is HF's pooler + classifier; no spans and fp32
    activations (HF runs neither), so exact."""
    from transformers import AutoModelForSequenceClassification, pipeline

    spec = CompressionSpec(encoder_pruning=0.5, embedding_pruning=0.25, weight_bits=6, weight_exp_bits=3,
                           activation_bits=0)
    model, _ = compress(tiny_model, spec)
    gen = torch.Generator().manual_seed(3)  # a standardised final off-ramp, as stage 2 leaves it: folded into HF's pooler
    model.off_ramps[-1].input_shift.copy_(torch.randn(model.config.hidden_size, generator=gen))
    model.off_ramps[-1].input_scale.copy_(torch.rand(model.config.hidden_size, generator=gen) + 0.5)
    rows = encoded(tiny_tokenizer(), texts(8))
    folder = export(model.eval(), tmp_path / "model", 0.3)
    hf = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert hf.config.id2label == {0: "negative", 1: "positive"}
    for ids in rows.input_ids:
        x = torch.tensor([ids])
        with torch.no_grad():
            want = model(x, torch.ones_like(x), torch.zeros_like(x))[-1]
            got = hf(input_ids=x, attention_mask=torch.ones_like(x)).logits
        assert torch.allclose(got, want, atol=1e-5)
    clf = pipeline("text-classification", model=str(folder))
    out = clf(texts(3))
    assert [o["label"] for o in out] and {o["label"] for o in out} <= {"negative", "positive"}
    card = (folder / "README.md").read_text()
    assert "pipeline(\"text-classification\"" in card and "sst2" in card and "encoder_pruning | 0.5" in card
    assert "| trial | " not in card and "study `tiny`, trial 3" in card


def test_a_non_standard_final_off_ramp_falls_back_to_the_bare_backbone(compressed, tmp_path: Path) -> None:  # noqa: ANN001
    compressed.off_ramps[-1].forward = lambda cls: compressed.off_ramps[-1].classifier(cls)  # no pooler
    folder = export(compressed, tmp_path / "model", 0.3)
    config = json.loads((folder / "config.json").read_text())
    assert not any(a.endswith("ForSequenceClassification") for a in config["architectures"])
    assert "bare backbone" in (folder / "README.md").read_text()
    assert load_exported_model(folder).model.num_layers == compressed.num_layers
