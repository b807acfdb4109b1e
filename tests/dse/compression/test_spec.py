"""Training-time knobs: registry defaults mean "no training"; study definitions accept them."""

from __future__ import annotations

import pytest

from dse.compression.spec import TrainingSpec
from dse.config import KNOBS, parse_study_config
from dse.errors import ConfigError


def test_knob_defaults_are_the_spec_defaults() -> None:
    for name, field in TrainingSpec.model_fields.items():
        assert KNOBS[name].default == field.default, name
    assert TrainingSpec.from_knobs({n: k.default for n, k in KNOBS.items()}).is_noop


def test_study_definitions_search_training_knobs() -> None:
    config = parse_study_config({
        "name": "t", "search_space": {
            "pruning_method": {"type": "categorical", "choices": ["magnitude", "movement"]},
            "train_pruning": {"type": "float", "low": 0.3, "high": 0.7},
            "distillation": {"type": "categorical", "choices": [False, True]},
        }, "fixed": {"span_init": 8.0, "train_epochs": 2},
    }, source="test")
    spec = TrainingSpec.from_knobs(config.knob_values({"pruning_method": "movement", "train_pruning": 0.5,
                                                       "distillation": True}))
    assert spec == TrainingSpec(pruning_method="movement", train_pruning=0.5, span_init=8.0,
                                distillation=True, train_epochs=2.0)
    with pytest.raises(ConfigError, match="pruning_method"):
        parse_study_config({"name": "t", "fixed": {"pruning_method": "l0"},
                            "search_space": {"exit_threshold": {"type": "float", "low": 0, "high": 1}}},
                           source="test")
    with pytest.raises(ConfigError, match="train_pruning"):
        parse_study_config({"name": "t", "search_space": {"train_pruning": {"type": "float", "low": 0, "high": 1.0}}},
                           source="test")
