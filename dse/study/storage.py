"""Where a study's trials live: a journal file (default), SQLite, or PostgreSQL.

Shared by the coordinator and by read-only tools (``dse study status``, ``dse dashboard``).
Only the coordinator writes; readers open the same storage through :func:`open_storage`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import IO, Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock  # public classes subclass it; not re-exported
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation

from pydantic import ValidationError

from dse.config import StorageConfig
from dse.errors import ConfigError, DSEError
from dse.io import write_bytes_atomic

__all__ = [
    "JOURNAL_NAME",
    "SQLITE_NAME",
    "FlockJournalLock",
    "TrialDurableJournalBackend",
    "display_url",
    "open_storage",
    "recover_journal",
    "repair_journal",
    "resolve_storage_url",
    "storage_from_url",
    "storage_option",
]

log = logging.getLogger(__name__)
JOURNAL_NAME = "study.journal"
SQLITE_NAME = "study.db"


# Journal operations that change a running trial only: written at once (a killed process loses
# none of them: they are in the kernel's page cache), made durable by the next fsync
_IN_PROGRESS_OPS = frozenset({JournalOperation.SET_TRIAL_PARAM, JournalOperation.SET_TRIAL_USER_ATTR,
                              JournalOperation.SET_TRIAL_SYSTEM_ATTR, JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE})


class TrialDurableJournalBackend(JournalFileBackend):
    """Optuna's journal file, with one fsync per finished trial instead of one per operation.

    Optuna fsyncs every operation; a trial makes about fifteen (its parameters, attributes,
    constraints), which made the fsyncs most of the coordinator's time per trial (issue #19,
    ``benchmarks/coordinator_cost.py``). Here an operation on a running trial (or the creation
    of a running trial) is written and flushed but not fsynced; any other (a trial finishing,
    a derived trial added, the study's own) is fsynced, and that fsync makes every earlier write
    of the file durable with it. A killed coordinator loses nothing (written data is in the
    kernel); a machine crash can lose only a running trial's attributes, and a running trial
    is re-run on resume anyway.
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if any(log.get("op_code") not in _IN_PROGRESS_OPS and not _creates_running_trial(log) for log in logs):
            super().append_logs(logs)
            return
        with get_lock_file(self._lock):
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()


def _creates_running_trial(log: dict[str, Any]) -> bool:
    return log.get("op_code") == JournalOperation.CREATE_TRIAL and "state" not in log  # ask(): RUNNING


class FlockJournalLock(BaseJournalFileLock):
    """An flock on ``<journal>.flock``: the kernel frees it when a killed process exits.

    Optuna's default symlink lock survives ``kill -9`` and then stalls the next writer for its
    30 s grace period; a kernel lock never goes stale.
    """

    def __init__(self, journal: Path) -> None:
        self._path = journal.with_name(journal.name + ".flock")
        self._fh: IO[bytes] | None = None

    def acquire(self) -> bool:
        self._fh = open(self._path, "ab")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def repair_journal(path: Path) -> int:
    """Drop a torn last record (a writer killed mid-append); returns the bytes removed.

    Optuna skips a torn last line when reading, but the next append would glue a record to
    it and make the journal unreadable. Call only while holding the coordinator lock.
    """
    if not path.is_file():
        return 0
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        keep, block = 0, 65536
        pos = size
        while pos > 0:  # scan backwards for the last complete line
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: dropped a torn last record (%d bytes) left by a killed writer", path, size - keep)
    return size - keep


_CREATE_TRIAL = 4  # optuna JournalOperation codes (stable: they are on disk)


def _intact(line: bytes) -> dict[str, Any] | None:
    """A journal line as Optuna would apply it, or None if it is damaged."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None
    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
        return None
    return record


def recover_journal(path: Path) -> list[int]:
    """Drop damaged records from the middle of a journal; returns their line numbers (1-based).

    Optuna refuses a journal with one unreadable line anywhere but at the end, which would make
    every finished trial unreachable. The intact records are kept in order; a lost
    trial-creation record is replaced by a placeholder so later records still reach their own
    trial (Optuna numbers trials by creation order). The damaged file is kept beside it as
    ``study.journal.damaged-<time>``. A torn last line (a killed writer) is left to
    :func:`repair_journal`. Holds the journal's append lock while it works.
    """
    if not path.is_file():
        return []
    lock = FlockJournalLock(path)
    try:
        lock.acquire()
    except OSError as exc:
        raise DSEError(f"{path}: cannot lock the journal to check it ({exc.strerror})") from None
    try:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DSEError(f"{path}: cannot read the journal ({exc.strerror})") from None
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: b"" or a torn last record
        records = [_intact(line) for line in complete]
        dropped = [i + 1 for i, r in enumerate(records) if r is None]
        if not dropped:
            return []
        kept: list[bytes] = []
        trials = 0
        study_id = 0
        for line, record in zip(complete, records):
            if record is None:
                continue
            op = record["op_code"]
            trial_id = record.get("trial_id")
            if isinstance(trial_id, int) and op != _CREATE_TRIAL:
                while trials <= trial_id:  # its creation record was lost: a placeholder keeps the numbering
                    kept.append(json.dumps({"op_code": _CREATE_TRIAL, "worker_id": "dse-recovered",
                                            "study_id": study_id, "datetime_start": None},
                                           separators=(",", ":")).encode())
                    trials += 1
            if op == _CREATE_TRIAL:
                trials += 1
                study_id = record.get("study_id", study_id)
            kept.append(line)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        copy = path.with_name(f"{path.name}.damaged-{stamp}")
        try:
            shutil.copy2(path, copy)
            write_bytes_atomic(path, b"".join(line + b"\n" for line in kept) + tail)
        except OSError as exc:
            raise DSEError(f"{path} is damaged (lines {_ranges(dropped)} unreadable) and cannot be repaired "
                           f"here ({exc.strerror}); copy the folder somewhere writable and run again") from None
    finally:
        lock.release()
    log.warning("%s was damaged: dropped unreadable lines %s, kept every intact record; "
                "the damaged file is kept as %s", path, _ranges(dropped), copy.name)
    return dropped


def _ranges(numbers: list[int]) -> str:
    """1,2,3,7 -> '1-3, 7' (a damaged stretch can be many lines)."""
    parts: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def display_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: nothing to mask
        return url


def resolve_storage_url(folder: Path, storage: StorageConfig | None) -> str:
    """The storage of the study in ``folder``: ``journal:PATH`` or an SQLAlchemy URL."""
    storage = storage or StorageConfig()
    if storage.kind == "journal":
        return f"journal:{folder / JOURNAL_NAME}"
    if storage.kind == "sqlite":
        return storage.url or f"sqlite:///{folder.resolve() / SQLITE_NAME}"
    assert storage.url is not None  # StorageConfig requires it for postgresql
    return storage.url


def storage_from_url(url: str) -> BaseStorage:
    """Open ``journal:PATH`` or an SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg2://…``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:"))
        recover_journal(path)
        try:
            return JournalStorage(TrialDurableJournalBackend(str(path), lock_obj=FlockJournalLock(path)))
        except OSError as exc:
            raise DSEError(f"cannot open the journal {path}: {exc.strerror}") from None
    try:
        # pool_pre_ping: a long study outlives idle server connections
        return RDBStorage(url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except ImportError as exc:
        raise DSEError(f"storage {display_url(url)} needs a database driver: {exc}") from None
    except Exception as exc:  # sqlalchemy errors carry multi-line SQL context; keep the first line
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise DSEError(f"cannot open storage {display_url(url)}: {first}") from None


def open_storage(folder: Path, storage: StorageConfig | None) -> BaseStorage:
    """The storage of the study in ``folder`` as its definition names it."""
    return storage_from_url(resolve_storage_url(folder, storage))


def storage_option(value: str) -> StorageConfig:
    """``--storage``: ``journal``, ``sqlite`` (``<folder>/study.db``) or an SQLAlchemy URL."""
    if value in ("journal", "sqlite"):
        return StorageConfig(kind=value)
    kind = "sqlite" if value.startswith("sqlite:") else "postgresql" if value.startswith("postgresql") else None
    if kind is None:
        raise ConfigError(f"--storage {display_url(value)}: expected journal, sqlite, sqlite:///PATH "
                          "or postgresql+psycopg2://USER@HOST:PORT/DB")
    try:
        return StorageConfig(kind=kind, url=value)
    except ValidationError as exc:
        raise ConfigError(f"--storage: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
