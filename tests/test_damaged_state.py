"""Damaged state (issue #16): every file a study folder and a design export hold, truncated,
filled with garbage or replaced by a pickle; then ``status``, ``pareto`` and ``resume`` (a study
folder) or ``evaluate`` and ``deploy`` (an export).

Each run either recovers (and the finished trials it can read are exactly the ones written) or
stops with one ``error:`` line naming the damaged file; never a traceback, and nothing is ever
unpickled. The study is a tiny real one (random-weight BERT, synthetic rows) and the export is
written once per module by the exporter's own writers from a tiny random-weight model, so the
suite is fast. Checkpoints and npz caches are covered per file in
tests/dse/training/test_prepare.py and tests/dse/evaluation/test_cache.py.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState

from dse.api import evaluate_export
from dse.artifacts.export import ACCELERATOR_FILE, DESIGN_FILE, MODEL_DIR, design_record, write_design
from dse.artifacts.hf_export import DevRows, save_exported_model
from dse.cli import main
from dse.compression.apply import compress
from dse.modeling.early_exit import EarlyExitModel
from dse.errors import DSEError
from dse.study.engine import StudyFolder, open_study, run_study

from .conftest import tiny_backbone
from .dse.artifacts.test_export import _config as export_config
from .dse.artifacts.test_export import _study as export_study
from .dse.artifacts.test_hf_export import SPEC, texts, tiny_tokenizer
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


# --- a design export: design.json, accelerator.json, model/ (Hugging Face folder) ---------------

EXPORT_FILES = ["design.json", "accelerator.json", "model/config.json", "model/model.safetensors",
                "model/off_ramps.safetensors", "model/tokenizer.json", "model/tokenizer_config.json",
                "model/README.md"]
# Which files each command reads back: `evaluate EXPORT` rebuilds the design from design.json alone
# (so it is run on that file only: on the others it would fine-tune the study's real model);
# `evaluate --model` and `deploy` read the model folder; nothing reads accelerator.json back
# (it is for the accelerator's tools), nor the model card (model/README.md, for people), so damage to
# them must change nothing.
EXPORT_COMMANDS = {"evaluate": ["design.json"], "evaluate-model": EXPORT_FILES[2:-1], "deploy": EXPORT_FILES[2:-1]}
# A file `deploy` does not read gets the pickle alone: all three damages prove only that it is
# not read, and each deploy exports and times ONNX graphs (about 18 s on a 2-core machine).
EXPORT_CASES = [(f, how, c) for f in EXPORT_FILES for how in DAMAGE for c in EXPORT_COMMANDS
                if (c != "evaluate" or f in EXPORT_COMMANDS["evaluate"])
                and (c != "deploy" or f in EXPORT_COMMANDS["deploy"] or how == "pickle")]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An export folder as `dse export` lays it out (its own writers), of a tiny random-weight
    model whose dev rows are a tiny SST-2 file; and `evaluate --model`'s output on it intact."""
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(5)
    (root / "glue" / "SST-2").mkdir(parents=True)
    (root / "glue" / "SST-2" / "dev.tsv").write_text(
        "\n".join(["sentence\tlabel", *(f"{t}\t{int(rng.integers(0, 2))}" for t in texts(20, seed=7))]) + "\n")
    config = export_config()
    record = design_record(export_study(config), config, 0)
    folder = root / "knee"
    model, _ = compress(EarlyExitModel(tiny_backbone("bert"), num_labels=2).eval(), SPEC)
    save_exported_model(model.eval(), tiny_tokenizer(), folder / MODEL_DIR, task="sst2", max_seq_length=32,
                        exit_threshold=0.3, dev_rows=DevRows(glue_dir=str(root / "glue"), dev_subset=10, seed=1),
                        compression=SPEC.as_dict())
    write_design(record["_data"]["accelerator"], folder / ACCELERATOR_FILE)
    write_design(record, folder / DESIGN_FILE)
    return folder, json.loads(json.dumps(evaluate_export(folder, model=True)))


def _run_export(command: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    argv = {"evaluate": ["evaluate", str(folder)], "evaluate-model": ["evaluate", "--model", str(folder)],
            "deploy": ["deploy", str(folder), "--max-rows", "2", "--threads", "1"]}[command]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("name", "how", "command"), EXPORT_CASES, ids=["-".join(c) for c in EXPORT_CASES])
def test_damaged_export_file_is_one_line_naming_it(export: tuple[Path, dict], tmp_path: Path, name: str, how: str,
                                                   command: str, capsys: pytest.CaptureFixture[str]) -> None:
    source, intact = export
    folder = tmp_path / "knee"
    shutil.copytree(source, folder)
    marker = tmp_path / "pwned"
    _damage(folder / name, how, marker)
    code, out, err = _run_export(command, folder, capsys)
    assert "Traceback" not in out + err and not marker.exists()
    if name in EXPORT_COMMANDS[command]:  # the command reads the file: it stops, naming it
        assert code != 0, out
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert str(folder / name) in lines[0] and "dse export" in lines[0], lines[0]
        assert not (folder / "deploy").exists()  # nothing written
        return
    assert code == 0, err  # a file the command does not read changes nothing
    if command == "evaluate-model":
        assert json.loads(out) == intact
    else:
        assert (folder / "deploy" / "deploy.json").is_file()


def test_the_suite_covers_every_file_of_an_export(export: tuple[Path, dict]) -> None:
    source, _ = export
    files = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()}
    assert files == set(EXPORT_FILES), files ^ set(EXPORT_FILES)
