"""Where trial evaluations run: in the coordinator process, or as Ray tasks.

Workers are pure: they receive a knob dict and return a ``TrialOutcome``; only the
coordinator touches the Optuna storage. A failed evaluation comes back as the exception,
after the retries it deserves: transient errors (:class:`TransientEvaluationError`) are
re-run in place, and with Ray a dead worker process is re-run on a fresh one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from dse.errors import DSEError
from dse.evaluation import AnyContext, MultiTaskContext, TrialOutcome, evaluate_trial

__all__ = [
    "EvaluateFn",
    "Executor",
    "InlineExecutor",
    "OneEvaluationPerKey",
    "RayExecutor",
    "TransientEvaluationError",
    "check_executor",
    "compression_key",
    "make_executor",
    "ray_capacity",
]

log = logging.getLogger(__name__)

EvaluateFn = Callable[[AnyContext, dict[str, Any]], TrialOutcome]
Result = tuple[int, TrialOutcome | BaseException]


class TransientEvaluationError(RuntimeError):
    """An evaluation error worth re-running as is (I/O, memory pressure); raise it to ask for a retry."""


def _evaluate(evaluate: EvaluateFn, ctx: AnyContext, knobs: dict[str, Any]) -> TrialOutcome:
    try:
        return evaluate(ctx, knobs)
    except (OSError, MemoryError) as exc:  # the cache disk or RAM, not the design: may pass next time
        raise TransientEvaluationError(f"{exc.__class__.__name__}: {exc}") from exc


class Executor(Protocol):
    def submit(self, number: int, knobs: dict[str, Any]) -> None: ...
    def wait_one(self) -> Result: ...
    def in_flight(self) -> int: ...
    def close(self) -> None: ...


class InlineExecutor:
    """Evaluates each trial in the coordinator process, one at a time."""

    def __init__(self, ctx: AnyContext, *, evaluate: EvaluateFn = evaluate_trial, max_retries: int = 2) -> None:
        self._ctx = ctx
        self._evaluate = evaluate
        self._max_retries = max_retries
        self._queue: deque[tuple[int, dict[str, Any]]] = deque()

    def submit(self, number: int, knobs: dict[str, Any]) -> None:
        self._queue.append((number, knobs))

    def wait_one(self) -> Result:
        number, knobs = self._queue.popleft()
        for attempt in range(self._max_retries + 1):
            try:
                return number, _evaluate(self._evaluate, self._ctx, knobs)
            except TransientEvaluationError as exc:
                if attempt == self._max_retries:
                    return number, exc
                log.warning("trial %d: %s; retrying (%d/%d)", number, exc, attempt + 1, self._max_retries)
            except Exception as exc:  # a failed evaluation fails its trial, not the study
                return number, exc
        raise AssertionError("unreachable")

    def in_flight(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()


# Ray worker processes keep the deserialised context between tasks, keyed by its object id,
# so the prepared model crosses the object store once per worker instead of once per trial.
_WORKER_CONTEXTS: dict[str, AnyContext] = {}
# CUDA_VISIBLE_DEVICES as this worker process had it when it first used CUDA (torch reads it once)
_VISIBLE_AT_CUDA_INIT: list[tuple[str, ...] | None] = []


def worker_device(use_gpu: bool, assigned: list[Any], cuda_count: int) -> Any:
    """The torch device of a Ray task: CPU, or the first GPU Ray ``assigned`` it (``ray.get_gpu_ids()``)."""
    import torch

    from dse.modeling.device import gpu_index_for_ray

    if not use_gpu:
        return torch.device("cpu")
    if cuda_count == 0:
        raise DSEError(f"Ray assigned GPU(s) {assigned} to this trial, but torch on its node sees no CUDA "
                       "device (a CPU-only torch build?)")
    if not _VISIBLE_AT_CUDA_INIT:
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        _VISIBLE_AT_CUDA_INIT.append(None if env is None else tuple(v.strip() for v in env.split(",")))
    return torch.device("cuda", gpu_index_for_ray(assigned, _VISIBLE_AT_CUDA_INIT[0]))


def _evaluate_in_worker(ctx_box: list, evaluate: EvaluateFn, knobs: dict[str, Any], num_threads: int,
                        use_gpu: bool = False) -> TrialOutcome:
    import ray
    import torch

    from dse.evaluation import place_context

    torch.set_num_threads(num_threads)  # a reused worker keeps a stale OMP setting otherwise
    device = worker_device(use_gpu, ray.get_gpu_ids() if use_gpu else [],
                           torch.cuda.device_count() if use_gpu else 0)
    ref = ctx_box[0]  # boxed: a bare ObjectRef argument would be fetched and unpickled per task
    key = ref.hex()
    if key not in _WORKER_CONTEXTS:
        _WORKER_CONTEXTS.clear()
        _WORKER_CONTEXTS[key] = ray.get(ref)
    ctx = _WORKER_CONTEXTS[key]
    place_context(ctx, device)  # a no-op once there
    outcome = _evaluate(evaluate, ctx, knobs)
    # where it ran, for the record (trials landing on every node of a cluster)
    outcome.attrs["worker"] = {"node_id": ray.get_runtime_context().get_node_id(), "device": str(device)}
    return outcome


def ray_capacity(cpus: float, gpus: float, cpus_per_trial: float, gpus_per_trial: float) -> int:
    """Trials a Ray cluster with ``cpus`` and ``gpus`` runs at once (0.25 GPU per trial: four per GPU)."""
    by_cpu = int(cpus // cpus_per_trial)
    by_gpu = int(round(gpus / gpus_per_trial, 6)) if gpus_per_trial > 0 else by_cpu
    return max(1, min(by_cpu, by_gpu))


def check_executor(kind: str, *, address: str | None, gpus_per_trial: float, cuda_count: int | None = None) -> None:
    """Refuse, before any fine-tune, an executor setting that cannot run here (one line).

    ``gpus_per_trial`` needs Ray, and a GPU: a local Ray must see one through torch
    (``cuda_count``; default torch's count); a cluster's GPUs are checked when it is joined.
    """
    if gpus_per_trial <= 0:
        return
    if kind != "ray":
        raise DSEError(f"executor.gpus_per_trial={gpus_per_trial:g} is a Ray request; the inline executor runs "
                       "trials on the study's device (device: auto, cuda or cuda:N)")
    if address or os.environ.get("RAY_ADDRESS"):
        return
    if cuda_count is None:
        import torch

        cuda_count = torch.cuda.device_count()
    if cuda_count == 0:
        raise DSEError(f"executor.gpus_per_trial={gpus_per_trial:g} but no CUDA GPU is visible here "
                       "(torch sees none); set it to 0, or join a cluster with GPUs (--ray-address)")


def _put_from_cpu(ray: Any, ctx: AnyContext) -> Any:
    """``ray.put(ctx)`` with its models on the CPU (a worker without a GPU can unpickle it; each
    worker then moves it to its own device); the coordinator's copy stays where it was."""
    from dse.evaluation import EvalContext, MultiTaskContext, context_device, place_context

    if not isinstance(ctx, EvalContext | MultiTaskContext):  # an engine test's own context
        return ray.put(ctx)
    device = context_device(ctx)
    place_context(ctx, "cpu")
    try:
        return ray.put(ctx)
    finally:
        place_context(ctx, device)


class RayExecutor:
    """Runs evaluations as Ray tasks; a local Ray instance by default, or joins ``address``."""

    def __init__(self, ctx: AnyContext, *, evaluate: EvaluateFn = evaluate_trial, address: str | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0, max_retries: int = 2) -> None:
        import ray

        address = address or os.environ.get("RAY_ADDRESS") or None
        self._started = False
        try:
            if not ray.is_initialized():
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False)
                else:  # a private local instance; address="local" ignores a stray RAY_ADDRESS
                    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                             log_to_driver=False)
                self._started = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise DSEError(f"cannot start or join Ray ({address or 'local'}): {first}") from None
        cpus = float(ray.cluster_resources().get("CPU", 0))
        if cpus_per_trial > cpus:
            self.close()
            raise DSEError(f"executor.cpus_per_trial={cpus_per_trial:g} but the Ray cluster has {cpus:g} CPUs")
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus_per_trial > gpus:
            self.close()
            raise DSEError(f"executor.gpus_per_trial={gpus_per_trial:g} but the Ray cluster has {gpus:g} GPUs")
        self._ray = ray
        self.capacity = ray_capacity(cpus, gpus, cpus_per_trial, gpus_per_trial)  # trials the cluster runs at once
        self._ctx_ref = _put_from_cpu(ray, ctx)  # once per study; workers cache the unpickled copy
        self._evaluate_ref = evaluate
        self._threads = max(1, int(cpus_per_trial))
        self._use_gpu = gpus_per_trial > 0
        resources: dict[str, float] = {"num_cpus": cpus_per_trial}
        if gpus_per_trial:
            # Ray's default for GPU tasks (max_calls=1) is kept: a fresh worker process per trial, so
            # the CUDA_VISIBLE_DEVICES torch reads at start is always the GPU Ray assigned (a reused
            # process would keep its first GPU); the context then comes from the node's object store.
            resources["num_gpus"] = gpus_per_trial
        self._remote = ray.remote(
            **resources,
            max_retries=max_retries,  # a dead worker process: re-run on a fresh one
            retry_exceptions=[TransientEvaluationError],
        )(_evaluate_in_worker)
        self._pending: dict[Any, int] = {}

    def submit(self, number: int, knobs: dict[str, Any]) -> None:
        ref = self._remote.remote([self._ctx_ref], self._evaluate_ref, knobs, self._threads, self._use_gpu)
        self._pending[ref] = number

    def wait_one(self) -> Result:
        ready, _ = self._ray.wait(list(self._pending), num_returns=1)
        number = self._pending.pop(ready[0])
        try:
            return number, self._ray.get(ready[0])
        except Exception as exc:  # RayTaskError wraps the worker's exception; WorkerCrashedError has none
            cause = getattr(exc, "cause", None)
            return number, cause if isinstance(cause, BaseException) else exc

    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        for ref in getattr(self, "_pending", {}):
            self._ray.cancel(ref, force=True)
        self._pending = {}
        if self._started:  # our own local instance: do not leave Ray processes behind
            import ray

            ray.shutdown()
            self._started = False


