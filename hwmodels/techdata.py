"""Load the technology data files under ``hwmodels/data/``.

Every number lives in a YAML file as ``{value: ..., source: "..."}`` so that each constant
carries its provenance.  This module only reads and checks those files; the physics is in the
other modules.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).parent / "data"
CONFIDENCE_TAGS = ("[P]", "[R]", "[D]", "[U]")


@lru_cache(maxsize=None)
def load_data_file(name: str) -> dict[str, Any]:
    """Parsed contents of ``data/<name>.yaml`` (cached; treat as read-only)."""
    path = DATA_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown technology data file {name!r} (looked for {path})")
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _lookup(name: str, keys: tuple[str, ...]) -> Any:
    node: Any = load_data_file(name)
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"technology data {name}.yaml has no entry {'.'.join(keys)!r}")
        node = node[key]
    return node


def entry(name: str, *keys: str) -> dict[str, Any]:
    """The ``{value, source}`` record at ``keys`` in ``data/<name>.yaml``."""
    node = _lookup(name, keys)
    if not isinstance(node, dict) or "value" not in node or "source" not in node:
        raise ValueError(f"{name}.yaml:{'.'.join(keys)} is not a {{value, source}} entry")
    return node


def value(name: str, *keys: str) -> Any:
    """The ``value`` of the entry at ``keys`` in ``data/<name>.yaml``."""
    return entry(name, *keys)["value"]


def number(name: str, *keys: str) -> float:
    """A scalar value as ``float``."""
    return float(value(name, *keys))


def iter_entries(node: Any, path: tuple[str, ...] = ()):
    """Yield ``(path, entry)`` for every ``{value, source}`` record below ``node``."""
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
            return
        for key, child in node.items():
            yield from iter_entries(child, path + (str(key),))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from iter_entries(child, path + (str(index),))


def data_file_names() -> list[str]:
    """Names (without ``.yaml``) of every technology data file."""
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))
