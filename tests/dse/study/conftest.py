"""Study-engine fixtures: a tiny search space and the tiny real evaluation context."""

from __future__ import annotations

from pathlib import Path

import pytest

from dse.evaluation import EvalContext

from ..tiny_eval import tiny_config, tiny_context  # noqa: F401 (re-exported for the study tests)


@pytest.fixture
def tiny_ctx(tmp_path: Path) -> EvalContext:
    return tiny_context(tmp_path / "cache")
