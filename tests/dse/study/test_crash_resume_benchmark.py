"""The crash-and-resume benchmark in reduced form: real study, real SIGKILLs, real resumes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GLUE = Path(os.environ.get("DSE_GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue")


@pytest.mark.integration
def test_killed_studies_resume_without_loss_or_duplicate_evaluations(tmp_path: Path) -> None:
    if not GLUE.is_dir():
        pytest.fail(f"real GLUE data not found at {GLUE} (set DSE_GLUE_DIR)")
    env = {**os.environ, "DSE_GLUE_DIR": str(GLUE)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "crash_resume.py"), "--runs", "2",
                          "--trials", "3", "--dev-subset", "32", "--seed", "1", "--keep", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"runs=2 lost=0 duplicates=0 trials_ok=true", last), run.stdout
