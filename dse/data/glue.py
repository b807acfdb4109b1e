"""GLUE task registry and loaders.

Two sources are supported:

* a local GLUE folder in the layout of the official GLUE download (``<glue_dir>/SST-2/train.tsv``, ...),
  configured with ``glue_dir`` in the study definition or the ``DSE_GLUE_DIR`` environment variable;
* otherwise the Hugging Face hub dataset ``nyu-mll/glue`` (only when the hub is reachable).

Every loader returns a :class:`datasets.Dataset` with the same four columns for all tasks:

``text_a`` (str), ``text_b`` (str, ``""`` for single-sentence tasks), ``label`` (int64 class id, or float32
for STS-B) and ``idx`` (int64, 0-based row order).

Class ids follow the Hugging Face ``glue`` loader (``TaskSpec.label_names`` order), so local files and the hub
give the same ids. Local files are parsed with :mod:`csv` (``delimiter='\\t'``, ``quoting=csv.QUOTE_NONE``,
as in the original GLUE scripts) into plain lists and turned into an in-memory dataset; nothing is cached on
disk.

Quirks of the staged files that are handled here (see ``shared/data/SOURCES.md``):

* CoLA and ``QQP/train_subset.tsv`` have no header line; MRPC's header starts with a UTF-8 BOM.
* QQP: only ``train`` exists offline (``train_subset.tsv``, or an official ``train.tsv`` if present). One row
  of the older QQP release has 5 fields because its label is glued to ``question2`` by a space; the label is
  split off again, so that row is kept (23,497 rows).
* MNLI: ``dev`` means ``dev_matched``; read from the official ``dev_matched.tsv`` when present, else from the
  simplified ``dev_matched.jsonl`` (keys ``premise``/``hypothesis``/``label`` with string labels).
* QNLI and MNLI have no ``train`` file offline; asking for it raises :class:`DataError` listing what exists.
* ``MRPC/original/`` (the raw MSR files) is ignored.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from dse.config.tasks import TaskSpec, normalize_task_name, task_spec
from dse.errors import DataError

if TYPE_CHECKING:  # pragma: no cover - import only for type checkers (datasets is slow to import)
    import datasets

__all__ = [
    "available_splits",
    "load_glue",
    "load_task_split",
    "resolve_glue_dir",
]

GLUE_DIR_ENV = "DSE_GLUE_DIR"
HUB_DATASET = "nyu-mll/glue"
SPLITS: tuple[str, ...] = ("train", "dev")


# --------------------------------------------------------------------------------------------------------------
# Locating the data
# --------------------------------------------------------------------------------------------------------------


def resolve_glue_dir(configured: str | Path | None) -> Path | None:
    """Pick the local GLUE folder: an explicit config value wins, else ``$DSE_GLUE_DIR``, else ``None``.

    ``None`` means "no local folder: use the Hugging Face hub". Empty strings count as unset. A given path
    that does not exist (or is not a folder) raises :class:`DataError` naming the path and where it came from.
    """
    if configured is not None and str(configured).strip() != "":
        source = "glue_dir in the study definition"
        raw = str(configured)
    else:
        raw = os.environ.get(GLUE_DIR_ENV, "")
        if raw.strip() == "":
            return None
        source = f"environment variable {GLUE_DIR_ENV}"
    path = Path(raw).expanduser()
    if not path.exists():
        raise DataError(f"GLUE folder {str(path)!r} (from {source}) does not exist")
    if not path.is_dir():
        raise DataError(f"GLUE folder {str(path)!r} (from {source}) is not a directory")
    return path


# Candidate file names per split, most preferred first.
_DEFAULT_SPLIT_FILES: dict[str, tuple[str, ...]] = {"train": ("train.tsv",), "dev": ("dev.tsv",)}
_SPLIT_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "qqp": {"train": ("train.tsv", "train_subset.tsv"), "dev": ("dev.tsv",)},
    "mnli": {"train": ("train.tsv", "train.jsonl"), "dev": ("dev_matched.tsv", "dev_matched.jsonl")},
}


def _split_files(spec: TaskSpec) -> dict[str, tuple[str, ...]]:
    return _SPLIT_FILES.get(spec.name, _DEFAULT_SPLIT_FILES)


def _check_split(split: str) -> str:
    s = split.strip().lower() if isinstance(split, str) else split
    if s == "validation":
        s = "dev"
    if s not in SPLITS:
        raise DataError(f"unknown GLUE split {split!r}; use 'train' or 'dev'")
    return s


def _task_dir(spec: TaskSpec, glue_dir: Path | str) -> Path:
    glue_dir = Path(glue_dir)
    if not glue_dir.is_dir():
        raise DataError(f"GLUE folder {str(glue_dir)!r} does not exist or is not a directory")
    exact = glue_dir / spec.folder
    if exact.is_dir():
        return exact
    # Tolerate other spellings of the folder name ("sst2", "SST2", "sts-b", ...).
    try:
        entries = sorted(glue_dir.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list GLUE folder {str(glue_dir)!r}: {exc.strerror or exc}") from None
    for entry in entries:
        if entry.is_dir() and normalize_task_name(entry.name) in (spec.name, normalize_task_name(spec.folder)):
            return entry
    raise DataError(f"GLUE task folder {str(exact)!r} not found (task '{spec.name}')")


def available_splits(task: str, glue_dir: Path) -> list[str]:
    """Splits (``"train"``, ``"dev"``) whose file exists for ``task`` under ``glue_dir``.

    Raises :class:`DataError` if the task folder itself is missing.
    """
    spec = task_spec(task)
    tdir = _task_dir(spec, glue_dir)
    return [s for s, names in _split_files(spec).items() if any((tdir / n).is_file() for n in names)]


# --------------------------------------------------------------------------------------------------------------
# Parsing local files
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TsvLayout:
    header: tuple[str, str | None, str]  # header names of text_a, text_b, label
    fixed: tuple[int, int | None, int] | None  # column indices when the file has no header; None: header required
    n_fields: int | None  # field count when the file has no header


_TSV_LAYOUTS: dict[str, _TsvLayout] = {
    "cola": _TsvLayout(("sentence", None, "label"), (3, None, 1), 4),  # source, label, orig. label, sentence
    "sst2": _TsvLayout(("sentence", None, "label"), (0, None, 1), 2),
    "mrpc": _TsvLayout(("#1 String", "#2 String", "Quality"), (3, 4, 0), 5),
    "qqp": _TsvLayout(("question1", "question2", "is_duplicate"), (3, 4, 5), 6),
    "stsb": _TsvLayout(("sentence1", "sentence2", "score"), (7, 8, 9), 10),
    "mnli": _TsvLayout(("sentence1", "sentence2", "gold_label"), None, None),
    "qnli": _TsvLayout(("question", "sentence", "label"), (1, 2, 3), 4),
    "rte": _TsvLayout(("sentence1", "sentence2", "label"), (1, 2, 3), 4),
    "wnli": _TsvLayout(("sentence1", "sentence2", "label"), (1, 2, 3), 4),
}


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _LabelParser:
    """Maps raw label strings to class ids (or floats for regression), raising one-line DataErrors."""

    def __init__(self, spec: TaskSpec, path: Path):
        self.spec = spec
        self.path = path
        # Accept both the class names and the class ids written as integers ("0", "1", ...).
        self.mapping: dict[str, int] = {str(i): i for i in range(len(spec.label_names))}
        self.mapping.update({n: i for i, n in enumerate(spec.label_names)})

    def __call__(self, raw: object, line: int) -> int | float:
        if self.spec.is_regression:
            try:
                value = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise DataError(
                    f"bad label {_short(raw)} in {self.path} line {line}: expected a number (task '{self.spec.name}')"
                )
            return value
        key = raw.strip() if isinstance(raw, str) else raw
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            cid = None
        else:
            cid = self.mapping.get(str(key))
        if cid is None:
            allowed = ", ".join(self.spec.label_names)
            raise DataError(
                f"bad label {_short(raw)} in {self.path} line {line}: not a label of task '{self.spec.name}' "
                f"(expected one of {allowed} or a class id 0..{len(self.spec.label_names) - 1})"
            )
        return cid


def _open_text(path: Path):
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(f"missing GLUE file {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read GLUE file {path}: {exc.strerror or exc}") from None


def _read_tsv(spec: TaskSpec, path: Path) -> tuple[list[str], list[str], list]:
    layout = _TSV_LAYOUTS[spec.name]
    parse_label = _LabelParser(spec, path)
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list = []

    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            first = next(reader, None)
            while first is not None and len(first) == 0:  # leading blank lines
                first = next(reader, None)
            if first is None:
                raise DataError(f"GLUE file {path} is empty")

            name_a, name_b, name_label = layout.header
            stripped = [c.strip() for c in first]
            has_header = name_label in stripped and name_a in stripped and (name_b is None or name_b in stripped)
            if has_header:
                ia = stripped.index(name_a)
                ib = stripped.index(name_b) if name_b is not None else None
                il = stripped.index(name_label)
                n_fields = len(first)
                pending: list[tuple[list[str], int]] = []
            elif layout.fixed is not None:
                ia, ib, il = layout.fixed
                n_fields = layout.n_fields
                pending = [(first, reader.line_num)]
            else:
                raise DataError(
                    f"GLUE file {path} has no header line with columns "
                    f"{', '.join(n for n in layout.header if n)} (task '{spec.name}')"
                )

            def rows():
                yield from pending
                for row in reader:
                    yield row, reader.line_num

            quirk_qqp = spec.name == "qqp"
            for row, line in rows():
                if len(row) != n_fields:
                    if not row:  # blank line (e.g. trailing newline run)
                        continue
                    if quirk_qqp and len(row) == n_fields - 1 and il == n_fields - 1 and ib == n_fields - 2:
                        # Older QQP release: the label is glued to question2 by a space ("... jlpt5? 0").
                        q2, sep, lab = row[-1].rpartition(" ")
                        if sep and lab in ("0", "1"):
                            row = [*row[:-1], q2, lab]
                    if len(row) != n_fields:
                        raise DataError(
                            f"malformed row in {path} line {line}: expected {n_fields} tab-separated fields, "
                            f"got {len(row)}"
                        )
                text_a.append(row[ia])
                text_b.append(row[ib] if ib is not None else "")
                labels.append(parse_label(row[il], line))
        except csv.Error as exc:
            raise DataError(f"cannot parse GLUE file {path} line {reader.line_num}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"GLUE file {path} is not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise DataError(f"cannot read GLUE file {path}: {exc.strerror or exc}") from None

    if not labels:
        raise DataError(f"GLUE file {path} has a header but no data rows")
    return text_a, text_b, labels


_JSONL_KEYS: tuple[tuple[str, str, str], ...] = (
    ("premise", "hypothesis", "label"),  # simplified format of the staged MNLI dev_matched.jsonl
    ("sentence1", "sentence2", "gold_label"),  # official MultiNLI jsonl
)


def _read_jsonl(spec: TaskSpec, path: Path) -> tuple[list[str], list[str], list]:
    parse_label = _LabelParser(spec, path)
    text_a: list[str] = []
    text_b: list[str] = []
    labels: list = []
    saw_content = False
    with _open_text(path) as fh:
        try:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                saw_content = True
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"malformed row in {path} line {line_no}: invalid JSON ({exc.msg})") from None
                keys = next((k for k in _JSONL_KEYS if isinstance(obj, dict) and all(x in obj for x in k)), None)
                if keys is None:
                    raise DataError(
                        f"malformed row in {path} line {line_no}: expected a JSON object with keys "
                        f"premise, hypothesis, label (or sentence1, sentence2, gold_label)"
                    )
                a, b = obj[keys[0]], obj[keys[1]]
                if not isinstance(a, str) or not isinstance(b, str):
                    raise DataError(f"malformed row in {path} line {line_no}: text fields must be strings")
                text_a.append(a)
                text_b.append(b)
                labels.append(parse_label(obj[keys[2]], line_no))
        except UnicodeDecodeError as exc:
            raise DataError(f"GLUE file {path} is not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise DataError(f"cannot read GLUE file {path}: {exc.strerror or exc}") from None
    if not saw_content:
        raise DataError(f"GLUE file {path} is empty")
    return text_a, text_b, labels


def _features(spec: TaskSpec):
    from datasets import Features, Value

    return Features(
        {
            "text_a": Value("string"),
            "text_b": Value("string"),
            "label": Value("float32" if spec.is_regression else "int64"),
            "idx": Value("int64"),
        }
    )


def _load_local(spec: TaskSpec, split: str, glue_dir: Path) -> datasets.Dataset:
    tdir = _task_dir(spec, glue_dir)
    names = _split_files(spec)[split]
    path = next((tdir / n for n in names if (tdir / n).is_file()), None)
    if path is None:
        avail = available_splits(spec.name, glue_dir)
        looked = " or ".join(names)
        raise DataError(
            f"missing GLUE file {tdir / names[0]} (task '{spec.name}', split '{split}'; looked for {looked}); "
            f"available splits: {', '.join(avail) if avail else 'none'}"
        )
    reader = _read_jsonl if path.suffix == ".jsonl" else _read_tsv
    text_a, text_b, labels = reader(spec, path)

    from datasets import Dataset

    return Dataset.from_dict(
        {"text_a": text_a, "text_b": text_b, "label": labels, "idx": list(range(len(labels)))},
        features=_features(spec),
    )


# --------------------------------------------------------------------------------------------------------------
# Hugging Face hub fallback
# --------------------------------------------------------------------------------------------------------------

_HUB_COLUMNS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
_HUB_TIMEOUT_S = 10.0
_TRUTHY = {"1", "true", "yes", "on"}
_HUB_UNREACHABLE = (
    "no GLUE folder configured (set glue_dir in the study definition or DSE_GLUE_DIR) "
    "and the Hugging Face hub is unreachable: "
)


def _hub_unreachable_reason() -> str | None:
    """Cheap checks before touching the hub; returns why it is unreachable, or None if it may be reachable."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUTHY:
            return f"{var} is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # a direct TCP probe says nothing behind a proxy; rely on the request timeouts
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urlsplit(endpoint)
    host = parts.hostname or "huggingface.co"
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        port = 443
    try:
        socket.create_connection((host, port), timeout=5.0).close()
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc})"
    return None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_from_hub(spec: TaskSpec, split: str) -> datasets.Dataset:
    reason = _hub_unreachable_reason()
    if reason is not None:
        raise DataError(_HUB_UNREACHABLE + reason)
    # Keep individual hub requests short (read by huggingface_hub when it is first imported).
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(_HUB_TIMEOUT_S)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(_HUB_TIMEOUT_S)))
    import datasets

    hub_split = "train" if split == "train" else ("validation_matched" if spec.name == "mnli" else "validation")
    try:
        ds = datasets.load_dataset(HUB_DATASET, spec.name, split=hub_split)
    except Exception as exc:  # noqa: BLE001 - any failure here means "no usable hub"
        raise DataError(_HUB_UNREACHABLE + _one_line(f"{type(exc).__name__}: {exc}")) from None

    col_a, col_b = _HUB_COLUMNS[spec.name]
    try:
        ds = ds.select_columns([c for c in (col_a, col_b, "label", "idx") if c is not None])
        ds = ds.rename_column(col_a, "text_a")
        if col_b is None:
            ds = ds.add_column("text_b", [""] * len(ds))
        else:
            ds = ds.rename_column(col_b, "text_b")
        ds = ds.cast(_features(spec))
        ds = ds.select_columns(["text_a", "text_b", "label", "idx"])
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"unexpected layout of hub dataset {HUB_DATASET}/{spec.name} ({hub_split}): "
            + _one_line(f"{type(exc).__name__}: {exc}")
        ) from None
    return ds


