"""Where trial evaluations run: in the coordinator process, or as Ray tasks.

Workers are pure: they receive a knob dict and return a ``TrialOutcome``; only the
coordinator touches the Optuna storage.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Protocol

from dse.errors import DSEError
from dse.evaluate import EvalContext, TrialOutcome, evaluate_trial

__all__ = ["Executor", "InlineExecutor", "RayExecutor", "make_executor"]

Result = tuple[int, TrialOutcome | BaseException]


class Executor(Protocol):
    def submit(self, number: int, knobs: dict[str, Any]) -> None: ...
    def wait_one(self) -> Result: ...
    def in_flight(self) -> int: ...
    def close(self) -> None: ...


class InlineExecutor:
    """Evaluates each trial in the coordinator process, one at a time."""

    def __init__(self, ctx: EvalContext) -> None:
        self._ctx = ctx
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()

    def submit(self, number: int, knobs: dict[str, Any]) -> None:
        self._queue.append((number, knobs))

    def wait_one(self) -> Result:
        number, knobs = self._queue.popleft()
        try:
            return number, evaluate_trial(self._ctx, knobs)
        except Exception as exc:  # a failed evaluation fails its trial, not the study
            return number, exc

    def in_flight(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()


# Ray worker processes keep the deserialised context between tasks, keyed by its object id,
# so the prepared model crosses the object store once per worker instead of once per trial.
_WORKER_CONTEXTS: dict[str, EvalContext] = {}


def _evaluate_in_worker(ctx_box: list, knobs: dict[str, Any], num_threads: int) -> TrialOutcome:
    import ray
    import torch

    torch.set_num_threads(num_threads)  # a reused worker keeps a stale OMP setting otherwise
    ref = ctx_box[0]
    key = ref.hex()
    if key not in _WORKER_CONTEXTS:
        _WORKER_CONTEXTS.clear()
        _WORKER_CONTEXTS[key] = ray.get(ref)
    return evaluate_trial(_WORKER_CONTEXTS[key], knobs)


class RayExecutor:
    """Runs evaluations as Ray tasks; local Ray by default, or joins ``address``."""

    def __init__(self, ctx: EvalContext, *, address: str | None, cpus_per_trial: float,
                 max_retries: int = 2) -> None:
        import ray

        address = address or os.environ.get("RAY_ADDRESS")
        try:
            if not ray.is_initialized():
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                             log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DSEError(f"cannot start or join Ray ({address or 'local'}): {exc}") from None
        self._ray = ray
        self._ctx_ref = ray.put(ctx)
        self._threads = max(1, int(cpus_per_trial))
        self._remote = ray.remote(num_cpus=cpus_per_trial, max_retries=max_retries)(
            _evaluate_in_worker
        )
        self._pending: dict[Any, int] = {}

    def submit(self, number: int, knobs: dict[str, Any]) -> None:
        ref = self._remote.remote([self._ctx_ref], knobs, self._threads)
        self._pending[ref] = number

    def wait_one(self) -> Result:
        ready, _ = self._ray.wait(list(self._pending), num_returns=1)
        number = self._pending.pop(ready[0])
        try:
            return number, self._ray.get(ready[0])
        except Exception as exc:  # RayTaskError wraps the worker's exception
            cause = getattr(exc, "cause", None)
            return number, cause if isinstance(cause, BaseException) else exc

    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=True)
        self._pending.clear()


def make_executor(kind: str, ctx: EvalContext, *, address: str | None, cpus_per_trial: float) -> Executor:
    if kind == "inline":
        return InlineExecutor(ctx)
    if kind == "ray":
        return RayExecutor(ctx, address=address, cpus_per_trial=cpus_per_trial)
    raise DSEError(f"unknown executor {kind!r} (inline or ray)")
