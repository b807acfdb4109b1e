"""One design, one truth: the exported chip, re-costed by ``hwmodels`` alone on the exported
model's own dev workload, gives exactly the trial's recorded cost (issue #15, item 5), and its
DVFS table is the one fitted on that model's own training-row entropies (item 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GLUE = Path(os.environ.get("DSE_GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")

# smoke_training's preparation (its cached model is shared), searching every knob the old export
# dropped: training-time pruning and learned spans, activation bits, a hard span, DVFS.
DEFINITION = {
    "version": 1, "name": "export_truth", "task": "sst2",
    "model": {"name": "all-MiniLM-L6-v2", "max_seq_length": 128},
    "data": {"glue_dir": None, "dev_subset": 200, "seed": 0},
    "finetune": {"train_subset": 1500, "min_words": 6, "epochs": 1, "batch_size": 32, "learning_rate": 1.0e-4,
                 "max_train_seq_length": 64, "offramp_epochs": 10, "seed": 0},
    "objectives": [{"name": "accuracy"}, {"name": "energy_uj"}],
    "hypervolume_reference": {"accuracy": 0, "energy_uj": 1e6},
    "sampler": {"name": "tpe", "seed": 0},
    "sweep": {"enabled": False},
    "n_trials": 3,
    "search_space": {
        "pruning_method": {"type": "categorical", "choices": ["magnitude"]},  # training-time
        "activation_bits": {"type": "int", "low": 6, "high": 8, "step": 2},
        "attention_span": {"type": "categorical", "choices": [40, 512]},  # 512: only the learned span
        "exit_threshold": {"type": "float", "low": 0.1, "high": 0.4, "step": 0.1},
        "voltage_v": {"type": "float", "low": 0.6, "high": 0.8, "step": 0.1},
    },
    "fixed": {"train_pruning": 0.5, "span_init": 64.0, "train_epochs": 0.5,
              "encoder_pruning": 0.2,  # below the trained 0.5: the chip must store the trained sparsity
              "dvfs": True, "latency_target_ms": 2.0},
}
METRICS = ("energy_uj", "latency_ms", "p95_latency_ms", "area_mm2", "target_met_fraction")


@pytest.mark.integration
def test_reexported_chip_costs_what_the_trial_recorded(tmp_path: Path, shared_cache_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import dse

    if not GLUE.is_dir():
        pytest.fail(f"real GLUE data not found at {GLUE} (set DSE_GLUE_DIR)")
    monkeypatch.setenv("DSE_GLUE_DIR", str(GLUE))
    monkeypatch.setenv("DSE_CACHE_DIR", str(shared_cache_dir))
    path = tmp_path / "export_truth.yaml"
    path.write_text(yaml.safe_dump(DEFINITION))
    study = dse.Study.create(path, results_dir=tmp_path / "results")
    study.run()
    front = study.analyse().front
    assert len(front) >= 1
    for number in front["trial"].astype(int):
        _check_recosted(study, number, tmp_path / f"design-{number}")


def _check_recosted(study, number: int, out: Path) -> None:  # noqa: ANN001
    from dse.artifacts.hf_export import exported_dev_rows, load_exported_model
    from dse.config import task_spec
    from dse.evaluation.context import load_dvfs_rows
    from dse.evaluation.exits import exit_predictor
    from dse.modeling.early_exit import entropy
    from dse.modeling.inference import dev_layer_logits
    from hwmodels import ModelShape, design_from_parameter_file, evaluate_hardware

    trial = study.optuna_study().trials[number]
    recorded = trial.user_attrs["metrics"]
    exported = study.export(trial=number, out=out)

    params = json.loads((exported.path / "accelerator.json").read_text())
    hardware, profile, predictor = design_from_parameter_file(params)
    # what the old export dropped reaches the chip: trained sparsity, learned span, activation bits
    assert profile.encoder_density == pytest.approx(0.5)
    assert profile.activation_bits == trial.params["activation_bits"]
    # the learned span (init 64) always reaches the chip; the knob can only shorten it
    assert profile.attention_span is not None and profile.attention_span <= trial.params["attention_span"]
    assert hardware.dvfs and predictor is not None

    # the workload: the exported model on the dev rows its trial used (no study, no Optuna)
    model = load_exported_model(exported.path / "model")
    rows = exported_dev_rows(model)
    # the DVFS table: fitted on the trial's own (trained, compressed) model's entropies on the
    # study's DVFS training rows, not on the prepared model's (item 2)
    train = load_dvfs_rows("sst2", model.tokenizer, glue_dir=GLUE, max_seq_length=128, seed=0)
    own = entropy(dev_layer_logits(model.model, train, pad_id=model.tokenizer.pad_token_id or 0)).T.numpy()
    fitted = exit_predictor(own, trial.params["exit_threshold"])
    np.testing.assert_array_equal(predictor.exit_layer_per_bin, fitted.exit_layer_per_bin)
    np.testing.assert_allclose(predictor.inner_edges, fitted.inner_edges, rtol=1e-12)
    logits = model.layer_logits(rows)
    exits = model.score(rows).exit_layers
    shape = ModelShape.from_hf_config(model.model.config, num_labels=task_spec("sst2").num_labels)
    hw = evaluate_hardware(shape, tokens=np.asarray(rows.lengths), exit_layers=exits, compression=profile,
                           hardware=hardware, predicted_exit_layers=predictor.predict(entropy(logits[0]).numpy()))
    recosted = {"energy_uj": float(hw.mean_energy_uj), "latency_ms": float(hw.mean_latency_ms),
                "p95_latency_ms": float(hw.p95_latency_ms), "area_mm2": float(hw.area_mm2),
                "target_met_fraction": float(hw.fraction_target_met)}
    for name in METRICS:
        assert recosted[name] == pytest.approx(recorded[name], rel=1e-9, abs=0), name
