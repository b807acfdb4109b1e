"""Study definitions: the shipped ones are valid; every malformed one is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dse.config import KNOBS, config_hash, knob_of, knobs_for_task, load_study_config, parse_study_config
from dse.errors import ConfigError

SPACES = Path(__file__).resolve().parents[3] / "search_spaces"
MINIMAL = {"name": "t", "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6}}}


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_definitions_are_valid(path: Path) -> None:
    config = load_study_config(path)
    assert all(knob_of(name).kind for name in config.search_space)  # every key names a knob
    assert len(config_hash(config)) == 64


def test_defaults_and_knob_values() -> None:
    config = load_study_config(_write(MINIMAL))
    assert config.objective_names() == ["accuracy", "energy_uj", "latency_ms"]
    assert config.directions() == ["maximize", "minimize", "minimize"]
    knobs = config.knob_values({"exit_threshold": 0.3})
    assert knobs["exit_threshold"] == 0.3 and knobs["weight_bits"] == 8 and set(knobs) == set(KNOBS)


def _write(data, tmp=Path("/tmp")) -> Path:  # noqa: ANN001
    import tempfile

    fd = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, dir=tmp)
    fd.write(data if isinstance(data, str) else yaml.safe_dump(data))
    fd.close()
    return Path(fd.name)


def _with(**changes):  # noqa: ANN003, ANN202
    data = {**MINIMAL, **changes}
    return {k: v for k, v in data.items() if v is not None}


BAD = [
    ("name: [unclosed", "YAML syntax error at line 1"),
    ("- a\n- b\n", "must be a YAML mapping"),
    (_with(colour="red"), "colour: unknown key"),
    (_with(n_trials="many"), "n_trials: Input should be a valid integer"),
    (_with(n_trials=0), "n_trials: Input should be greater than or equal to 1"),
    (_with(name="bad name!"), "name: String should match pattern"),
    (_with(task="squad"), "unknown GLUE task 'squad'"),
    (_with(version=9), "version 9 is not supported"),
    (_with(search_space={}), "search_space: Dictionary should have at least 1 item"),
    (_with(search_space={"warp_drive": {"type": "float", "low": 0, "high": 1}}), "unknown knob 'warp_drive'"),
    (_with(search_space={"encoder_pruning": {"type": "float", "low": 0.6, "high": 0.1}}),
     "low (0.6) is greater than high (0.1)"),
    (_with(search_space={"encoder_pruning": {"type": "float", "low": 0.0, "high": 1.5}}),
     "outside the legal range"),
    (_with(search_space={"envm_cell": {"type": "categorical", "choices": ["dram_cell"]}}),
     "'dram_cell' is not one of"),
    (_with(search_space={"weight_bits": {"type": "float", "low": 4, "high": 8}}), "takes integers"),
    (_with(search_space={"weight_bits": {"type": "int", "low": 3, "high": 4}}), "outside the legal range"),
    (_with(search_space={"weight_bits": {"type": "int", "low": 4, "high": 8},
                         "weight_exp_bits": {"type": "int", "low": 2, "high": 4}}), "exp bits < total bits"),
    (_with(search_space={"voltage_v": {"type": "foo", "low": 0.5, "high": 0.8}}), "search_space.voltage_v"),
    (_with(objectives=[{"name": "happiness"}]), "unknown objective 'happiness'"),
    (_with(objectives=[{"name": "accuracy"}, {"name": "accuracy"}]), "listed twice"),
    (_with(objectives=[{"name": "accuracy", "direction": "up"}]), "objectives.0.direction"),
    (_with(constraints={"latency_target_ms": -1}), "latency_target_ms: Input should be greater than 0"),
    (_with(fixed={"voltage_v": 0.3}), "outside the legal range"),
    (_with(fixed={"exit_threshold": 0.1}), "both searched and fixed"),
    (_with(sampler={"name": "annealing"}), "sampler.name"),
    (_with(finetune={"epochs": -1}), "finetune.epochs"),
    (_with(hypervolume_reference={"accuracy": 70, "energy_uj": 900}), "missing latency_ms"),
    (_with(hypervolume_reference={"accuracy": 70, "energy_uj": 900, "latency_ms": 3, "area_mm2": 2}),
     "not objectives: area_mm2"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}], task="mrpc"), "give either task (one task) or tasks"),
    (_with(tasks=[{"name": "sst2"}]), "tasks: Tuple should have at least 2 items"),
    (_with(tasks=[{"name": "sst2"}, {"name": "SST-2"}]), "tasks: sst2 listed twice"),
    (_with(tasks=[{"name": "sst2"}, {"name": "squad"}]), "unknown GLUE task 'squad'"),
    (_with(tasks=[{"name": "sst2", "mix": 0}, {"name": "rte"}]), "tasks.0.mix: Input should be greater than 0"),
    (_with(tasks=[{"name": "sst2"}, {"name": "qnli", "train_from_dev": 1.0}]), "tasks.1.train_from_dev"),
    (_with(search_space={"sst2.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6}}),
     "only a multi-task study (tasks:) scopes knobs to a task"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}],
           search_space={"mrpc.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6}}),
     "'mrpc' is not a task of this study (sst2, rte)"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}],
           search_space={"rte.voltage_v": {"type": "float", "low": 0.5, "high": 0.8}}),
     "'voltage_v' cannot differ between tasks"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}], fixed={"sst2.embedding_pruning": 0.2}),
     "'embedding_pruning' cannot differ between tasks"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}],
           search_space={"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6},
                         "rte.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6}}),
     "'exit_threshold' is set for every task and also as 'rte.exit_threshold'"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}], fixed={"rte.exit_threshold": 9.0}), "outside the legal range"),
    (_with(objectives=[{"name": "sst2.accuracy"}]), "per-task objectives need a multi-task study"),
    (_with(tasks=[{"name": "sst2"}, {"name": "rte"}], objectives=[{"name": "rte.area_mm2"}]),
     "unknown objective 'rte.area_mm2'"),
    (_with(hypervolume_reference={"accuracy": 70, "energy_uj": "high", "latency_ms": 3}),
     "hypervolume_reference.energy_uj: Input should be a valid number"),
    (_with(hypervolume_reference={"accuracy": 70, "energy_uj": float("nan"), "latency_ms": 3}),
     "energy_uj must be a finite number"),
    # issue #15: knobs that would run but mean nothing, or fail at run time
    (_with(executor={"kind": "ray", "gpus_per_trial": 1.5}), "above 1 it must be a whole number"),
    (_with(device="gpu"), "device: String should match pattern"),
    (_with(task="stsb"), "exit_threshold: stsb is a regression task"),
    (_with(task="stsb", search_space={"voltage_v": {"type": "float", "low": 0.5, "high": 0.8}},
           fixed={"exit_threshold": 0.2}), "any threshold > 0 exits every sentence at layer 1"),
    (_with(tasks=[{"name": "sst2"}, {"name": "stsb"}],
           search_space={"sst2.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6},
                         "stsb.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6}}),
     "stsb.exit_threshold: stsb is a regression task"),
    (_with(fixed={"train_embedding_pruning": 0.3}), "train_embedding_pruning > 0 with train_epochs <= 1"),
    (_with(fixed={"train_embedding_pruning": 0.3},
           search_space={"train_epochs": {"type": "float", "low": 1.0, "high": 3.0}}), "never adapts"),
    (_with(fixed={"weight_format": "edgebert_hw", "weight_bits": 6}),
     "weight_format 'edgebert_hw' with weight_bits=6, weight_exp_bits=3 can be sampled"),
    (_with(search_space={"weight_format": {"type": "categorical", "choices": ["paper2020", "ref2022"]},
                         "weight_exp_bits": {"type": "int", "low": 1, "high": 3}}), "ref2022 needs weight_exp_bits >= 2"),
    # fp32 activations: the hardware model charges a 4..16-bit datapath, so accuracy may not be
    # measured without one (issue #15 item 3)
    (_with(fixed={"activation_bits": 0}), "activation_bits: 0 is outside the legal range"),
    (_with(search_space={"activation_bits": {"type": "int", "low": 0, "high": 8, "step": 8}}),
     "activation_bits: 0 is outside the legal range [4.0, 16.0]"),
    (_with(fixed={"weight_format": "edgebert_hw", "activation_bits": 16}), "AdaptivFloat<8,3> only"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_definitions_give_one_clear_line(data, message, tmp_path: Path) -> None:  # noqa: ANN001
    path = _write(data, tmp_path)
    with pytest.raises(ConfigError) as err:
        load_study_config(path)
    text = str(err.value)
    assert message in text
    assert "\n" not in text and text.startswith(str(path))


def test_hypervolume_reference_is_kept_and_hashed() -> None:
    plain = load_study_config(_write(MINIMAL))
    assert plain.hypervolume_reference is None
    ref = {"accuracy": 70.0, "energy_uj": 900.0, "latency_ms": 3.0}
    with_ref = load_study_config(_write({**MINIMAL, "hypervolume_reference": ref}))
    assert with_ref.hypervolume_reference == ref
    assert config_hash(with_ref) != config_hash(plain)  # part of the study: changing it is a new study


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_study_config("/nonexistent/space.yaml")


def test_faults_section_defaults_off_and_keeps_older_hashes() -> None:
    plain = load_study_config(_write(MINIMAL))
    assert not plain.faults.enabled and plain.faults.repeats == 3 and plain.faults.error_rate_scale == 1.0
    # the hash this definition had before the faults section existed
    assert config_hash(plain) == "1cd15f1de765172b51776accb313fe8b30ef78be7850b579a499191cbcc209d1"
    explicit = load_study_config(_write({**MINIMAL, "faults": {"enabled": False, "repeats": 3}}))
    assert config_hash(explicit) == config_hash(plain)
    on = load_study_config(_write({**MINIMAL, "faults": {"enabled": True},
                                   "constraints": {"min_accuracy_under_faults_points": 70}}))
    assert config_hash(on) != config_hash(plain)


@pytest.mark.parametrize(("faults", "message"), [
    ({"cell_error_prob": {"dram": 0.1}}, "unknown eNVM cell 'dram'"),
    ({"cell_error_prob": {"rram_mlc3": 1.5}}, "must be a probability"),
    ({"repeats": 0}, "faults.repeats"),
    ({"bogus": 1}, "unknown key"),
])
def test_bad_faults_section_is_one_error(faults: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_study_config(_write({**MINIMAL, "faults": faults}))


MULTI = {"name": "mt", "tasks": [{"name": "SST-2", "mix": 3}, {"name": "qnli", "train_from_dev": 0.5}],
         "objectives": [{"name": "worst_accuracy_drop"}, {"name": "qnli.accuracy"}, {"name": "energy_uj"}],
         "search_space": {"sst2.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6},
                          "qnli.exit_threshold": {"type": "float", "low": 0.0, "high": 0.6},
                          "voltage_v": {"type": "float", "low": 0.5, "high": 0.8}},
         "fixed": {"qnli.encoder_pruning": 0.3, "embedding_pruning": 0.2}}


def test_multitask_definition_resolves_tasks_knobs_and_objectives() -> None:
    config = parse_study_config(MULTI, source="t")
    assert config.is_multitask and config.directions() == ["minimize", "maximize", "minimize"]
    sst2, qnli = config.task_settings()
    assert (sst2.name, sst2.mix, qnli.mix) == ("sst2", 0.75, 0.25)  # canonical names, shares sum to 1
    assert sst2.finetune.freeze_embeddings and qnli.finetune.freeze_embeddings  # one shared table
    assert sst2.approximation is None and "fine-tuned on 50% of the dev rows" in qnli.approximation
    knobs = config.knob_values({"sst2.exit_threshold": 0.1, "qnli.exit_threshold": 0.4, "voltage_v": 0.6})
    assert "exit_threshold" not in knobs  # every task sets its own: no shared value is left to mislead
    assert "encoder_pruning" in knobs  # only qnli scopes it; sst2 keeps the shared default
    seen = knobs_for_task(knobs, "qnli")
    assert (seen["exit_threshold"], seen["encoder_pruning"], seen["embedding_pruning"], seen["voltage_v"]) == (
        0.4, 0.3, 0.2, 0.6)
    assert knobs_for_task(knobs, "sst2")["encoder_pruning"] == 0.0 and set(seen) == set(KNOBS)


def test_multitask_definition_reloads_from_its_dump_with_the_same_hash() -> None:
    config = parse_study_config(MULTI, source="t")
    dumped = config.model_dump(mode="json")
    assert "task" not in dumped  # a written config.yaml must load again (task and tasks exclude each other)
    again = parse_study_config(yaml.safe_load(yaml.safe_dump(dumped)), source="t")
    assert again == config and config_hash(again) == config_hash(config)


def test_single_task_hash_is_unchanged_by_later_options() -> None:
    # golden: results/sst2_minilm folders written before tasks/freeze_embeddings existed still open
    config = load_study_config(SPACES / "sst2_minilm.yaml")
    assert config_hash(config) == "95fd78090aba9456e632a906c2c185636a39758da515b42c3f0c70c93c69a142"


def _format_works(fmt) -> bool:  # noqa: ANN001
    """Whether AdaptivFloat builds this format and quantizes a small tensor with it."""
    import torch

    from dse.compression.adaptivfloat import quantize

    try:
        if fmt is not None:
            quantize(torch.linspace(-2.0, 3.0, 11), fmt())
    except ValueError:
        return False
    return True


def test_every_accepted_number_format_runs_and_every_refused_one_would_not() -> None:
    # every weight_format x weight_bits x weight_exp_bits x activation_bits the knobs allow
    import itertools

    from dse.compression.apply import activation_format, weight_format
    from dse.compression.spec import CompressionSpec

    knob = {n: KNOBS[n] for n in ("weight_format", "weight_bits", "weight_exp_bits", "activation_bits")}
    accepted = refused = 0
    for variant, bits, exp, act in itertools.product(
            knob["weight_format"].choices, *(range(int(knob[n].low), int(knob[n].high) + 1)
                                             for n in ("weight_bits", "weight_exp_bits", "activation_bits"))):
        fixed = {"weight_format": variant, "weight_bits": bits, "weight_exp_bits": exp, "activation_bits": act}
        spec = CompressionSpec.from_knobs({**{n: k.default for n, k in KNOBS.items()}, **fixed})
        runs = _format_works(lambda: weight_format(spec)) and _format_works(
            None if act == 0 else lambda: activation_format(spec))
        try:
            parse_study_config(_with(fixed=fixed), source="t")
        except ConfigError as exc:
            assert not runs, f"{fixed} runs but is refused: {exc}"
            assert "\n" not in str(exc)
            refused += 1
        else:
            assert runs, f"{fixed} passes validation and fails at run time"
            accepted += 1
    assert accepted and refused


def test_early_stopping_defaults_off_keeps_older_hashes_and_refuses_bad_stages() -> None:
    plain = load_study_config(_write(MINIMAL))
    assert not plain.early_stopping.enabled and plain.early_stopping.stages == (0.25, 0.5)
    assert config_hash(plain) == "1cd15f1de765172b51776accb313fe8b30ef78be7850b579a499191cbcc209d1"
    on = load_study_config(_write({**MINIMAL, "early_stopping": {"enabled": True}}))
    assert config_hash(on) != config_hash(plain)
    for stages in ([0.5, 0.25], [0.25, 1.0], [0.0]):
        with pytest.raises(ConfigError, match="early_stopping: stages must be increasing fractions"):
            load_study_config(_write({**MINIMAL, "early_stopping": {"stages": stages}}))
    with pytest.raises(ConfigError, match="early_stopping.patience: unknown key"):
        load_study_config(_write({**MINIMAL, "early_stopping": {"patience": 3}}))