# --------------------------------------------------------------------------------------------------------------
# Public loader
# --------------------------------------------------------------------------------------------------------------


def load_glue(task: str, split: Literal["train", "dev"], *, glue_dir: Path | str | None) -> datasets.Dataset:
    """Load one split of a GLUE task as a dataset with columns ``text_a, text_b, label, idx``.

    ``glue_dir`` is a local GLUE folder (see :func:`resolve_glue_dir`); ``None`` loads ``nyu-mll/glue`` from the
    Hugging Face hub instead (``dev`` = ``validation``, MNLI ``validation_matched``). Every problem (unknown task
    or split, missing folder or file, unreadable or malformed file, unknown label, unreachable hub) raises a
    one-line :class:`DataError`.
    """
    spec = task_spec(task)
    split = _check_split(split)
    if glue_dir is None:
        return _load_from_hub(spec, split)
    return _load_local(spec, split, Path(glue_dir))


def load_task_split(task: str, split: Literal["train", "dev"], *, glue_dir: Path | str | None,
                    train_from_dev: float | None = None, seed: int = 0) -> datasets.Dataset:
    """:func:`load_glue`, or, with ``train_from_dev``, a seeded split of the dev set standing in for
    a train split that is not available (QNLI and MNLI offline): that fraction of the dev rows is
    ``train`` and the rest ``dev``, disjoint. Scores on such a ``dev`` are an approximation of the
    official dev figures (fewer rows, a smaller fine-tuning set)."""
    if train_from_dev is None:
        return load_glue(task, split, glue_dir=glue_dir)
    if not 0.0 < train_from_dev < 1.0:
        raise DataError(f"train_from_dev must be a fraction in (0, 1), got {train_from_dev}")
    import numpy as np

    dev = load_glue(task, "dev", glue_dir=glue_dir)
    order = np.random.default_rng(seed).permutation(len(dev))
    n_train = int(round(train_from_dev * len(dev)))
    if not 0 < n_train < len(dev):
        raise DataError(f"{task}: train_from_dev={train_from_dev} of {len(dev)} dev rows leaves an empty split")
    rows = order[:n_train] if _check_split(split) == "train" else order[n_train:]
    # a new table, not select(): callers read the Arrow table (ds.data), which select() leaves whole
    return type(dev).from_dict(dev[np.sort(rows).tolist()], features=dev.features)