def compression_key(knobs: dict[str, Any], tasks: Sequence[str] = ()) -> str:
    """Identity of the model evaluations a trial needs (the logits cache key's knob part).

    A multi-task trial (``tasks`` given) needs one per task: every task's compression setting,
    read as that task sees its knobs (its ``<task>.<knob>`` values in place of shared ones).
    """
    from dse.compression.spec import CompressionSpec
    from dse.config.knobs import knobs_for_task

    if not tasks:
        return json.dumps(CompressionSpec.from_knobs(knobs).as_dict(), sort_keys=True)
    specs = {t: CompressionSpec.from_knobs(knobs_for_task(knobs, t)).as_dict() for t in tasks}
    return json.dumps(specs, sort_keys=True)


class OneEvaluationPerKey:
    """Holds back a trial whose model evaluation is already in flight, so it is computed once.

    Two concurrent trials that differ only in cheap knobs would both miss the logits cache;
    the second one waits and then hits the cache instead.
    """

    def __init__(self, inner: Executor, key: Callable[[dict[str, Any]], str] = compression_key) -> None:
        self._inner = inner
        self._key = key
        self._running: dict[int, str] = {}
        self._held: deque[tuple[int, dict[str, Any], str]] = deque()
        self._failed: deque[Result] = deque()  # trials whose key could not be computed

    def submit(self, number: int, knobs: dict[str, Any]) -> None:
        try:
            key = self._key(knobs)
        except Exception as exc:  # a bad knob dict fails its trial, not the study
            self._failed.append((number, exc))
            return
        if key in self._running.values():
            self._held.append((number, knobs, key))
        else:
            self._running[number] = key
            self._inner.submit(number, knobs)

    def wait_one(self) -> Result:
        if self._failed:
            return self._failed.popleft()
        number, result = self._inner.wait_one()
        key = self._running.pop(number)
        for item in list(self._held):
            if item[2] == key:  # its evaluation is done (cached, or failed): run it now
                self._held.remove(item)
                self._running[item[0]] = key
                self._inner.submit(item[0], item[1])
                break
        return number, result

    def in_flight(self) -> int:
        return self._inner.in_flight() + len(self._held) + len(self._failed)

    def close(self) -> None:
        self._held.clear()
        self._failed.clear()
        self._inner.close()


def make_executor(kind: str, ctx: AnyContext, *, address: str | None = None, cpus_per_trial: float = 1.0,
                  gpus_per_trial: float = 0.0, max_retries: int = 2,
                  evaluate: EvaluateFn = evaluate_trial) -> Executor:
    if kind == "inline":
        return InlineExecutor(ctx, evaluate=evaluate, max_retries=max_retries)
    if kind == "ray":
        tasks = tuple(ctx.tasks) if isinstance(ctx, MultiTaskContext) else ()
        return OneEvaluationPerKey(RayExecutor(ctx, evaluate=evaluate, address=address,
                                               cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                                               max_retries=max_retries),
                                   key=functools.partial(compression_key, tasks=tasks))
    raise DSEError(f"unknown executor {kind!r} (inline or ray)")
