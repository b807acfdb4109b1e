"""The evaluation caches read back safely: a damaged ``.npz`` is discarded and recomputed (issue #16)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from dse.evaluation.cache import cached_arrays
from dse.evaluation.context import load_arrays

from ..tiny_eval import tiny_context


class _Boom:
    """Unpickling it would create a marker file: proves a cache is never unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def _damage(path: Path, how: str, marker: Path) -> None:
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif how == "pickle":
        path.write_bytes(pickle.dumps({"logits": _Boom(marker)}))
    elif how == "empty":
        path.write_bytes(b"")


DAMAGE = ["truncated", "garbage", "pickle", "empty"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_logits_cache_is_discarded_and_recomputed(tmp_path: Path, how: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    arrays = {"logits": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}
    calls: list[int] = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return arrays

    cached_arrays(tiny_context(cache), "k", compute)
    _damage(cache / "k.npz", how, tmp_path / "pwned")
    again, hit = cached_arrays(tiny_context(cache), "k", compute)  # a new context: no memory copy
    assert not hit and len(calls) == 2 and np.array_equal(again["logits"], arrays["logits"])
    assert "damaged cache file" in caplog.text and str(cache / "k.npz") in caplog.text
    reread, hit = cached_arrays(tiny_context(cache), "k", compute)  # rewritten whole: a hit now
    assert hit and len(calls) == 2 and np.array_equal(reread["logits"], arrays["logits"])
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("how", [*DAMAGE, "missing-array"])
def test_a_damaged_entropy_cache_reads_as_missing(tmp_path: Path, how: str) -> None:
    path = tmp_path / "train-entropy-x.npz"
    np.savez(path, **({"other": np.zeros(3)} if how == "missing-array" else {"entropy": np.zeros((4, 3))}))
    if how != "missing-array":
        _damage(path, how, tmp_path / "pwned")
    assert load_arrays(path, ("entropy",)) is None
    assert not path.exists() and not (tmp_path / "pwned").exists()
