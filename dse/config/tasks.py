"""The GLUE task registry: every task a study may name, with its labels and metrics.

Owns :data:`TASKS`, :class:`TaskSpec` and :func:`task_spec` (canonical names from common
spellings); loading a task's rows is :mod:`dse.data`'s. Imports only :mod:`dse.errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dse.errors import DataError

__all__ = ["TASKS", "TaskSpec", "normalize_task_name", "task_spec"]


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one GLUE task."""

    name: str  # canonical lower-case name, e.g. "sst2"
    folder: str  # folder of the official GLUE download, e.g. "SST-2"
    text_fields: tuple[str, ...]  # meaning of text_a (and text_b for pair tasks)
    num_labels: int  # 1 for the STS-B regression task
    label_names: tuple[str, ...]  # class names in class-id order (HF glue order); () for STS-B
    metrics: tuple[str, ...]  # metric names computed by dse.data.metrics.compute_metrics
    main_metric: str  # the one metric used to rank models
    is_regression: bool

    @property
    def is_pair(self) -> bool:
        """True for sentence-pair tasks (``text_b`` is non-empty)."""
        return len(self.text_fields) == 2


# Main metrics follow the BERT paper's GLUE table: F1 for QQP and MRPC, Spearman for STS-B, Matthews
# correlation for CoLA, accuracy for the rest.
TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("cola", "CoLA", ("sentence",), 2, ("unacceptable", "acceptable"), ("matthews",), "matthews", False),
        TaskSpec("sst2", "SST-2", ("sentence",), 2, ("negative", "positive"), ("accuracy",), "accuracy", False),
        TaskSpec(
            "mrpc", "MRPC", ("sentence1", "sentence2"), 2, ("not_equivalent", "equivalent"),
            ("accuracy", "f1"), "f1", False,
        ),
        TaskSpec(
            "qqp", "QQP", ("question1", "question2"), 2, ("not_duplicate", "duplicate"),
            ("accuracy", "f1"), "f1", False,
        ),
        TaskSpec("stsb", "STS-B", ("sentence1", "sentence2"), 1, (), ("pearson", "spearman"), "spearman", True),
        TaskSpec(
            "mnli", "MNLI", ("premise", "hypothesis"), 3, ("entailment", "neutral", "contradiction"),
            ("accuracy",), "accuracy", False,
        ),
        TaskSpec(
            "qnli", "QNLI", ("question", "sentence"), 2, ("entailment", "not_entailment"),
            ("accuracy",), "accuracy", False,
        ),
        TaskSpec(
            "rte", "RTE", ("sentence1", "sentence2"), 2, ("entailment", "not_entailment"),
            ("accuracy",), "accuracy", False,
        ),
        # WNLI: the TSV labels are 0/1 with 1 = entailment, and the HF glue loader orders the classes
        # ("not_entailment", "entailment"), i.e. the reverse of RTE/QNLI.
        TaskSpec(
            "wnli", "WNLI", ("sentence1", "sentence2"), 2, ("not_entailment", "entailment"),
            ("accuracy",), "accuracy", False,
        ),
    )
}

_ALIASES: dict[str, str] = {
    "mnlim": "mnli",
    "mnlimatched": "mnli",
}


def normalize_task_name(name: str) -> str:
    """Lower case without spaces, ``_`` and ``-`` (``"SST-2"`` -> ``"sst2"``)."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def task_spec(name: str) -> TaskSpec:
    """Return the :class:`TaskSpec` of a GLUE task.

    Accepts the canonical name and common spellings: ``"sst2"``, ``"SST-2"``, ``"sst_2"``, ``"STS-B"``,
    ``"CoLA"``, ``"mnli_matched"``, ``"mnli-m"``, ... Raises :class:`DataError` for anything else.
    """
    if isinstance(name, TaskSpec):
        return name
    if isinstance(name, str):
        key = normalize_task_name(name)
        key = _ALIASES.get(key, key)
        if key in TASKS:
            return TASKS[key]
    raise DataError(f"unknown GLUE task {name!r}; known: {', '.join(sorted(TASKS))}")
