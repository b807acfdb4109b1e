"""Off-ramp design settings (pooling, head, training, distillation) and stage 2 on tiny models and
synthetic features: shapes, cache keys, round trips, and that stage 2 reaches a linear probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dse.config import FinetuneConfig, config_hash, parse_study_config
from dse.errors import ConfigError
from dse.modeling.early_exit import EarlyExitModel, OffRamp, load_off_ramps, simulate_early_exit
from dse.training.prepare import (
    _stage1,
    joint_loss_weights,
    load_checkpoint,
    preparation_key,
    save_checkpoint,
    standardize_off_ramps,
    train_offramps,
)
from dse.training.probe import fit_linear_probe
from tests.conftest import tiny_backbone

SETTINGS = [("cls", "pooler"), ("cls", "linear"), ("mean", "pooler"), ("mean", "linear")]


@pytest.fixture(autouse=True)
def one_thread():  # noqa: ANN201
    """Tiny tensors: a thread pool only adds waiting (15 ms per op on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_of(kind: str, pooling: str, head: str) -> EarlyExitModel:
    return EarlyExitModel(tiny_backbone(kind), num_labels=2, pooling=pooling, head=head).eval()


# ----- modeling -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "albert", "mobilebert"])
@pytest.mark.parametrize(("pooling", "head"), SETTINGS)
def test_settings_shapes_padding_and_real_early_exit(kind: str, pooling: str, head: str, tiny_batch) -> None:  # noqa: ANN001
    model = model_of(kind, pooling, head)
    for ramp in model.off_ramps:
        ramp.classifier.weight.data.mul_(20)  # confident at different layers: exits spread out
    with torch.no_grad():
        logits = model(**tiny_batch)
    assert logits.shape == (model.num_layers, 5, 2)
    assert torch.allclose(logits[-1], model.final_logits(**tiny_batch), atol=1e-6)
    assert (model.off_ramps[0].pooler is None) == (head == "linear")
    n = int(tiny_batch["attention_mask"][1].sum())  # padding changes nothing, for mean pooling too
    alone = model(**{k: v[1:2, :n] for k, v in tiny_batch.items()})
    assert torch.allclose(logits[:, 1], alone[:, 0], atol=1e-5)
    threshold = float(torch.distributions.Categorical(logits=logits[0]).entropy().median())
    sim_logits, sim_layers = simulate_early_exit(logits, threshold)
    real_logits, real_layers = model.early_exit_forward(**tiny_batch, threshold=threshold)
    assert torch.equal(real_layers, sim_layers)
    assert torch.allclose(real_logits, sim_logits, atol=1e-5)


def test_mean_pooling_averages_the_real_tokens(tiny_batch) -> None:  # noqa: ANN001
    model = model_of("bert", "mean", "linear")
    feats = model.pooled_features(**tiny_batch)
    hidden = list(model.hidden_states(**tiny_batch))
    n = int(tiny_batch["attention_mask"][3].sum())
    for layer, h in enumerate(hidden):
        assert torch.allclose(feats[layer, 3], h[3, :n].mean(0), atol=1e-6)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="pooling"):
        EarlyExitModel(tiny_backbone("bert"), 2, pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="head"):
        OffRamp(8, 2, 0.1, head="mlp")  # type: ignore[arg-type]


def test_old_off_ramp_files_load_with_identity_standardisation() -> None:
    model = model_of("bert", "cls", "pooler")
    old = {k: v for k, v in model.off_ramps.state_dict().items() if "input_" not in k}
    fresh = model_of("bert", "cls", "pooler")
    fresh.off_ramps[0].input_scale.fill_(3.0)
    load_off_ramps(fresh.off_ramps, old)
    assert torch.equal(fresh.off_ramps[0].input_scale, torch.ones(32))
    assert torch.equal(fresh.off_ramps[0].input_shift, torch.zeros(32))


@pytest.mark.parametrize("head", ["pooler", "linear"])
def test_restandardising_a_trained_off_ramp_keeps_its_function(head: str) -> None:
    torch.manual_seed(0)
    ramps = torch.nn.ModuleList([OffRamp(16, 3, 0.1, head=head)]).eval()
    ramps[0].input_shift.normal_()
    ramps[0].input_scale.uniform_(0.5, 2.0)
    x = 5.0 + 0.01 * torch.randn(1, 50, 16)
    before = ramps[0](x[0])
    standardize_off_ramps(ramps, x, keep_function=True)
    assert torch.allclose(ramps[0](x[0]), before, atol=1e-4)
    z = (x[0] - ramps[0].input_shift) * ramps[0].input_scale
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(16), atol=1e-3)  # its input is now standardised


# ----- settings, keys, checkpoints -------------------------------------------------------------
def test_every_setting_is_part_of_the_preparation_key() -> None:
    base = FinetuneConfig()
    changes = {"offramp_pooling": "mean", "offramp_head": "linear", "offramp_training": "joint",
               "offramp_distillation": 0.5}

    def key(f: FinetuneConfig) -> str:
        return preparation_key(model_source="m", task="sst2", max_seq_length=64, finetune=f,
                               train_fingerprint="a", dev_fingerprint="b")

    keys = {key(base)} | {key(base.model_copy(update={k: v})) for k, v in changes.items()}
    assert len(keys) == len(changes) + 1


