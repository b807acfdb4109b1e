"""Atomic writes: a reader (or a process killed mid-write) never sees half a file or folder.

Every writer of the package goes through :func:`atomic_write` (files) or :func:`atomic_folder`
(a folder written as a whole). Both write to a temporary name that is unique per call
(process id plus a random token, so two processes or threads never share one) in the target's
own folder, ``fsync`` what they wrote, and ``os.replace`` it onto the target; on any failure
the temporary file or folder is removed and the target is left as it was. Temporary names start
with ``.`` and end with ``.tmp``. New files get the usual mode (``0o666`` less the umask).

Every file the package reads back (caches, checkpoints, an export's files) goes through
:func:`read_guarded`: any failure to read it as what it should hold becomes one
:class:`DamagedFileError` naming the file, which the caller turns into "recomputed" (a cache) or
a one-line error saying what to do (user data). Loaders never unpickle.

Part of the bottom layer: imports nothing from ``dse``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

__all__ = ["DamagedFileError", "atomic_folder", "atomic_write", "check_writable", "read_guarded",
           "remove_stale_temps", "write_bytes_atomic", "write_text_atomic"]

T = TypeVar("T")


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: Literal["w", "wb"] = "w", *,
                 encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a unique temporary file beside ``path`` for writing; on a clean exit it is flushed,
    ``fsync``-ed and renamed onto ``path`` (created or replaced), else removed.

    ``mode``: ``"w"`` (text, ``encoding``, ``newline`` as :func:`open`) or ``"wb"`` (binary).
    The parent folder is created if needed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if mode == "wb":
            fh: IO[Any] = os.fdopen(fd, "wb")
        else:
            fh = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, "w", encoding=encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def _fsync_tree(folder: Path) -> None:
    for f in sorted(folder.rglob("*")):
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        _fsync_dir(d)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str], *,
                  if_exists: Literal["replace", "keep"] = "replace") -> Iterator[Path]:
    """Yield a unique empty temporary folder beside ``path``; on a clean exit everything in it is
    ``fsync``-ed and the folder is renamed onto ``path``, else it is removed.

    ``if_exists``: what to do when ``path`` already exists: ``"replace"`` it (the old folder is
    moved aside first, then deleted; a file there is an error), or ``"keep"`` it and drop ours
    (two processes computed the same content: the first one to finish wins).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    os.mkdir(tmp, 0o777)
    try:
        yield tmp
        _fsync_tree(tmp)
        if if_exists == "keep":
            try:
                os.replace(tmp, target)  # onto a missing (or empty) folder only
            except OSError:
                if not target.is_dir():
                    raise
        else:
            old = None
            if target.exists() or target.is_symlink():
                if not target.is_dir():
                    raise NotADirectoryError(f"{target} exists and is not a folder")
                old = _temp_name(target)
                os.replace(target, old)
            os.replace(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise ``OSError`` now if files cannot be created in the folder ``path`` (or, when it does
    not exist yet, in its nearest existing parent): callers check before minutes of work."""
    existing = Path(path)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(20, "not a folder", str(existing))
    probe = existing / f".write-check.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders that a killed writer left in ``folder`` (ours are
    named ``.<target>.<pid>-<token>.tmp``; a live writer's are kept); returns what was removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(".*.tmp"):
        pid_token = tmp.name.removesuffix(".tmp").rsplit(".", 1)[-1]
        pid, _, token = pid_token.partition("-")
        if not (pid.isdigit() and len(token) == 8) or _alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


class DamagedFileError(Exception):
    """A file read back could not be read as what it should hold (truncated, garbage, a pickle
    or anything else in its place, unreadable); ``str``: one line naming the file and the cause."""

    def __init__(self, path: str | os.PathLike[str], cause: BaseException) -> None:
        self.path = Path(path)
        self.cause = cause
        first = (str(cause).strip().splitlines() or [""])[0][:200]
        self.reason = cause.__class__.__name__ + (f": {first}" if first else "")  # one line
        super().__init__(f"{self.path} is damaged or unreadable ({self.reason})")


def read_guarded(path: str | os.PathLike[str], load: Callable[[Path], T]) -> T:
    """``load(path)`` (a file, or a folder read as a whole); any failure is raised as
    :class:`DamagedFileError` naming ``path``, except ``FileNotFoundError`` when ``path`` itself
    is missing (the caller's own message). ``load`` must not unpickle: it reads JSON,
    safetensors, ``.npz`` with ``allow_pickle=False``, ..."""
    path = Path(path)
    try:
        return load(path)
    except Exception as exc:  # whatever a damaged file makes a parser raise
        if isinstance(exc, FileNotFoundError) and not path.exists():
            raise
        raise DamagedFileError(path, exc) from None
