"""Damaged state (issue #16): every file a study folder holds, truncated, filled with garbage or
replaced by a pickle; then ``status``, ``pareto`` and ``resume``.

Each run either recovers (and the finished trials it can read are exactly the ones written) or
stops with one ``error:`` line naming the damaged file; never a traceback, and nothing is ever
unpickled. The study is a tiny real one (random-weight BERT, synthetic rows) so the suite is fast.
Checkpoints and npz caches are covered per file in tests/dse/training/test_prepare.py and
tests/dse/evaluation/test_cache.py; the export's design.json in tests/dse/artifacts/test_export.py.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from optuna.trial import TrialState

from dse.cli import main
from dse.errors import DSEError
from dse.study.engine import StudyFolder, open_study, run_study

from .dse.tiny_eval import tiny_config, tiny_context

N_TRIALS = 4


class _Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = StudyFolder(tmp_path_factory.mktemp("damaged") / "unit")
    run_study(folder, tiny_config(n_trials=N_TRIALS), context=tiny_context(folder.cache))
    study = open_study(folder, folder.load_config(), create=False)
    return folder.path, _finished(study)


def _finished(study) -> dict:  # noqa: ANN001
    """COMPLETE trials by their parameters (numbers can be reused after a truncated journal's
    lost trials are run again; a design's values are deterministic here)."""
    return {tuple(sorted(t.params.items())): t.values for t in study.trials if t.state == TrialState.COMPLETE}


FILES = ["study.journal", "config.yaml", "config.sha256", "storage.json", "cache/logits/*.npz"]
DAMAGE = ["truncated", "garbage", "pickle"]
COMMANDS = ["status", "pareto", "resume"]


def _damage(path: Path, how: str, marker: Path) -> None:
    good = path.read_bytes()
    path.write_bytes({"truncated": good[: len(good) // 2], "garbage": bytes(range(256)) * 3,
                      "pickle": pickle.dumps({"x": _Boom(marker)})}[how])


def _run(command: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    if command == "resume":  # the real resume, with the tiny context instead of a fine-tuned model
        config = tiny_config(n_trials=N_TRIALS)
        try:
            run_study(StudyFolder(folder), config, n_trials=N_TRIALS + 1, context=tiny_context(folder / "cache" / "logits"))
        except DSEError as exc:
            return 1, f"error: {exc}\n"
        return 0, ""
    code = main(["study", "status", str(folder)] if command == "status" else ["pareto", str(folder)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_damaged_file_recovers_or_is_one_line_naming_it(base: tuple[Path, dict], tmp_path: Path, name: str, how: str,
                                                        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    source, finished = base
    folder = tmp_path / "unit"
    shutil.copytree(source, folder)
    targets = sorted(folder.glob(name))
    assert targets, name
    marker = tmp_path / "pwned"
    for path in targets:
        _damage(path, how, marker)
    code, err = _run(command, folder, capsys)
    assert "Traceback" not in err and not marker.exists()
    if code != 0:
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, err
        assert Path(name).name.replace("*", "") in lines[0], lines[0]
        return
    # recovered: the finished trials still readable are exactly those written, none altered
    study = open_study(StudyFolder(folder), tiny_config(n_trials=N_TRIALS), create=False)
    now = _finished(study)
    assert all(finished[k] == v for k, v in now.items() if k in finished)
    if name != "study.journal":  # only a damaged journal can lose records (they were in it)
        assert set(finished) <= set(now)


def test_the_suite_covers_every_file_of_a_study_folder(base: tuple[Path, dict]) -> None:
    source, _ = base
    kinds = {p.name if p.parent == source else "cache/logits/*.npz" for p in source.rglob("*")
             if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".flock", ".csv", ".png", ".svg"))
             and p.name != "env.json"}  # env.json is written for people and never read back
    assert kinds <= set(FILES), kinds - set(FILES)
