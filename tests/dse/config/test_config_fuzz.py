"""Fuzz the study-definition loader: any input is a valid ``StudyConfig`` or one ``ConfigError``."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse.config import KNOBS, StudyConfig, load_study_config, parse_study_config
from dse.errors import ConfigError

GOOD = {
    "name": "fuzz", "task": "sst2", "n_trials": 4,
    "model": {"name": "all-MiniLM-L6-v2", "max_seq_length": 128},
    "data": {"dev_subset": 64, "seed": 0},
    "objectives": [{"name": "accuracy"}, {"name": "energy_uj"}],
    "constraints": {"max_accuracy_drop_points": 2.0},
    "sampler": {"name": "tpe", "seed": 0},
    "executor": {"kind": "inline", "max_in_flight": 1, "cpus_per_trial": 1.0},
    "storage": {"kind": "journal"},
    "search_space": {"encoder_pruning": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
                     "weight_bits": {"type": "int", "low": 6, "high": 8},
                     "envm_cell": {"type": "categorical", "choices": ["rram_slc", "pcm"]}},
    "fixed": {"voltage_v": 0.7},
}
KEYS = sorted({*GOOD, *KNOBS, "type", "low", "high", "step", "log", "choices", "kind", "url", "version",
               "hypervolume_reference", "sweep", "finetune", "glue_dir", "direction"})

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12) | st.sampled_from(["float", "int", "categorical", "pcm", "sst2", "tpe", "ray",
                                                      "postgresql", "sqlite", "accuracy", "1e400", "-.inf"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> object:
    """The good definition with a few random sub-trees replaced or deleted: deep, near-valid inputs."""
    data: object = copy.deepcopy(GOOD)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        if not path:
            data = draw(values)
            continue
        parent = data
        for step in path[:-1]:
            parent = parent[step]  # type: ignore[index]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)  # type: ignore[index]
        if not isinstance(data, dict | list):
            break
    return data


def _check(data: object) -> None:
    try:
        config = parse_study_config(data, source="fuzz")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz") and "\n" not in str(exc)
    else:
        assert isinstance(config, StudyConfig)


@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_definitions(data: object) -> None:
    _check(data)


@settings(max_examples=500, deadline=None, database=None)
@given(values)
def test_arbitrary_structures(data: object) -> None:
    _check(data)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_yaml_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_study_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_the_good_definition_is_valid() -> None:  # the mutations start from a valid point
    assert parse_study_config(copy.deepcopy(GOOD), source="good").n_trials == 4
    assert yaml.safe_load(yaml.safe_dump(GOOD)) == GOOD
