"""The installed environment is exactly the one ``requirements.lock`` pins (``make lock`` refreshes it).

Figures in the docs and the golden tests were measured with the lock's versions; an environment
that drifted from it (a newer transformers, numpy, ...) can change them, so the suite says so first.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def locked_versions(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: not an exact pin: {line!r}"
            pins[_normalize(name)] = version
    return pins


def installed_versions() -> dict[str, str]:
    return {_normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def drift(locked: dict[str, str], installed: dict[str, str]) -> list[str]:
    return [f"{name}: locked {version}, installed {installed.get(name, 'nothing')}"
            for name, version in sorted(locked.items()) if installed.get(name) != version]


def test_installed_versions_match_the_lock() -> None:
    locked = locked_versions(LOCK.read_text())
    assert {"torch", "transformers", "optuna", "ray", "numpy", "pandas", "pip"} <= locked.keys()
    problems = drift(locked, installed_versions())
    assert not problems, "the environment differs from requirements.lock (run make install):\n" + "\n".join(problems)


def test_drift_is_reported() -> None:
    locked = locked_versions("# header\ntorch==2.13.0+cpu\nNumPy==2.4.6\n")
    assert drift(locked, {"torch": "2.13.0+cpu", "numpy": "2.4.6"}) == []
    assert drift(locked, {"torch": "2.13.0+cpu", "numpy": "2.5.0"}) == ["numpy: locked 2.4.6, installed 2.5.0"]
    assert drift(locked, {"torch": "2.13.0+cpu"}) == ["numpy: locked 2.4.6, installed nothing"]
