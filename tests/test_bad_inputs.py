"""Bad input anywhere gives exactly one ``error:`` line, a non-zero exit and no traceback.

Every case runs the real CLI in-process (``dse.cli.main``) and checks that an existing results
folder is left byte-for-byte as it was. Cases that reach data or model loading fail before any
fine-tuning starts, so the table stays fast.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from dse.cli import main
from dse.config import parse_study_config
from dse.study.engine import StudyFolder, open_study

GOOD = {
    "name": "bad-inputs",
    "task": "sst2",
    "search_space": {"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.1},
                     "envm_cell": {"type": "categorical", "choices": ["rram_slc", "pcm"]}},
    "n_trials": 2,
}
SST2_HEADER = "sentence\tlabel\n"


def _with(**changes: object) -> dict:
    """GOOD with top-level keys replaced (None removes one)."""
    data = {**GOOD, **changes}
    return {k: v for k, v in data.items() if v is not None}


def _nested(path: str, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with a real study and some trials, plus GLUE folders good and broken."""
    root = tmp_path_factory.mktemp("bad")
    config = parse_study_config(GOOD, source="good")
    study = open_study(StudyFolder(root / "results" / GOOD["name"]), config, create=True)
    dists = {"exit_threshold": optuna.distributions.FloatDistribution(0.0, 0.6, step=0.1),
             "envm_cell": optuna.distributions.CategoricalDistribution(["rram_slc", "pcm"])}
    for v in (0.1, 0.3):
        study.add_trial(optuna.trial.create_trial(params={"exit_threshold": v, "envm_cell": "pcm"},
                                                  distributions=dists, values=[80.0, 500.0, 1.0]))
    (root / "results" / "plain-file").write_text("not a folder")
    glue = {
        "missing-dev": {"train.tsv": SST2_HEADER + "a fine film\t1\n"},
        "bad-row": {"train.tsv": SST2_HEADER + "a fine film\t1\n", "dev.tsv": SST2_HEADER + "no label here\n"},
        "bad-label": {"train.tsv": SST2_HEADER + "a fine film\t1\n", "dev.tsv": SST2_HEADER + "a film\tseven\n"},
        "header-only": {"train.tsv": SST2_HEADER + "a fine film\t1\n", "dev.tsv": SST2_HEADER},
        "not-utf8": {"train.tsv": SST2_HEADER + "a fine film\t1\n", "dev.tsv": b"sentence\tlabel\n\xff\xfe\t1\n"},
        "empty-file": {"train.tsv": "", "dev.tsv": ""},
        "two-tasks": {"train.tsv": SST2_HEADER + "a fine film\t1\n", "dev.tsv": SST2_HEADER + "a dull film\t0\n"},
        # damaged files in an otherwise good folder (issue #16): a run must stop before writing
        "dev-truncated": {"train.tsv": SST2_HEADER + "a fine film\t1\n",
                          "dev.tsv": (SST2_HEADER + "a dull film\t0\na fine film\t1\n")[:-9]},
        "train-garbage": {"train.tsv": bytes(range(256)) * 3, "dev.tsv": SST2_HEADER + "a dull film\t0\n"},
        "dev-pickle": {"train.tsv": SST2_HEADER + "a fine film\t1\n", "dev.tsv": pickle.dumps({"rows": [1, 2]})},
    }
    for name, files in glue.items():
        folder = root / "glue" / name / "SST-2"
        folder.mkdir(parents=True)
        for fname, text in files.items():
            (folder / fname).write_bytes(text if isinstance(text, bytes) else text.encode())
    qnli = root / "glue" / "two-tasks" / "QNLI"
    qnli.mkdir()
    (qnli / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n0\tWho?\tHim.\tentailment\n")
    unreadable = root / "glue" / "unreadable" / "SST-2"
    (unreadable / "train.tsv").mkdir(parents=True)  # a folder where a file should be: fails even for root
    (unreadable / "dev.tsv").mkdir()
    (root / "glue" / "no-task").mkdir(parents=True)
    locked = root / "glue" / "no-permission" / "SST-2"
    locked.mkdir(parents=True)
    for fname in ("train.tsv", "dev.tsv"):
        (locked / fname).write_text(SST2_HEADER + "a fine film\t1\n")
        (locked / fname).chmod(0)
    (root / "model-no-config").mkdir()
    return root


def _spec(world: Path, name: str, data: dict | str | bytes) -> str:
    path = world / "specs" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    if isinstance(data, dict):
        data = yaml.safe_dump(data)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def _glue(name: str) -> Callable[[Path], dict]:
    return lambda w: _nested("data.glue_dir", str(w / "glue" / name))


# (case id, argv builder). "{spec}" in argv stands for the YAML written from the case's data.
Case = tuple[str, list[str], Callable[[Path], dict | str | bytes] | None]
CASES: list[Case] = [
    # study definitions: YAML and schema
    ("yaml-syntax", ["config", "validate", "{spec}"], lambda w: "name: [unclosed\n"),
    ("yaml-bad-mapping", ["config", "validate", "{spec}"], lambda w: "name: a: b\n"),
    ("yaml-tab-indent", ["config", "validate", "{spec}"], lambda w: "name: x\nsearch_space:\n\tenvm_cell: 1\n"),
    ("yaml-not-mapping", ["config", "validate", "{spec}"], lambda w: "- a\n- b\n"),
    ("yaml-empty", ["config", "validate", "{spec}"], lambda w: ""),
    ("yaml-not-utf8", ["config", "validate", "{spec}"], lambda w: b"name: \xff\xfe\n"),
    ("yaml-python-tag", ["config", "validate", "{spec}"], lambda w: "name: !!python/object/apply:os.system [echo hi]\n"),
    ("unknown-key", ["config", "validate", "{spec}"], lambda w: _with(trials=3)),
    ("unknown-nested-key", ["config", "validate", "{spec}"], lambda w: _nested("model.layers", 3)),
    ("wrong-type", ["config", "validate", "{spec}"], lambda w: _with(n_trials="many")),
    ("zero-trials", ["config", "validate", "{spec}"], lambda w: _with(n_trials=0)),
    ("bounds-reversed-float", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"encoder_pruning": {"type": "float", "low": 0.5, "high": 0.1}})),
    ("bounds-reversed-int", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"vmac_lanes": {"type": "int", "low": 64, "high": 8}})),
    ("bounds-illegal", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"encoder_pruning": {"type": "float", "low": 0.0, "high": 1.5}})),
    ("empty-search-space", ["config", "validate", "{spec}"], lambda w: _with(search_space={})),
    ("unknown-knob", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"warp_drive": {"type": "int", "low": 1, "high": 2}})),
    ("int-knob-as-float", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"vmac_lanes": {"type": "float", "low": 1, "high": 8}})),
    ("log-from-zero", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"sram_kb": {"type": "float", "low": 0.0, "high": 8.0, "log": True}})),
    ("unknown-envm-cell", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"envm_cell": {"type": "categorical", "choices": ["rram_slc", "dram_cell"]}})),
    ("unknown-envm-cell-fixed", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"voltage_v": {"type": "float", "low": 0.5, "high": 0.8}},
                     fixed={"envm_cell": "core_memory"})),
    ("unknown-task", ["config", "validate", "{spec}"], lambda w: _with(task="sst3")),
    ("unknown-objective", ["config", "validate", "{spec}"], lambda w: _with(objectives=[{"name": "happiness"}])),
    ("duplicate-objective", ["config", "validate", "{spec}"],
     lambda w: _with(objectives=[{"name": "accuracy"}, {"name": "accuracy"}])),
    ("unknown-sampler", ["config", "validate", "{spec}"], lambda w: _nested("sampler.name", "cmaes")),
    ("unknown-executor", ["config", "validate", "{spec}"], lambda w: _nested("executor.kind", "dask")),
    ("postgres-without-url", ["config", "validate", "{spec}"], lambda w: _nested("storage.kind", "postgresql")),
    ("future-version", ["config", "validate", "{spec}"], lambda w: _with(version=2)),
    ("bad-study-name", ["config", "validate", "{spec}"], lambda w: _with(name="../escape")),
    ("missing-file", ["config", "validate", "{world}/specs/nope.yaml"], None),
    ("file-is-folder", ["config", "validate", "{world}/specs"], None),
    # data and model: fail before any fine-tuning
    ("glue-dir-missing", ["prepare", "{spec}"], _glue("does-not-exist")),
    ("glue-task-missing", ["prepare", "{spec}"], _glue("no-task")),
    ("glue-file-missing", ["prepare", "{spec}"], _glue("missing-dev")),
    ("glue-file-unreadable", ["prepare", "{spec}"], _glue("unreadable")),
    ("glue-file-no-permission", ["prepare", "{spec}"], _glue("no-permission")),
    ("glue-row-malformed", ["prepare", "{spec}"], _glue("bad-row")),
    ("glue-label-malformed", ["prepare", "{spec}"], _glue("bad-label")),
    ("glue-no-rows", ["prepare", "{spec}"], _glue("header-only")),
    ("glue-empty-file", ["prepare", "{spec}"], _glue("empty-file")),
    ("glue-not-utf8", ["prepare", "{spec}"], _glue("not-utf8")),
    ("multitask-task-without-train", ["prepare", "{spec}"],  # QNLI offline: dev only, and no train_from_dev
     lambda w: {**_with(task=None, tasks=[{"name": "sst2"}, {"name": "qnli"}]),
                "data": {"glue_dir": str(w / "glue" / "two-tasks")}}),
    ("multitask-run-task-without-train", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: {**_with(name="mt", task=None, tasks=[{"name": "sst2"}, {"name": "qnli"}]),
                "data": {"glue_dir": str(w / "glue" / "two-tasks")}}),
    ("multitask-scoped-hardware-knob", ["config", "validate", "{spec}"],
     lambda w: _with(task=None, tasks=[{"name": "sst2"}, {"name": "rte"}],
                     search_space={"rte.vmac_lanes": {"type": "categorical", "choices": [4, 8]}})),
    # a readable GLUE folder, so that these reach the check they name
    ("model-path-missing", ["prepare", "{spec}"],
     lambda w: {**_nested("model.name", "/nonexistent/minilm"), "data": {"glue_dir": str(w / "glue" / "two-tasks")}}),
    ("model-folder-no-config", ["prepare", "{spec}"],
     lambda w: {**_nested("model.name", str(w / "model-no-config")),
                "data": {"glue_dir": str(w / "glue" / "two-tasks")}}),
    # results folders
    ("results-dir-under-a-file", ["study", "run", "{spec}", "--results-dir", "{world}/results/plain-file/x"],
     lambda w: _with(data={"glue_dir": str(w / "glue" / "two-tasks")})),
    ("results-of-another-study", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: _with(n_trials=5)),
    ("results-other-storage", ["study", "run", "{spec}", "--results-dir", "{world}/results", "--storage", "sqlite"],
     lambda w: GOOD),
    ("resume-not-a-study", ["study", "resume", "{world}/glue"], None),
    ("status-not-a-study", ["study", "status", "{world}/specs"], None),
    ("pareto-missing-folder", ["pareto", "{world}/results/nothing-here"], None),
    # CLI arguments
    ("cli-unknown-command", ["frobnicate"], None),
    ("cli-unknown-option", ["study", "status", "{world}/results/bad-inputs", "--colour"], None),
    ("cli-missing-argument", ["study", "run"], None),
    ("cli-bad-int", ["study", "run", "{spec}", "--n-trials", "lots"], lambda w: GOOD),
    ("cli-zero-trials", ["study", "run", "{spec}", "--n-trials", "0"], lambda w: GOOD),
    ("cli-bad-executor", ["study", "run", "{spec}", "--executor", "dask"], lambda w: GOOD),
    # issue #17: devices (CI has no GPU: asking for one is a one-line error before any work)
    ("cli-bad-device", ["study", "run", "{spec}", "--results-dir", "{world}/results", "--device", "gpu"],
     lambda w: GOOD),
    ("device-cuda-without-gpu", ["prepare", "{spec}"], lambda w: _with(device="cuda:0")),
    ("device-bad-in-definition", ["config", "validate", "{spec}"], lambda w: _with(device="tpu")),
    ("gpus-per-trial-inline", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: _with(name="gpus-inline", executor={"gpus_per_trial": 0.25})),
    ("cli-bad-storage", ["study", "run", "{spec}", "--storage", "mysql://u@h/db"], lambda w: GOOD),
    ("cli-unknown-sampler", ["study", "run", "{spec}", "--sampler", "cmaes"], lambda w: GOOD),
    ("cli-negative-seed", ["study", "run", "{spec}", "--seed", "-1"], lambda w: GOOD),
    ("results-other-sampler", ["study", "run", "{spec}", "--results-dir", "{world}/results", "--sampler", "nsga2"],
     lambda w: GOOD),
    ("cli-zero-in-flight", ["study", "resume", "{world}/results/bad-inputs", "--max-in-flight", "0"], None),
    ("cli-bad-format", ["study", "status", "{world}/results/bad-inputs", "--format", "xml"], None),
    ("cli-export-pick-and-trial", ["export", "{world}/results/bad-inputs", "--pick", "knee", "--trial", "1"], None),
    # issue #16: hostile definitions (validation before any work)
    ("yaml-duplicate-key", ["config", "validate", "{spec}"], lambda w: "name: a\nname: b\nsearch_space: {}\n"),
    ("yaml-too-deep", ["config", "validate", "{spec}"], lambda w: "name: " + "[" * 2000 + "]" * 2000 + "\n"),
    ("yaml-too-large", ["config", "validate", "{spec}"], lambda w: yaml.safe_dump(GOOD) + "#" * 2_000_000 + "\n"),
    ("step-infinite", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: _with(name="inf-step", search_space={"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6,
                                                                       "step": float("inf")}})),
    ("step-not-dividing", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"exit_threshold": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.25}})),
    ("step-larger-than-range", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"vmac_lanes": {"type": "int", "low": 4, "high": 16, "step": 32}})),
    ("n-trials-bool", ["config", "validate", "{spec}"], lambda w: _with(n_trials=True)),
    ("dvfs-as-numbers", ["config", "validate", "{spec}"],
     lambda w: _with(search_space={"dvfs": {"type": "categorical", "choices": [0, 1]}})),
    # issue #15: inert or degenerate knobs, number formats that fail at run time
    ("gpus-per-trial", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: _with(name="gpus", executor={"kind": "ray", "gpus_per_trial": 1})),
    ("exit-threshold-on-regression", ["config", "validate", "{spec}"], lambda w: _with(task="stsb")),
    ("embedding-pruning-after-last-step", ["config", "validate", "{spec}"],
     lambda w: _with(fixed={"train_embedding_pruning": 0.3, "train_epochs": 1.0})),
    ("edgebert-hw-format-6-bits", ["config", "validate", "{spec}"],
     lambda w: _with(fixed={"weight_format": "edgebert_hw", "weight_bits": 6})),
    ("activation-bits-too-few", ["config", "validate", "{spec}"], lambda w: _with(fixed={"activation_bits": 2})),
    # issue #16: damaged results folders
    ("results-config-yaml-error", ["study", "status", "{world}/results/damaged-yaml"],
     lambda w: _damaged_copy(w, "damaged-yaml", b"name: [unclosed\n")),
    ("results-config-not-utf8", ["pareto", "{world}/results/damaged-utf8"],
     lambda w: _damaged_copy(w, "damaged-utf8", b"name: \xff\xfe\n")),
    ("results-storage-edited", ["study", "resume", "{world}/results/storage-edited"],
     lambda w: _damaged_copy(w, "storage-edited", yaml.safe_dump(
         {**parse_study_config(GOOD, source="good").model_dump(mode="json"),
          "storage": {"kind": "sqlite", "url": f"sqlite:///{w}/elsewhere.db"}}).encode())),
    ("validate-model-path-missing", ["config", "validate", "{spec}"],
     lambda w: _nested("model.name", "/nonexistent/minilm")),
    ("validate-offline-hub-model", ["config", "validate", "{spec}"],  # HF_HUB_OFFLINE=1 in the test
     lambda w: _nested("model.name", "google/bert_uncached_for_dse_tests")),
    ("run-offline-hub-model", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: {**_nested("model.name", "google/bert_uncached_for_dse_tests"), "name": "offline-hub"}),
    ("validate-glue-dir-missing", ["config", "validate", "{spec}"], _glue("does-not-exist")),
    ("run-glue-dev-truncated", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: {**_glue("dev-truncated")(w), "name": "glue-truncated"}),
    ("run-glue-train-garbage", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: {**_glue("train-garbage")(w), "name": "glue-garbage"}),
    ("run-glue-dev-pickle", ["study", "run", "{spec}", "--results-dir", "{world}/results"],
     lambda w: {**_glue("dev-pickle")(w), "name": "glue-pickle"}),
    ("trace-bogus-envm-cell", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--envm-cell", "bogus"],
     lambda w: _trace(w, b"tokens,entropy_1\n5,0.1\n")),
    ("trace-binary-csv", ["trace", "{world}/trace.csv", "--threshold", "0.2"],
     lambda w: _trace(w, b"tokens,entropy_1\n5,\x00\x01\x02\n")),  # NUL bytes: csv.Error
    ("trace-is-a-folder", ["trace", "{world}/glue", "--threshold", "0.2"], None),
    # issue #15: dse trace's options (profile file, compression, held-out DVFS fit)
    ("trace-missing-file", ["trace", "{world}/no-such-trace.csv", "--threshold", "0.2"], None),
    ("trace-not-utf8", ["trace", "{world}/trace.csv", "--threshold", "0.2"],
     lambda w: _trace(w, b"tokens,entropy_1\n5,\xff\xfe\n")),
    ("trace-no-threshold", ["trace", "{world}/trace.csv"], lambda w: _trace(w, TRACE6)),
    ("trace-threshold-not-a-number", ["trace", "{world}/trace.csv", "--threshold", "low"],
     lambda w: _trace(w, TRACE6)),
    ("trace-threshold-negative", ["trace", "{world}/trace.csv", "--threshold", "0.2,-0.1,0.2,0.2,0.2,0.2"],
     lambda w: _trace(w, TRACE6)),
    ("trace-threshold-count", ["trace", "{world}/trace.csv", "--threshold", "0.2,0.1"], lambda w: _trace(w, TRACE6)),
    ("trace-fit-fraction-zero", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--fit-fraction", "0"],
     lambda w: _trace(w, TRACE6)),
    ("trace-fit-fraction-one", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--fit-fraction", "1"],
     lambda w: _trace(w, TRACE6)),
    ("trace-fit-fraction-and-fit-trace", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--fit-fraction",
                                          "0.5", "--fit-trace", "{world}/trace.csv"], lambda w: _trace(w, TRACE6)),
    ("trace-fit-trace-missing", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--fit-trace",
                                 "{world}/no-such-fit.csv"], lambda w: _trace(w, TRACE6)),
    ("trace-fit-trace-folder", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--fit-trace", "{world}/glue"],
     lambda w: _trace(w, TRACE6)),
    ("trace-fit-trace-binary", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--fit-trace",
                                "{world}/trace-files/fit.csv"],
     lambda w: _trace(w, TRACE6, **{"fit.csv": b"\x00\x01\xff\xfe\x80"})),
    ("trace-fit-trace-is-the-trace", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--latency-target-ms",
                                      "1", "--fit-trace", "{world}/trace.csv"], lambda w: _trace(w, TRACE6)),
    ("trace-one-sentence", ["trace", "{world}/trace.csv", "--threshold", "0.2"],
     lambda w: _trace(w, TRACE6.split(b"\n", 2)[0] + b"\n" + TRACE6.split(b"\n", 2)[1] + b"\n")),
    ("trace-bad-encoder-density", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--encoder-density", "1.5"],
     lambda w: _trace(w, TRACE6)),
    ("trace-bad-weight-format", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--weight-bits", "4",
                                 "--weight-exp-bits", "4"], lambda w: _trace(w, TRACE6)),
    ("trace-bad-vector-size", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--vector-size", "0"],
     lambda w: _trace(w, TRACE6)),
    ("trace-profile-missing", ["trace", "{world}/trace.csv", "--profile", "{world}/no-such-profile.yaml"],
     lambda w: _trace(w, TRACE6)),
    ("trace-profile-folder", ["trace", "{world}/trace.csv", "--profile", "{world}/glue"], lambda w: _trace(w, TRACE6)),
    ("trace-profile-binary", ["trace", "{world}/trace.csv", "--profile", "{world}/trace-files/p.yaml"],
     lambda w: _trace(w, TRACE6, **{"p.yaml": b"\xff\xfe\x00\x01"})),
    ("trace-profile-unknown-key", ["trace", "{world}/trace.csv", "--profile", "{world}/trace-files/p.yaml"],
     lambda w: _trace(w, TRACE6, **{"p.yaml": b"threshold: 0.2\nexit_threshold: 0.3\n"})),
    ("trace-profile-unknown-envm-cell", ["trace", "{world}/trace.csv", "--profile", "{world}/trace-files/p.yaml"],
     lambda w: _trace(w, TRACE6, **{"p.yaml": b"threshold: 0.2\nenvm_cell: flash\n"})),
    ("trace-profile-fit-fraction", ["trace", "{world}/trace.csv", "--profile", "{world}/trace-files/p.yaml"],
     lambda w: _trace(w, TRACE6, **{"p.yaml": b"{\"threshold\": 0.2, \"fit_fraction\": 1.5}"})),  # JSON
    ("trace-model-config-binary", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--model",
                                   "{world}/trace-files/config.json"],
     lambda w: _trace(w, TRACE6, **{"config.json": b"\x00\x01\xff\xfe"})),
    ("trace-model-not-bert", ["trace", "{world}/trace.csv", "--threshold", "0.2", "--model",
                              "{world}/trace-files/config.json"],
     lambda w: _trace(w, TRACE6, **{"config.json": b'{"model_type": "gpt2"}'})),
    ("pareto-plots-not-writable", ["pareto", "{world}/results/plots-blocked"],
     lambda w: _damaged_copy(w, "plots-blocked", None, plots=b"a file where plots/ goes")),
    ("report-plots-not-writable", ["report", "{world}/results/plots-blocked-2"],
     lambda w: _damaged_copy(w, "plots-blocked-2", None, plots=b"a file where plots/ goes")),
    ("export-into-a-non-empty-folder", ["export", "{world}/results/bad-inputs", "--trial", "0", "-o", "{world}/glue"],
     None),
]


