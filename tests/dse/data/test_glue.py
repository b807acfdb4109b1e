"""Tests of the GLUE data layer (dse.data.glue) on the staged GLUE files and on synthetic broken folders.

Staged data: GLUE (Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
Understanding", ICLR 2019) as staged in shared/data/glue beside the repository (or $DSE_GLUE_DIR if set); the
expected counts below are those recorded with the staged files' provenance in shared/data/SOURCES.md.

QQP decision: the one malformed row of train_subset.tsv (id 133273, 5 fields, label glued to question2 by a
space) is repaired by splitting off the label, so QQP train has 23,497 rows. SOURCES.md's label split
"0: 14,749 / 1: 8,747" counts only the 23,496 well-formed rows; the repaired row has label 0, so the loaded
split is 14,750 / 8,747.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import numpy as np
import pytest

import dse.data.glue as glue_mod
from dse.config import TASKS
from dse.data import available_splits, load_glue, resolve_glue_dir
from dse.errors import DataError

_DEFAULT_GLUE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "glue"
GLUE_DIR = Path(os.environ.get("DSE_GLUE_DIR") or _DEFAULT_GLUE)

needs_glue = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"staged GLUE data not found at {GLUE_DIR}")

EXPECTED_ROWS = {
    ("sst2", "train"): 67_349,
    ("sst2", "dev"): 872,
    ("mrpc", "train"): 3_668,
    ("mrpc", "dev"): 408,
    ("rte", "train"): 2_490,
    ("rte", "dev"): 277,
    ("cola", "train"): 8_551,
    ("cola", "dev"): 1_043,
    ("stsb", "train"): 5_749,
    ("stsb", "dev"): 1_500,
    ("wnli", "train"): 635,
    ("wnli", "dev"): 71,
    ("qnli", "dev"): 5_463,
    ("mnli", "dev"): 9_815,
    ("qqp", "train"): 23_497,  # incl. the repaired malformed row
}

EXPECTED_SPLITS = {
    "sst2": ["train", "dev"],
    "mrpc": ["train", "dev"],
    "rte": ["train", "dev"],
    "cola": ["train", "dev"],
    "stsb": ["train", "dev"],
    "wnli": ["train", "dev"],
    "qnli": ["dev"],
    "mnli": ["dev"],
    "qqp": ["train"],
}


@pytest.fixture(scope="module")
def loaded():
    """Load every staged split once per module (about 1-2 s in all)."""
    if not GLUE_DIR.is_dir():
        pytest.skip(f"staged GLUE data not found at {GLUE_DIR}")
    return {key: load_glue(key[0], key[1], glue_dir=GLUE_DIR) for key in EXPECTED_ROWS}


def _col(ds, name: str) -> list:
    """A whole column as a Python list (fast: straight from the Arrow table)."""
    return ds.data.column(name).to_pylist()


def _counts(ds) -> dict:
    return dict(collections.Counter(_col(ds, "label")))


# ---------------------------------------------------------------------------------------------------------------
# Staged data
# ---------------------------------------------------------------------------------------------------------------


@needs_glue
@pytest.mark.parametrize("task", sorted(EXPECTED_SPLITS))
def test_available_splits(task):
    assert available_splits(task, GLUE_DIR) == EXPECTED_SPLITS[task]


@needs_glue
@pytest.mark.parametrize("key", sorted(EXPECTED_ROWS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_row_counts_and_schema(loaded, key):
    ds = loaded[key]
    spec = TASKS[key[0]]
    assert ds.num_rows == EXPECTED_ROWS[key]
    assert ds.column_names == ["text_a", "text_b", "label", "idx"]
    assert ds.features["text_a"].dtype == "string"
    assert ds.features["text_b"].dtype == "string"
    assert ds.features["idx"].dtype == "int64"
    assert ds.features["label"].dtype == ("float32" if spec.is_regression else "int64")
    idx = np.asarray(_col(ds, "idx"))
    assert np.array_equal(idx, np.arange(ds.num_rows))
    text_a = _col(ds, "text_a")
    text_b = _col(ds, "text_b")
    assert all(isinstance(t, str) and t for t in text_a)
    if spec.is_pair:
        assert all(isinstance(t, str) for t in text_b)
    else:
        assert set(text_b) == {""}
    labels = np.asarray(_col(ds, "label"))
    if spec.is_regression:
        assert labels.min() >= 0.0 and labels.max() <= 5.0
    else:
        assert set(np.unique(labels)) <= set(range(spec.num_labels))


@needs_glue
def test_label_distributions(loaded):
    assert _counts(loaded["sst2", "train"]) == {1: 37_569, 0: 29_780}
    assert _counts(loaded["sst2", "dev"]) == {1: 444, 0: 428}
    assert _counts(loaded["mrpc", "train"]) == {1: 2_474, 0: 1_194}
    assert _counts(loaded["cola", "dev"]) == {1: 721, 0: 322}
    # entailment = 0, not_entailment = 1
    assert _counts(loaded["qnli", "dev"]) == {0: 2_702, 1: 2_761}
    assert _counts(loaded["rte", "train"]) == {0: 1_249, 1: 1_241}
    # entailment 0, neutral 1, contradiction 2
    assert _counts(loaded["mnli", "dev"]) == {0: 3_479, 1: 3_123, 2: 3_213}
    # see the module docstring: 14,749 well-formed + the repaired row (label 0)
    assert _counts(loaded["qqp", "train"]) == {0: 14_750, 1: 8_747}


@needs_glue
def test_first_rows(loaded):
    assert loaded["sst2", "train"][0] == {
        "text_a": "hide new secretions from the parental units ",  # trailing space kept, as in GLUE/HF
        "text_b": "",
        "label": 0,
        "idx": 0,
    }
    row = loaded["mrpc", "train"][0]  # the BOM header line is not a data row
    assert row["text_a"].startswith("Amrozi accused his brother")
    assert row["text_b"].startswith("Referring to him as only")
    assert row["label"] == 1
    assert loaded["cola", "dev"][0]["text_a"] == "The sailors rode the breeze clear of the rocks."
    assert loaded["cola", "dev"][0]["label"] == 1
    # last CoLA dev row (file has no final newline)
    assert loaded["cola", "dev"][-1]["text_a"].endswith("about himself.")
    row = loaded["mnli", "dev"][0]
    assert row["text_a"] == "The new rights are nice enough"
    assert row["text_b"] == "Everyone really likes the newest benefits "
    assert row["label"] == 1  # neutral
    row = loaded["stsb", "dev"][0]
    assert row["text_a"] == "A man with a hard hat is dancing."
    assert row["label"] == pytest.approx(5.0)
    assert loaded["stsb", "train"][1]["label"] == pytest.approx(3.8)
    row = loaded["rte", "dev"][0]
    assert row["text_b"] == "Christopher Reeve had an accident."
    assert row["label"] == 1  # not_entailment
    assert loaded["wnli", "train"][0]["label"] == 1  # "1" = entailment = HF id 1


@needs_glue
def test_qqp_malformed_row_is_repaired(loaded):
    row = loaded["qqp", "train"][0]
    assert row["text_a"] == "How is the life of a math student? Could you describe your own experiences?"
    assert row["text_b"] == "Which level of prepration is enough for the exam jlpt5?"
    assert row["label"] == 0
    row = loaded["qqp", "train"][1]
    assert row["text_a"] == "What causes stool color to change to yellow?"
    assert row["label"] == 0


@needs_glue
def test_missing_offline_splits_name_available_ones():
    with pytest.raises(DataError, match=r"QNLI.*train\.tsv.*available splits: dev"):
        load_glue("qnli", "train", glue_dir=GLUE_DIR)
    with pytest.raises(DataError, match=r"available splits: dev"):
        load_glue("mnli", "train", glue_dir=GLUE_DIR)
    with pytest.raises(DataError, match=r"QQP.*dev\.tsv.*available splits: train"):
        load_glue("qqp", "dev", glue_dir=GLUE_DIR)


@needs_glue
def test_split_names():
    assert load_glue("rte", "validation", glue_dir=GLUE_DIR).num_rows == 277
    with pytest.raises(DataError, match="unknown GLUE split 'test'"):
        load_glue("rte", "test", glue_dir=GLUE_DIR)


@needs_glue
def test_sst2_train_loads_fast():
    load_glue("wnli", "dev", glue_dir=GLUE_DIR)  # warm imports
    start = time.perf_counter()
    ds = load_glue("sst2", "train", glue_dir=GLUE_DIR)
    elapsed = time.perf_counter() - start
    assert ds.num_rows == 67_349
    assert elapsed < 5.0, f"SST-2 train took {elapsed:.2f} s"


# ---------------------------------------------------------------------------------------------------------------
# Synthetic folders
# ---------------------------------------------------------------------------------------------------------------


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_synthetic_ok_with_blank_lines_and_lowercase_folder(tmp_path):
    _write(tmp_path, "sst2/train.tsv", "sentence\tlabel\na b\t1\n\nc d\t0\n\n")
    ds = load_glue("SST-2", "train", glue_dir=tmp_path)
    assert _col(ds, "text_a") == ["a b", "c d"]
    assert _col(ds, "label") == [1, 0]
    # class names are accepted as labels too
    _write(tmp_path, "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tp\th\tnot_entailment\n1\tp\th\t0\n")
    assert _col(load_glue("rte", "dev", glue_dir=str(tmp_path)), "label") == [1, 0]


def test_wrong_field_count(tmp_path):
    path = _write(
        tmp_path,
        "RTE/train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\tnot_entailment\n",
    )
    with pytest.raises(DataError) as exc:
        load_glue("rte", "train", glue_dir=tmp_path)
    msg = _one_line_error(exc)
    assert str(path) in msg and "line 3" in msg and "expected 4" in msg and "got 3" in msg


def test_wrong_field_count_headerless(tmp_path):
    path = _write(tmp_path, "CoLA/train.tsv", "gj04\t1\t\tGood.\ngj04\t0\t*\n")
    with pytest.raises(DataError, match="line 2") as exc:
        load_glue("cola", "train", glue_dir=tmp_path)
    assert str(path) in _one_line_error(exc)


def test_qqp_five_fields_without_glued_label_is_malformed(tmp_path):
    path = _write(tmp_path, "QQP/train_subset.tsv", "1\t2\t3\tq1\tq2 0\n4\t5\t6\tq3\tq4 maybe\n")
    with pytest.raises(DataError, match="line 2.*expected 6") as exc:
        load_glue("qqp", "train", glue_dir=tmp_path)
    assert str(path) in _one_line_error(exc)


def test_qqp_official_layout_with_header(tmp_path):
    _write(
        tmp_path,
        "QQP/dev.tsv",
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\tq1?\tq2?\t1\n",
    )
    ds = load_glue("qqp", "dev", glue_dir=tmp_path)
    assert ds[0] == {"text_a": "q1?", "text_b": "q2?", "label": 1, "idx": 0}


@pytest.mark.parametrize(
    "rel,text,label",
    [
        ("SST-2/train.tsv", "sentence\tlabel\ngood\t1\nodd\t2\n", "'2'"),
        ("RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n", "'neutral'"),
        ("STS-B/train.tsv", "h\th\th\th\th\th\th\tsentence1\tsentence2\tscore\n" + "x\t" * 7 + "a\tb\thigh\n", "'high'"),
        ("MNLI/dev_matched.jsonl", '{"premise": "p", "hypothesis": "h", "label": "maybe"}\n', "'maybe'"),
    ],
)
def test_bad_label(tmp_path, rel, text, label):
    path = _write(tmp_path, rel, text)
    task = rel.split("/")[0]
    split = "dev" if "dev" in rel else "train"
    with pytest.raises(DataError) as exc:
        load_glue(task, split, glue_dir=tmp_path)
    msg = _one_line_error(exc)
    assert str(path) in msg and "bad label" in msg and label in msg


def test_malformed_jsonl(tmp_path):
    path = _write(
        tmp_path,
        "MNLI/dev_matched.jsonl",
        '{"premise": "p", "hypothesis": "h", "label": "neutral"}\n{"premise": "p", \n',
    )
    with pytest.raises(DataError, match="line 2.*invalid JSON") as exc:
        load_glue("mnli", "dev", glue_dir=tmp_path)
    assert str(path) in _one_line_error(exc)


@pytest.mark.parametrize(
    "rel,text,expected",
    [
        ("SST-2/dev.tsv", "", "is empty"),
        ("SST-2/dev.tsv", "\n\n", "is empty"),
        ("CoLA/dev.tsv", "", "is empty"),
        ("MNLI/dev_matched.jsonl", "", "is empty"),
        ("SST-2/dev.tsv", "sentence\tlabel\n", "no data rows"),
    ],
)
def test_empty_file(tmp_path, rel, text, expected):
    path = _write(tmp_path, rel, text)
    with pytest.raises(DataError, match=expected) as exc:
        load_glue(rel.split("/")[0], "dev", glue_dir=tmp_path)
    assert str(path) in _one_line_error(exc)


def test_missing_task_folder(tmp_path):
    _write(tmp_path, "SST-2/train.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(DataError, match="task folder") as exc:
        load_glue("mrpc", "train", glue_dir=tmp_path)
    assert str(tmp_path / "MRPC") in _one_line_error(exc)
    with pytest.raises(DataError, match="task folder"):
        available_splits("mrpc", tmp_path)


def test_missing_glue_dir(tmp_path):
    with pytest.raises(DataError) as exc:
        load_glue("sst2", "train", glue_dir=tmp_path / "nope")
    assert str(tmp_path / "nope") in _one_line_error(exc)


def test_missing_split_file(tmp_path):
    _write(tmp_path, "SST-2/train.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(DataError, match="available splits: train") as exc:
        load_glue("sst2", "dev", glue_dir=tmp_path)
    assert str(tmp_path / "SST-2" / "dev.tsv") in _one_line_error(exc)
    (tmp_path / "WNLI").mkdir()
    with pytest.raises(DataError, match="available splits: none"):
        load_glue("wnli", "dev", glue_dir=tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read chmod-000 files")
def test_unreadable_file_chmod(tmp_path):
    path = _write(tmp_path, "SST-2/train.tsv", "sentence\tlabel\na\t1\n")
    path.chmod(0)
    try:
        with pytest.raises(DataError, match="cannot read") as exc:
            load_glue("sst2", "train", glue_dir=tmp_path)
        assert str(path) in _one_line_error(exc)
    finally:
        path.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    """Same as the chmod test, but also runs as root: opening raises PermissionError."""
    path = _write(tmp_path, "SST-2/train.tsv", "sentence\tlabel\na\t1\n")

    def deny(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(glue_mod, "open", deny, raising=False)
    with pytest.raises(DataError, match="cannot read GLUE file .*Permission denied") as exc:
        load_glue("sst2", "train", glue_dir=tmp_path)
    assert str(path) in _one_line_error(exc)


def test_not_utf8(tmp_path):
    path = tmp_path / "SST-2" / "train.tsv"
    path.parent.mkdir()
    path.write_bytes(b"sentence\tlabel\n\xff\xfe bad\t1\n")
    with pytest.raises(DataError, match="UTF-8") as exc:
        load_glue("sst2", "train", glue_dir=tmp_path)
    assert str(path) in _one_line_error(exc)


# ---------------------------------------------------------------------------------------------------------------
# resolve_glue_dir
# ---------------------------------------------------------------------------------------------------------------


def test_resolve_glue_dir_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "from_config"
    env = tmp_path / "from_env"
    cfg.mkdir()
    env.mkdir()
    monkeypatch.delenv("DSE_GLUE_DIR", raising=False)
    assert resolve_glue_dir(None) is None
    assert resolve_glue_dir("") is None
    assert resolve_glue_dir(cfg) == cfg
    assert resolve_glue_dir(str(cfg)) == cfg
    monkeypatch.setenv("DSE_GLUE_DIR", str(env))
    assert resolve_glue_dir(cfg) == cfg  # config wins
    assert resolve_glue_dir(None) == env
    assert resolve_glue_dir("") == env
    monkeypatch.setenv("DSE_GLUE_DIR", "")
    assert resolve_glue_dir(None) is None


def test_resolve_glue_dir_missing_paths(tmp_path, monkeypatch):
    missing = tmp_path / "missing"
    monkeypatch.delenv("DSE_GLUE_DIR", raising=False)
    with pytest.raises(DataError, match="study definition") as exc:
        resolve_glue_dir(missing)
    assert str(missing) in _one_line_error(exc)
    monkeypatch.setenv("DSE_GLUE_DIR", str(missing))
    with pytest.raises(DataError, match="DSE_GLUE_DIR") as exc:
        resolve_glue_dir(None)
    assert str(missing) in _one_line_error(exc)
    a_file = _write(tmp_path, "file.txt", "x")
    with pytest.raises(DataError, match="not a directory"):
        resolve_glue_dir(a_file)


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face hub fallback (never touches the network)
# ---------------------------------------------------------------------------------------------------------------


def test_hub_fallback_offline_env_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError) as exc:
        load_glue("sst2", "dev", glue_dir=None)
    msg = _one_line_error(exc)
    assert msg.startswith("no GLUE folder configured (set glue_dir in the study definition or DSE_GLUE_DIR)")
    assert "Hugging Face hub is unreachable" in msg and "HF_HUB_OFFLINE" in msg
    assert time.perf_counter() - start < 2.0


def test_hub_fallback_load_error_becomes_data_error(monkeypatch):
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(glue_mod, "_hub_unreachable_reason", lambda: None)

    def fail(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\n(LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match="hub is unreachable: ConnectionError: Couldn't reach") as exc:
        load_glue("rte", "train", glue_dir=None)
    _one_line_error(exc)


@pytest.mark.parametrize(
    "task,config,hub_split,columns",
    [
        ("sst2", "sst2", "validation", {"sentence": ["a", "b"]}),
        ("mnli", "mnli", "validation_matched", {"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"]}),
        ("qqp", "qqp", "train", {"question1": ["q1", "q2"], "question2": ["r1", "r2"]}),
    ],
)
def test_hub_fallback_maps_columns(monkeypatch, task, config, hub_split, columns):
    import datasets

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(glue_mod, "_hub_unreachable_reason", lambda: None)
    names = list(TASKS[task].label_names)
    calls = []

    def fake_load(path, name, split):
        calls.append((path, name, split))
        feats = {c: datasets.Value("string") for c in columns}
        feats["label"] = datasets.ClassLabel(names=names)
        feats["idx"] = datasets.Value("int32")
        return datasets.Dataset.from_dict(
            {**columns, "label": [1, 0], "idx": [0, 1]}, features=datasets.Features(feats)
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    split = "train" if hub_split == "train" else "dev"
    ds = load_glue(task, split, glue_dir=None)
    assert calls == [("nyu-mll/glue", config, hub_split)]
    assert ds.column_names == ["text_a", "text_b", "label", "idx"]
    assert ds.features["label"].dtype == "int64"
    assert ds.features["idx"].dtype == "int64"
    first = ds[0]
    assert first["label"] == 1 and first["idx"] == 0
    assert first["text_a"] == next(iter(columns.values()))[0]
    assert first["text_b"] == (list(columns.values())[1][0] if len(columns) == 2 else "")


def test_mnli_official_tsv_is_preferred_over_jsonl(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label"
    row = "0\t1\t2n\tgov\t(\t(\t(\t(\tThe premise.\tThe hypothesis.\tcontradiction\tcontradiction"
    _write(tmp_path, "MNLI/dev_matched.tsv", f"{header}\n{row}\n")
    _write(tmp_path, "MNLI/dev_matched.jsonl", '{"premise": "x", "hypothesis": "y", "label": "neutral"}\n')
    ds = load_glue("mnli", "dev", glue_dir=tmp_path)
    assert ds[0] == {"text_a": "The premise.", "text_b": "The hypothesis.", "label": 2, "idx": 0}
    # an MNLI TSV without its header cannot be interpreted
    _write(tmp_path, "MNLI/dev_matched.tsv", f"{row}\n")
    with pytest.raises(DataError, match="no header line"):
        load_glue("mnli", "dev", glue_dir=tmp_path)


@pytest.mark.skipif(not GLUE_DIR.is_dir(), reason="staged GLUE data not found")
def test_train_from_dev_splits_the_dev_set_into_disjoint_seeded_parts():
    from dse.data import load_task_split

    train = load_task_split("qnli", "train", glue_dir=GLUE_DIR, train_from_dev=0.25, seed=3)
    dev = load_task_split("qnli", "dev", glue_dir=GLUE_DIR, train_from_dev=0.25, seed=3)
    assert (len(train), len(dev)) == (1366, 4097)  # 5,463 dev rows, a quarter fine-tuned on
    assert len(train.data) == len(train)  # a table of its own: readers of ds.data see only these rows
    assert set(train["idx"]).isdisjoint(dev["idx"]) and len(set(train["idx"]) | set(dev["idx"])) == 5463
    assert load_task_split("qnli", "train", glue_dir=GLUE_DIR, train_from_dev=0.25, seed=3)["idx"] == train["idx"]
    assert load_task_split("qnli", "train", glue_dir=GLUE_DIR, train_from_dev=0.25, seed=4)["idx"] != train["idx"]
    assert load_task_split("rte", "dev", glue_dir=GLUE_DIR)["idx"] == load_glue("rte", "dev", glue_dir=GLUE_DIR)["idx"]
    with pytest.raises(DataError, match="train_from_dev must be a fraction"):
        load_task_split("qnli", "train", glue_dir=GLUE_DIR, train_from_dev=1.5)