def test_settings_are_validated_and_defaults_keep_study_hashes() -> None:
    study = {"name": "s", "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.5}}}
    plain = parse_study_config(study, source="t")
    explicit = parse_study_config({**study, "finetune": {k: FinetuneConfig.model_fields[k].default for k in (
        "offramp_pooling", "offramp_head", "offramp_training", "offramp_distillation")}}, source="t")
    assert config_hash(plain) == config_hash(explicit)
    other = parse_study_config({**study, "finetune": {"offramp_head": "linear"}}, source="t")
    assert config_hash(other) != config_hash(plain)
    for bad in ({"offramp_pooling": "max"}, {"offramp_head": "mlp"}, {"offramp_training": "alternating"},
                {"offramp_distillation": 1.5}, {"offramp_distillation": -0.1}):
        with pytest.raises(ConfigError, match="finetune.offramp_"):
            parse_study_config({**study, "finetune": bad}, source="t")


@pytest.mark.parametrize(("pooling", "head"), SETTINGS)
def test_checkpoint_round_trip_keeps_the_settings(pooling: str, head: str, tiny_batch, tmp_path: Path) -> None:  # noqa: ANN001
    model = model_of("bert", pooling, head)
    standardize_off_ramps(model.off_ramps, torch.randn(model.num_layers, 20, 32), keep_function=False)
    save_checkpoint(model, {"num_labels": 2}, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt", 2)
    assert (loaded.pooling, loaded.head) == (pooling, head)
    assert torch.equal(loaded(**tiny_batch), model(**tiny_batch))


# ----- training -------------------------------------------------------------------------------
def test_joint_training_trains_every_off_ramp_and_two_stage_only_the_last() -> None:
    from tests.dse.training.test_trainer import FINETUNE, synthetic_rows

    w = joint_loss_weights(6)
    assert w.sum().item() == pytest.approx(1.0) and torch.all(w[1:] > w[:-1])
    assert w[0].item() == pytest.approx(1 / 21)
    for training in ("two_stage", "joint"):
        model = model_of("bert", "mean", "linear")
        before = [r.classifier.weight.clone() for r in model.off_ramps]
        _stage1(model, synthetic_rows(), FINETUNE.model_copy(update={"offramp_training": training}), pad_id=0)
        moved = [not torch.equal(b, r.classifier.weight) for b, r in zip(before, model.off_ramps)]
        assert moved == ([True] * 3 if training == "joint" else [False, False, True])


def ill_conditioned_features(n: int, *, layers: int = 4, hidden: int = 32, seed: int = 0):  # noqa: ANN201
    """Features like an early layer's [CLS] vector: a large sentence-independent offset (one
    feature ~8) plus a ~1e-3 per-feature variation that carries the (noisy, linear) label."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(hidden, generator=torch.Generator().manual_seed(99))
    offset = torch.randn(hidden, generator=torch.Generator().manual_seed(98)) * 0.3
    offset[0] = 8.0
    signal = torch.randn(n, hidden, generator=gen)
    labels = ((signal @ direction) / direction.norm() + 0.6 * torch.randn(n, generator=gen) > 0).long()
    noise = torch.stack([torch.randn(n, hidden, generator=gen) * (0.2 + 0.4 * i) for i in range(layers)])
    scale = torch.tensor([1e-3, 2e-3, 1e-2, 0.3])[:layers, None, None]
    return offset + scale * (signal + noise), labels


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100 * float((logits.argmax(-1) == labels).double().mean())


@pytest.mark.parametrize(("head", "distillation"), [("pooler", 0.0), ("linear", 0.0), ("linear", 0.5)])
def test_stage2_reaches_a_linear_probe_on_ill_conditioned_features(head: str, distillation: float) -> None:
    """Every off-ramp at least matches a logistic-regression probe fitted to its own features."""
    train_x, train_y = ill_conditioned_features(1500)
    dev_x, dev_y = ill_conditioned_features(3000, seed=1)
    model = EarlyExitModel(tiny_backbone("bert"), 2, head=head)
    model.num_layers = 4  # stage 2 only needs the off-ramps: one per feature set
    model.off_ramps.append(OffRamp(32, 2, 0.1, head=head))
    final = fit_linear_probe(train_x[-1], train_y, 2)  # a good final classifier: the teacher
    last = model.off_ramps[-1]
    last.input_shift.copy_(final.mean.float())
    last.input_scale.copy_(final.scale.float())
    if head == "linear":
        last.classifier.weight.data.copy_(final.weight.float())
        last.classifier.bias.data.copy_(final.bias.float())
    cfg = FinetuneConfig(offramp_epochs=20, offramp_distillation=distillation)
    train_offramps(model, train_x, train_y, cfg)
    with torch.no_grad():
        for i, ramp in enumerate(model.off_ramps[:-1]):
            probe = accuracy(fit_linear_probe(train_x[i], train_y, 2).logits(dev_x[i]), dev_y)
            got = accuracy(ramp(dev_x[i]), dev_y)
            assert probe > 65.0, "the synthetic task must be learnable"
            assert got >= probe - 1.5, f"off-ramp {i + 1}: {got:.1f} % vs probe {probe:.1f} %"


def test_without_standardisation_the_early_off_ramps_fail(monkeypatch) -> None:  # noqa: ANN001
    """The defect stage 2 fixes, reproduced: on raw ill-conditioned features the off-ramp stays near chance."""
    import dse.training.prepare as prepare

    monkeypatch.setattr(prepare, "standardize_off_ramps", lambda *a, **k: None)
    train_x, train_y = ill_conditioned_features(1500)
    dev_x, dev_y = ill_conditioned_features(3000, seed=1)
    model = EarlyExitModel(tiny_backbone("bert"), 2)
    model.num_layers = 4
    model.off_ramps.append(OffRamp(32, 2, 0.1))
    prepare.train_offramps(model, train_x, train_y, FinetuneConfig())
    with torch.no_grad():
        probe = accuracy(fit_linear_probe(train_x[0], train_y, 2).logits(dev_x[0]), dev_y)
        assert accuracy(model.off_ramps[0](dev_x[0]), dev_y) < probe - 10


def test_probe_matches_a_known_solution() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=gen) * torch.tensor([1.0, 10.0, 0.01, 1.0, 1.0]) + 3.0
    y = (x[:, 2] > 3.0).long()  # decided by the tiny-scale feature: standardisation finds it
    probe = fit_linear_probe(x, y, 2)
    assert accuracy(probe.logits(x), y) > 97
    assert int(probe.weight[1].sub(probe.weight[0]).abs().argmax()) == 2
    reg = fit_linear_probe(x, x[:, 0] * 2.0, 1, c=1e6)  # ridge, tiny penalty: exact fit
    assert torch.allclose(reg.logits(x)[:, 0], (x[:, 0] * 2.0).double(), atol=1e-4)
    assert np.isfinite(reg.bias.numpy()).all()


# ----- export and deployment ------------------------------------------------------------------
@pytest.mark.parametrize(("pooling", "head"), [("mean", "linear"), ("cls", "linear"), ("mean", "pooler")])
def test_hf_export_and_torchscript_follow_the_settings(pooling: str, head: str, tmp_path: Path) -> None:
    from dse.compression.apply import compress
    from dse.artifacts.deploy import build_torchscript
    from dse.artifacts.hf_export import load_exported_model
    from dse.modeling.inference import dev_layer_logits
    from tests.dse.artifacts.test_hf_export import SPEC, encoded, export, mid_threshold, texts, tiny_tokenizer

    model = model_of("bert", pooling, head)
    standardize_off_ramps(model.off_ramps, torch.randn(model.num_layers, 20, 32) * 0.1 + 2.0, keep_function=False)
    model, _ = compress(model, SPEC)
    rows = encoded(tiny_tokenizer(), texts(20))
    threshold = mid_threshold(model, rows)
    loaded = load_exported_model(export(model, tmp_path / "model", threshold))
    assert (loaded.settings.offramp_pooling, loaded.settings.offramp_head) == (pooling, head)
    assert (loaded.model.pooling, loaded.model.head) == (pooling, head)
    assert torch.equal(loaded.layer_logits(rows), dev_layer_logits(model, rows, pad_id=0))
    scripted = build_torchscript(model, torch.full((model.num_layers,), threshold), int8=False)
    width = max(len(r) for r in rows.input_ids)  # a padded batch: mean pooling must skip the padding
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows.input_ids])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = model(ids, mask, torch.zeros_like(ids))
        assert torch.allclose(scripted.layer_logits(ids, mask, torch.zeros_like(ids)), expected, atol=1e-5)
        logits, layers = model.early_exit_forward(ids, mask, torch.zeros_like(ids), threshold=threshold)
        got, got_layers = scripted(ids, mask, torch.zeros_like(ids))
    assert torch.equal(got_layers, layers) and torch.allclose(got, logits, atol=1e-5)


def test_exports_written_before_the_settings_still_load(tmp_path: Path) -> None:
    import json

    import safetensors.torch

    from dse.artifacts.hf_export import OFF_RAMPS_FILE, load_exported_model
    from tests.dse.artifacts.test_hf_export import export

    folder = export(model_of("bert", "cls", "pooler"), tmp_path / "model", 0.3)
    config = json.loads((folder / "config.json").read_text())
    for key in ("offramp_pooling", "offramp_head"):
        del config["edgebert"][key]
    (folder / "config.json").write_text(json.dumps(config))
    ramps = safetensors.torch.load_file(str(folder / OFF_RAMPS_FILE))
    safetensors.torch.save_file({k: v for k, v in ramps.items() if "input_" not in k}, str(folder / OFF_RAMPS_FILE))
    loaded = load_exported_model(folder)
    assert (loaded.model.pooling, loaded.model.head) == ("cls", "pooler")
