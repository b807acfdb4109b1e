"""Reading an export's files back: damage is one line naming the file and what to do.

Every file of an export folder (design.json, the model folder's config.json, weights and
tokenizer files) is read through :func:`read_export_file`, which wraps the package's one guarded
loader (:func:`dse.io.read_guarded`). An export is the user's, not a cache: it is never
discarded or rewritten here, only refused. Imports only ``dse.errors`` and ``dse.io``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dse.errors import DSEError
from dse.io import DamagedFileError, read_guarded

__all__ = ["EXPORT_AGAIN", "read_export_file"]

T = TypeVar("T")
EXPORT_AGAIN = "write the export again with dse export (or restore it from a backup)"


def read_export_file(path: Path, load: Callable[[Path], T], what: str) -> T:
    """``load(path)``; a damaged file (truncated, garbage, a pickle in its place) raises one
    ``DSEError`` line naming it, what it should be (``what``, e.g. "JSON design export") and what
    to do. A missing ``path`` raises ``FileNotFoundError`` (the caller's message)."""
    try:
        return read_guarded(path, load)
    except DamagedFileError as exc:
        raise DSEError(f"{path} is damaged or not a readable {what} ({exc.reason}); {EXPORT_AGAIN}") from None