# What each case's one line must say ({world}: the test's folder), so that a case passes only
# when it reaches the check it names (not an earlier one, e.g. a missing GLUE folder).
EXPECTED: dict[str, str] = {
    "yaml-syntax": "yaml-syntax.yaml: YAML syntax error at line 2",
    "yaml-bad-mapping": "YAML syntax error at line 1, column 8: mapping values are not allowed",
    "yaml-tab-indent": "found character '\\t' that cannot start any token",
    "yaml-not-mapping": "yaml-not-mapping.yaml: a study definition must be a YAML mapping",
    "yaml-empty": "yaml-empty.yaml: a study definition must be a YAML mapping",
    "yaml-not-utf8": "yaml-not-utf8.yaml: cannot read (UnicodeDecodeError)",
    "yaml-python-tag": "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply",
    "unknown-key": "unknown-key.yaml: trials: unknown key",
    "unknown-nested-key": "model.layers: unknown key",
    "wrong-type": "n_trials: Input should be a valid integer",
    "zero-trials": "n_trials: Input should be greater than or equal to 1",
    "bounds-reversed-float": "search_space.encoder_pruning.float: low (0.5) is greater than high (0.1)",
    "bounds-reversed-int": "search_space.vmac_lanes.int: low (64) is greater than high (8)",
    "bounds-illegal": "encoder_pruning: 1.5 is outside the legal range",
    "empty-search-space": "search_space: Dictionary should have at least 1 item",
    "unknown-knob": "search_space: unknown knob 'warp_drive'",
    "int-knob-as-float": "vmac_lanes takes integers; use type: int",
    "log-from-zero": "search_space.sram_kb.float: log scale needs low > 0",
    "unknown-envm-cell": "envm_cell: 'dram_cell' is not one of",
    "unknown-envm-cell-fixed": "envm_cell: 'core_memory' is not one of",
    "unknown-task": "unknown GLUE task 'sst3'",
    "unknown-objective": "unknown objective 'happiness'",
    "duplicate-objective": "objectives are listed twice",
    "unknown-sampler": "sampler.name: Input should be 'tpe'",
    "unknown-executor": "executor.kind: Input should be 'inline' or 'ray'",
    "postgres-without-url": "postgresql storage needs a url",
    "future-version": "version 2 is not supported",
    "bad-study-name": "name: String should match pattern",
    "missing-file": "{world}/specs/nope.yaml: no such file",
    "file-is-folder": "{world}/specs: cannot read (IsADirectoryError)",
    "glue-dir-missing": "GLUE folder '{world}/glue/does-not-exist' (from glue_dir in the study definition) does not exist",
    "glue-task-missing": "GLUE task folder '{world}/glue/no-task/SST-2' not found",
    "glue-file-missing": "missing GLUE file {world}/glue/missing-dev/SST-2/dev.tsv",
    "glue-file-unreadable": "GLUE file {world}/glue/unreadable/SST-2/train.tsv",
    "glue-file-no-permission": "cannot read GLUE file {world}/glue/no-permission/SST-2/",
    "glue-row-malformed": "malformed row in {world}/glue/bad-row/SST-2/dev.tsv line 2",
    "glue-label-malformed": "bad label 'seven' in {world}/glue/bad-label/SST-2/dev.tsv line 2",
    "glue-no-rows": "GLUE file {world}/glue/header-only/SST-2/dev.tsv has a header but no data rows",
    "glue-empty-file": "GLUE file {world}/glue/empty-file/SST-2/train.tsv is empty",
    "glue-not-utf8": "GLUE file {world}/glue/not-utf8/SST-2/dev.tsv is not valid UTF-8",
    "multitask-task-without-train": "missing GLUE file {world}/glue/two-tasks/QNLI/train.tsv",
    "multitask-run-task-without-train": "missing GLUE file {world}/glue/two-tasks/QNLI/train.tsv",
    "multitask-scoped-hardware-knob": "'vmac_lanes' cannot differ between tasks",
    "model-path-missing": "model path /nonexistent/minilm does not exist",
    "model-folder-no-config": "model folder {world}/model-no-config has no config.json",
    "results-dir-under-a-file": "cannot write the results folder {world}/results/plain-file/x/bad-inputs",
    "results-of-another-study": "{world}/results/bad-inputs holds a different study definition",
    "results-other-storage": "{world}/results/bad-inputs keeps its trials in journal:",
    "resume-not-a-study": "{world}/glue is not a study folder (no config.yaml)",
    "status-not-a-study": "{world}/specs is not a study folder (no config.yaml)",
    "pareto-missing-folder": "{world}/results/nothing-here is not a study folder",
    "cli-unknown-command": "No such command 'frobnicate'",
    "cli-unknown-option": "No such option: --colour",
    "cli-missing-argument": "Missing argument 'space'",
    "cli-bad-int": "Invalid value for '--n-trials': Input should be a valid integer",
    "cli-zero-trials": "Invalid value for '--n-trials': Input should be greater than or equal to 1",
    "cli-bad-executor": "Invalid value for '--executor'",
    "cli-bad-device": "device 'gpu': use auto, cpu, cuda or cuda:N",
    "device-cuda-without-gpu": "device 'cuda:0': no CUDA GPU is visible to torch here",
    "device-bad-in-definition": "device: String should match pattern",
    "gpus-per-trial-inline": "executor.gpus_per_trial=0.25 is a Ray request; the inline executor runs",
    "cli-bad-storage": "--storage mysql://u@h/db: expected journal, sqlite",
    "cli-unknown-sampler": "unknown sampler 'cmaes'",
    "cli-negative-seed": "Invalid value for '--seed'",
    "results-other-sampler": "was run with sampler tpe (seed 0), not nsga2",
    "cli-zero-in-flight": "Invalid value for '--max-in-flight'",
    "cli-bad-format": "Invalid value for '--format'",
    "cli-export-pick-and-trial": "give exactly one of --pick or --trial",
    "yaml-duplicate-key": "duplicate key 'name'",
    "yaml-too-deep": "nested deeper than 32 levels",
    "yaml-too-large": "is too large for a study definition",
    "step-infinite": "step must be a finite number, got inf",
    "step-not-dividing": "step 0.25 does not divide the range 0.0..0.6",
    "step-larger-than-range": "step 32 does not divide the range 4..16",
    "n-trials-bool": "n_trials: Input should be a valid integer",
    "dvfs-as-numbers": "dvfs: 0 is not one of False, True",
    "gpus-per-trial": "executor.gpus_per_trial=1 but no CUDA GPU is visible here (torch sees none)",
    "exit-threshold-on-regression": "exit_threshold: stsb is a regression task",
    "embedding-pruning-after-last-step": "train_embedding_pruning > 0 with train_epochs <= 1 can be sampled",
    "edgebert-hw-format-6-bits": "edgebert_hw is the accelerator's AdaptivFloat<8,3> only",
    "activation-bits-too-few": "activation_bits: 2 is outside the legal range [4.0, 16.0]",
    "results-config-yaml-error": "{world}/results/damaged-yaml/config.yaml: YAML syntax error",
    "results-config-not-utf8": "{world}/results/damaged-utf8/config.yaml: cannot read (UnicodeDecodeError)",
    "results-storage-edited": "{world}/results/storage-edited/config.yaml: storage was changed to sqlite:",
    "validate-model-path-missing": "model path /nonexistent/minilm does not exist",
    "validate-offline-hub-model": "model 'google/bert_uncached_for_dse_tests' is neither a local folder nor in the",
    "run-offline-hub-model": "model 'google/bert_uncached_for_dse_tests' is neither a local folder nor in the",
    "validate-glue-dir-missing": "GLUE folder '{world}/glue/does-not-exist' (from glue_dir in the study definition)",
    "run-glue-dev-truncated": "malformed row in {world}/glue/dev-truncated/SST-2/dev.tsv line 3",
    "run-glue-train-garbage": "GLUE file {world}/glue/train-garbage/SST-2/train.tsv is not valid UTF-8",
    "run-glue-dev-pickle": "GLUE file {world}/glue/dev-pickle/SST-2/dev.tsv is not valid UTF-8",
    "trace-bogus-envm-cell": "envm_cell: unknown eNVM cell 'bogus'; expected one of sram,",
    "trace-binary-csv": "entropy trace {world}/trace.csv has a non-numeric cell",
    "trace-is-a-folder": "{world}/glue is a folder; give the CSV trace file",
    "trace-missing-file": "{world}/no-such-trace.csv: no such file",
    "trace-not-utf8": "{world}/trace.csv: not a text CSV file (binary or not UTF-8)",
    "trace-no-threshold": "no threshold: give it (e.g. --threshold) or put it in the profile file",
    "trace-threshold-not-a-number": "Invalid value for '--threshold': expected a number of nats",
    "trace-threshold-negative": "threshold: thresholds must be finite and >= 0 nats, got -0.1",
    "trace-threshold-count": "threshold has 2 values but all-MiniLM-L6-v2 has 6 layers",
    "trace-fit-fraction-zero": "fit_fraction: Input should be greater than 0",
    "trace-fit-fraction-one": "fit_fraction: Input should be less than 1",
    "trace-fit-fraction-and-fit-trace": "so fit_fraction and fit_seed would do nothing; give one or the other",
    "trace-fit-trace-missing": "{world}/no-such-fit.csv: no such file",
    "trace-fit-trace-folder": "{world}/glue is a folder; give the CSV trace file",
    "trace-fit-trace-binary": "{world}/trace-files/fit.csv: not a text CSV file (binary or not UTF-8)",
    "trace-fit-trace-is-the-trace": "fit_trace {world}/trace.csv is the trace being scored",
    "trace-one-sentence": "{world}/trace.csv: 1 sentence(s) cannot be split",
    "trace-bad-encoder-density": "encoder_density: Input should be less than or equal to 1",
    "trace-bad-weight-format": "weight_exp_bits (4) must be < weight_bits (4)",
    "trace-bad-vector-size": "vector_size: Input should be greater than or equal to 1",
    "trace-profile-missing": "{world}/no-such-profile.yaml: no such file",
    "trace-profile-folder": "{world}/glue is a folder; give the trace profile file (YAML or JSON)",
    "trace-profile-binary": "{world}/trace-files/p.yaml: cannot read (UnicodeDecodeError)",
    "trace-profile-unknown-key": "{world}/trace-files/p.yaml: exit_threshold: unknown key",
    "trace-profile-unknown-envm-cell": "{world}/trace-files/p.yaml: envm_cell: unknown eNVM cell 'flash'",
    "trace-profile-fit-fraction": "{world}/trace-files/p.yaml: fit_fraction: Input should be less than 1",
    "trace-model-config-binary": "cannot load model config from '{world}/trace-files/config.json'",
    "trace-model-not-bert": "{world}/trace-files/config.json: model type 'gpt2' is not BERT, ALBERT or MobileBERT",
    "pareto-plots-not-writable": "cannot write the study outputs into {world}/results/plots-blocked/plots",
    "report-plots-not-writable": "cannot write the report into {world}/results/plots-blocked-2/plots",
    "export-into-a-non-empty-folder": "{world}/glue is not empty and not an export of trial 0",
}


