"""Device resolution, training precision and placement (issue #17), exercised on the CPU.

CI has no GPU: the CUDA branches are reached through their inputs (a GPU count, Ray's GPU ids),
and the placement code runs for real with ``cpu`` as the target device.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from dse.compression.spec import CompressionSpec
from dse.errors import ConfigError
from dse.evaluation import EvalContext, context_device, evaluate_trial, place_context
from dse.evaluation.cache import eval_key
from dse.modeling.batching import iter_batches
from dse.modeling.device import (
    EVAL_DTYPE,
    TRAIN_DTYPE,
    device_class,
    gpu_index_for_ray,
    model_device,
    resolve_device,
    train_autocast,
)
from dse.modeling.inference import dev_layer_logits

from ..tiny_eval import tiny_config, tiny_context


@pytest.mark.parametrize(("spec", "count", "expected"), [
    ("auto", 0, "cpu"), ("auto", 2, "cuda:0"), ("cpu", 4, "cpu"), ("cuda", 1, "cuda:0"), ("cuda:1", 2, "cuda:1"),
])
def test_resolve_device(spec: str, count: int, expected: str) -> None:
    assert resolve_device(spec, cuda_count=count) == torch.device(expected)


@pytest.mark.parametrize(("spec", "count", "message"), [
    ("cuda", 0, "device 'cuda': no CUDA GPU is visible to torch here"),
    ("cuda:0", 0, "device 'cuda:0': no CUDA GPU is visible"),
    ("cuda:2", 2, r"device 'cuda:2': only 2 CUDA GPU\(s\) visible \(cuda:0..cuda:1\)"),
    ("gpu", 1, "device 'gpu': use auto, cpu, cuda or cuda:N"),
    ("cuda:-1", 1, "use auto, cpu, cuda or cuda:N"),
])
def test_a_device_that_is_not_there_is_one_config_error_line(spec: str, count: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        resolve_device(spec, cuda_count=count)
    assert "\n" not in str(info.value)


def test_this_machine_auto_is_what_torch_sees() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_training_runs_bf16_autocast_on_cuda_only() -> None:
    layer = torch.nn.Linear(4, 4)
    with train_autocast(torch.device("cpu")):
        assert layer(torch.ones(1, 4)).dtype == torch.float32  # CPU trains in fp32
    with warnings.catch_warnings():  # "CUDA is not available": the object is still what CUDA gets
        warnings.simplefilter("ignore")
        cuda = train_autocast(torch.device("cuda", 0))
    assert isinstance(cuda, torch.autocast) and cuda.device == "cuda" and cuda.fast_dtype == TRAIN_DTYPE
    assert TRAIN_DTYPE == torch.bfloat16 and EVAL_DTYPE == torch.float32


def test_device_class_ignores_the_gpu_index() -> None:
    assert device_class("cuda:3") == device_class(torch.device("cuda", 0)) == "cuda"
    assert device_class("cpu") == "cpu"


@pytest.mark.parametrize(("assigned", "visible", "index"), [
    ([2], None, 2),  # CUDA_VISIBLE_DEVICES unset: torch numbers every GPU
    (["3"], ("3",), 0),  # Ray's usual case: only the assigned GPU is visible
    ([3], ("1", "3"), 1),
])
def test_gpu_index_for_ray(assigned: list, visible: tuple | None, index: int) -> None:
    assert gpu_index_for_ray(assigned, visible) == index


def test_gpu_index_for_ray_refuses_a_gpu_the_process_cannot_see() -> None:
    with pytest.raises(ConfigError, match="Ray assigned GPU 2, which this worker cannot see"):
        gpu_index_for_ray([2], ("0",))
    with pytest.raises(ConfigError, match="given no GPU"):
        gpu_index_for_ray([], None)


def test_batches_follow_the_model_device() -> None:
    ctx = tiny_context(None, rows=8)
    batch = next(iter_batches(ctx.dev, batch_size=4, pad_id=0))
    assert batch.to(torch.device("cpu")) is batch  # already there: no copy
    assert model_device(ctx.model) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters


def _placed(device: str) -> EvalContext:
    ctx = tiny_context(None)
    place_context(ctx, resolve_device(device))
    return ctx


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine auto is the GPU: compared in benchmarks")
def test_device_cpu_and_auto_give_identical_results_on_a_cpu_only_machine() -> None:
    knobs = tiny_config().knob_values({"encoder_pruning": 0.5, "exit_threshold": 0.3})
    explicit, auto = _placed("cpu"), _placed("auto")
    assert context_device(explicit) == context_device(auto) == torch.device("cpu")
    a, b = evaluate_trial(explicit, knobs), evaluate_trial(auto, knobs)
    assert a.metrics == b.metrics
    assert torch.equal(dev_layer_logits(explicit.model, explicit.dev, pad_id=0),
                       dev_layer_logits(auto.model, auto.dev, pad_id=0))


def test_the_logits_cache_key_does_not_depend_on_where_the_pass_ran() -> None:
    # dev passes are fp32 on every device: a GPU run reuses CPU logits (and the reverse)
    ctx = tiny_context(None)
    spec = CompressionSpec.from_knobs(tiny_config().knob_values({"encoder_pruning": 0.5}))
    before = eval_key(ctx, spec)
    place_context(ctx, "cpu")
    assert eval_key(ctx, spec) == before
