"""The installed package's version, read once from its metadata (``pyproject.toml`` is the source).

Part of the bottom layer: imports nothing from ``dse``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["DIST_NAME", "__version__"]

DIST_NAME = "edgebert-dse"

try:
    __version__: str = version(DIST_NAME)
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
