"""``dse config schema``: a JSON schema that accepts every shipped study definition and rejects bad names."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dse.cli import main
from dse.config import KNOBS, METRICS, load_study_config
from dse.config.schema import study_schema
from dse.errors import ConfigError

from .test_tasks import ALIASES

SPACES = sorted((Path(__file__).resolve().parents[3] / "search_spaces").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = study_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, data: dict) -> list[str]:
    return [e.message for e in validator.iter_errors(data)]


def test_the_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(study_schema()))
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_registries_are_enums_for_editors() -> None:
    schema = study_schema()
    space = schema["properties"]["search_space"]
    assert set(space["properties"]) == set(KNOBS)
    assert space["additionalProperties"] is False
    cell = space["properties"]["envm_cell"]["properties"]["choices"]["items"]
    assert cell["enum"] == list(KNOBS["envm_cell"].choices)
    objective = schema["$defs"]["Objective"]["properties"]["name"]["anyOf"][0]
    assert objective["enum"] == list(METRICS)
    assert schema["$defs"]["SamplerConfig"]["properties"]["name"]["enum"] == ["tpe", "nsga2", "random", "gp"]
    assert "sst2" in schema["properties"]["task"]["anyOf"][0]["enum"]


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_shipped_definition_validates(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert _errors(validator, yaml.safe_load(path.read_text())) == []


def _smoke() -> dict:
    return yaml.safe_load(next(p for p in SPACES if p.name == "smoke.yaml").read_text())


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: d["search_space"].update(warp_drive={"type": "float", "low": 0, "high": 1}), "unknown knob"),
    (lambda d: d["fixed"].update(warp_drive=1), "unknown fixed knob"),
    (lambda d: d["search_space"].update(encoder_pruning={"type": "float", "low": 0, "high": 1.5}), "out of range"),
    (lambda d: d["search_space"].update(weight_bits={"type": "float", "low": 4, "high": 8}), "int knob, float range"),
    (lambda d: d["search_space"].update(envm_cell={"type": "categorical", "choices": ["dram"]}), "unknown cell"),
    (lambda d: d["objectives"].append({"name": "speed"}), "unknown metric"),
    (lambda d: d.update(task="imdb"), "unknown task"),
    (lambda d: d["sampler"].update(name="cmaes"), "unknown sampler"),
    (lambda d: d.update(colour="red"), "unknown key"),
    (lambda d: d["data"].update(calibration_rows=4), "too few calibration rows"),
])
def test_bad_definitions_are_rejected(validator: jsonschema.Draft202012Validator, change: Any, why: str,
                                      tmp_path: Path) -> None:
    data = copy.deepcopy(_smoke())
    change(data)
    assert _errors(validator, data), why
    bad = tmp_path / "bad.yaml"  # the tool refuses it too: the schema is never looser than the validation
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError):
        load_study_config(bad)


@pytest.mark.parametrize(("alias", "name"), ALIASES)
def test_every_task_spelling_the_tool_accepts_validates(validator: jsonschema.Draft202012Validator, alias: str,
                                                        name: str) -> None:
    assert _errors(validator, {**_smoke(), "task": alias}) == []


def test_per_task_knobs_and_metrics_of_a_multitask_study() -> None:
    schema = study_schema()
    validator = jsonschema.Draft202012Validator(schema)
    data = yaml.safe_load(next(p for p in SPACES if p.name == "glue3_minilm.yaml").read_text())
    data["search_space"]["rte.train_epochs"] = {"type": "float", "low": 0.5, "high": 1.0}  # a per-task knob
    data["objectives"].append({"name": "rte.accuracy"})
    assert _errors(validator, data) == []
    data["search_space"]["rte.vmac_lanes"] = {"type": "categorical", "choices": [8]}  # one chip: not per task
    assert _errors(validator, data)
