"""User-facing error types shared across the framework."""

from __future__ import annotations


class DSEError(Exception):
    """A user-facing error: the CLI prints str(exc) as one line and exits non-zero."""


class ConfigError(DSEError):
    """Invalid or inconsistent configuration (study definition, search space, CLI options)."""


class DataError(DSEError):
    """Missing, unreadable or malformed data (e.g. GLUE files)."""


class ModelError(DSEError):
    """A model or tokenizer cannot be found, loaded or run."""