TRACE6 = b"tokens,entropy_1,entropy_2,entropy_3,entropy_4,entropy_5,entropy_6\n" \
         b"5,0.5,0.4,0.3,0.2,0.1,0.0\n9,0.1,0.1,0.1,0.1,0.1,0.1\n12,0.6,0.6,0.6,0.6,0.6,0.6\n"  # MiniLM: 6 layers


def _trace(world: Path, data: bytes, **files: bytes) -> dict:
    """world/trace.csv, and ``files`` in world/trace-files/ (a profile, a fit trace, a model config)."""
    (world / "trace.csv").write_bytes(data)
    for name, content in files.items():
        (world / "trace-files").mkdir(exist_ok=True)
        (world / "trace-files" / name).write_bytes(content)
    return GOOD


def _damaged_copy(world: Path, name: str, config_yaml: bytes | None, *, plots: bytes | None = None) -> dict:
    """A copy of the world's results folder with config.yaml replaced and/or a file where plots/
    goes (a folder we cannot write into, also for root); the case's spec is GOOD."""
    import shutil

    target = world / "results" / name
    if not target.exists():
        shutil.copytree(world / "results" / GOOD["name"], target)
    if config_yaml is not None:
        (target / "config.yaml").write_bytes(config_yaml)
    if plots is not None:
        shutil.rmtree(target / "plots", ignore_errors=True)
        (target / "plots").write_bytes(plots)
    return GOOD


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(("name", "argv", "make"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(world: Path, name: str, argv: list[str],
                                     make: Callable[[Path], dict | str | bytes] | None,
                                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "glue-file-no-permission" and os.geteuid() == 0:
        pytest.skip("root reads any file (glue-file-unreadable covers this for root)")
    monkeypatch.setenv("DSE_GLUE_DIR", str(world / "glue" / "does-not-exist"))  # never the real data
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never the network
    data = make(world) if make is not None else None
    spec = _spec(world, name, data) if data is not None else ""
    args = [a.replace("{spec}", spec).replace("{world}", str(world)) for a in argv]
    study_folder = world / "results" / GOOD["name"]
    before = _tree_hash(study_folder)
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    assert code != 0, out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert EXPECTED[name].replace("{world}", str(world)) in lines[0]
    assert "Traceback" not in out + err
    assert _tree_hash(study_folder) == before  # existing results untouched
    if argv[:2] == ["study", "run"] and "--results-dir" in args and isinstance(data, dict):
        study = data.get("name", GOOD["name"])  # a failed run leaves no folder to refuse the corrected one
        assert study == GOOD["name"] or not (Path(args[args.index("--results-dir") + 1]) / study).exists(), study
    assert not (world / "elsewhere.db").exists()  # an edited storage: never a new database elsewhere


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert sorted(EXPECTED) == sorted(c[0] for c in CASES)  # every case says what it must print


def test_status_of_a_folder_from_an_incompatible_version(world: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(world / "results" / GOOD["name"], folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**config, "version": 7}))
    before = _tree_hash(folder)
    assert main(["study", "status", str(folder)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "version 7 is not supported" in err
    assert _tree_hash(folder) == before


def test_python_tags_in_yaml_are_never_executed(world: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = _spec(world, "tag", f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main(["config", "validate", spec]) != 0
    assert not marker.exists()
    assert os.environ.get("DSE_GLUE_DIR") != str(world)  # the table's monkeypatch did not leak


@pytest.mark.parametrize("broken", [{"model": {"name": "/nonexistent/minilm"}},
                                    {"data": {"glue_dir": "/nonexistent/glue"}}], ids=["model", "glue"])
def test_a_run_that_fails_on_a_path_leaves_no_folder_to_refuse_the_fix(
        world: Path, tmp_path: Path, broken: dict, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(world, "path-then-fixed", {**_with(name="path-then-fixed"), **broken})
    assert main(["study", "run", spec, "--results-dir", str(tmp_path)]) != 0
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "path-then-fixed").exists()  # so the corrected definition is not refused
