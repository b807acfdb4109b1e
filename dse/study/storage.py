"""Where a study's trials live: a journal file (default), SQLite, or PostgreSQL.

Shared by the coordinator and by read-only tools (``dse study status``, ``dse dashboard``).
Only the coordinator writes; readers open the same storage through :func:`open_storage`.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock  # public classes subclass it; not re-exported

from pydantic import ValidationError

from dse.config import StorageConfig
from dse.errors import ConfigError, DSEError

__all__ = [
    "JOURNAL_NAME",
    "SQLITE_NAME",
    "FlockJournalLock",
    "display_url",
    "open_storage",
    "repair_journal",
    "resolve_storage_url",
    "storage_from_url",
    "storage_option",
]

log = logging.getLogger(__name__)
JOURNAL_NAME = "study.journal"
SQLITE_NAME = "study.db"


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
        try:
            return JournalStorage(JournalFileBackend(str(path), lock_obj=FlockJournalLock(path)))
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
