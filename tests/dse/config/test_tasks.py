"""The GLUE task registry (dse.config.tasks): names, labels, metrics, accepted spellings."""

from __future__ import annotations

import pytest

from dse.config import TASKS, TaskSpec, task_spec
from dse.errors import DataError, DSEError

# Spellings task_spec accepts, and the canonical name each one means.
ALIASES = [
    ("sst2", "sst2"),
    ("SST-2", "sst2"),
    ("sst-2", "sst2"),
    ("sst_2", "sst2"),
    ("STS-B", "stsb"),
    ("sts-b", "stsb"),
    ("CoLA", "cola"),
    ("MNLI", "mnli"),
    ("mnli_matched", "mnli"),
    ("mnli-m", "mnli"),
    (" qqp ", "qqp"),
]


def test_task_registry_consistent():
    assert set(TASKS) == {"sst2", "mrpc", "rte", "cola", "stsb", "wnli", "qnli", "mnli", "qqp"}
    for name, spec in TASKS.items():
        assert isinstance(spec, TaskSpec)
        assert spec.name == name
        assert spec.main_metric in spec.metrics
        assert len(spec.text_fields) in (1, 2)
        if spec.is_regression:
            assert spec.num_labels == 1 and spec.label_names == ()
        else:
            assert spec.num_labels == len(spec.label_names) >= 2
    assert TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert TASKS["rte"].label_names == ("entailment", "not_entailment")
    assert TASKS["wnli"].label_names == ("not_entailment", "entailment")  # HF glue order
    assert TASKS["stsb"].metrics == ("pearson", "spearman")
    assert TASKS["cola"].metrics == ("matthews",)
    assert TASKS["mrpc"].metrics == ("accuracy", "f1")


@pytest.mark.parametrize("alias,name", ALIASES)
def test_task_spec_aliases(alias, name):
    assert task_spec(alias) is TASKS[name]


def test_task_spec_unknown():
    with pytest.raises(DataError, match=r"unknown GLUE task 'squad'; known: cola, mnli, .*wnli"):
        task_spec("squad")
    with pytest.raises(DataError):
        task_spec("mnli_mismatched")  # not available offline nor supported
    assert issubclass(DataError, DSEError)
