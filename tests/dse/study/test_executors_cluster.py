"""Ray beyond one local instance: GPU requests and a real two-node cluster (issue #17 items 2, 5).

CI has no GPU, so a Ray instance that *declares* one shows the request for real: Ray gives the
task a GPU id and ``CUDA_VISIBLE_DEVICES``, and the worker, asked to run on that GPU with a
CPU-only torch, says so in one line. The cluster is a real head and a second node (separate
raylet processes on loopback, ``ray.cluster_utils.Cluster``) joined through ``ray_address``
as ``--ray-address`` does; trials land on both, and the study resumes there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from dse.errors import DSEError
from dse.study.engine import StudyFolder, open_study, run_study
from dse.study.executors import RayExecutor, check_executor, ray_capacity, worker_device

from .conftest import tiny_config, tiny_context

ray = pytest.importorskip("ray")


@pytest.mark.parametrize(("cpus", "gpus", "cpu_each", "gpu_each", "capacity"), [
    (16, 1, 1, 0.25, 4),  # four trials share one GPU
    (16, 2, 1, 0.25, 8),  # several GPUs: several trials at once
    (2, 1, 1, 0.25, 2),  # the CPUs bind first
    (16, 3, 2, 1, 3),
    (4, 0, 1, 0, 4),  # no GPU asked for: CPUs only
])
def test_ray_capacity_counts_gpu_shares(cpus: float, gpus: float, cpu_each: float, gpu_each: float,
                                        capacity: int) -> None:
    assert ray_capacity(cpus, gpus, cpu_each, gpu_each) == capacity


def test_gpus_per_trial_is_refused_where_no_gpu_can_serve_it() -> None:
    check_executor("ray", address=None, gpus_per_trial=0.0, cuda_count=0)  # nothing asked: fine
    check_executor("ray", address=None, gpus_per_trial=0.25, cuda_count=1)
    check_executor("ray", address="10.0.0.1:6379", gpus_per_trial=1, cuda_count=0)  # the cluster's GPUs count
    with pytest.raises(DSEError, match="gpus_per_trial=0.5 but no CUDA GPU is visible here"):
        check_executor("ray", address=None, gpus_per_trial=0.5, cuda_count=0)
    with pytest.raises(DSEError, match="is a Ray request; the inline executor runs trials on the study's device"):
        check_executor("inline", address=None, gpus_per_trial=1, cuda_count=1)


def test_worker_device_is_the_cpu_without_a_gpu_request() -> None:
    assert worker_device(False, [], 0) == torch.device("cpu")
    with pytest.raises(DSEError, match=r"Ray assigned GPU\(s\) \[0\] to this trial, but torch on its node sees no CUDA"):
        worker_device(True, [0], 0)


def test_a_gpu_request_reaches_the_worker(tmp_path: Path) -> None:
    """A Ray instance declaring one GPU: 0.25 per trial packs four trials on it, and each trial's
    worker is handed the GPU (here a CPU-only torch cannot use it: the trial fails in one line)."""
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor(tiny_context(None), cpus_per_trial=1, gpus_per_trial=0.25)
        assert executor.capacity == 4
        executor.submit(3, tiny_config().knob_values({}))
        number, outcome = executor.wait_one()
        assert number == 3
        if torch.cuda.is_available():  # a real GPU: the trial ran on it
            assert outcome.attrs["worker"]["device"].startswith("cuda")
        else:
            assert isinstance(outcome, DSEError) and "Ray assigned GPU(s)" in str(outcome)
        executor.close()
        with pytest.raises(DSEError, match="gpus_per_trial=2 but the Ray cluster has 1 GPUs"):
            RayExecutor(tiny_context(None), gpus_per_trial=2)
    finally:
        ray.shutdown()


def test_study_on_a_two_node_cluster_lands_trials_on_both_and_resumes(tmp_path: Path) -> None:
    import time

    from ray.cluster_utils import Cluster

    from dse.evaluation import evaluate_trial

    def busy(ctx, knobs):  # noqa: ANN001, ANN202
        time.sleep(1.0)  # long enough that two trials in flight need both nodes' one CPU
        return evaluate_trial(ctx, knobs)

    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        nodes = {n.node_id for n in cluster.list_all_nodes()}
        assert len(nodes) == 2
        folder = StudyFolder(tmp_path / "cluster")
        config = tiny_config(name="cluster", n_trials=6, executor={"kind": "ray", "max_in_flight": 2})
        # the logits cache is a path every node reaches (here the same disk): a dev pass one node
        # did is a cache hit on the other
        first = run_study(folder, config, n_trials=4, ray_address=cluster.address,
                          context=tiny_context(folder.cache.resolve()), evaluate=busy)
        assert first.completed == 4 and first.failed == 0
        assert not ray.is_initialized()  # the driver left the cluster; the cluster runs on
        second = run_study(folder, config, ray_address=cluster.address, context=tiny_context(folder.cache.resolve()),
                           evaluate=busy)
        assert second.completed == 6 and second.failed == 0
        study = open_study(folder, config, create=False)
        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        assert len(done) == 6
        landed = {t.user_attrs["details"]["worker"]["node_id"] for t in done}
        assert landed == nodes, f"trials ran on {landed}, cluster nodes {nodes}"
        # one dev pass per compression setting across nodes and runs: the rest read the shared cache
        computed = [t.user_attrs["details"]["eval_key"] for t in done if not t.user_attrs["cache_hit"]]
        assert len(computed) == len(set(computed)) and len(computed) < len(done)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
