"""How many workers a batch starts and what each reserves, from the cluster's resources (no Ray started)."""

from __future__ import annotations

import pytest

from rsinfer.batch.scheduler import BatchOptions, gpu_worker_cpu_share, worker_count, worker_resources
from rsinfer.errors import RsinferError


class FakeCluster:
    """What the scheduler asks of Ray: the cluster's total resources and its nodes."""

    def __init__(self, *nodes: dict[str, float]):
        self._nodes = [{"Alive": True, "Resources": dict(n)} for n in nodes]

    def nodes(self):
        return self._nodes

    def cluster_resources(self):
        total: dict[str, float] = {}
        for node in self._nodes:
            for key, value in node["Resources"].items():
                total[key] = total.get(key, 0) + value
        return total


def test_a_gpu_worker_reserves_its_share_of_the_cpus_of_the_tightest_gpu_node():
    # The CPU-only node holds no GPU worker.
    nodes = FakeCluster({"CPU": 32, "GPU": 8}, {"CPU": 16, "GPU": 2}, {"CPU": 64}).nodes()
    assert gpu_worker_cpu_share(nodes, 1.0) == 4  # 32 / 8 on the first node, 16 / 2 on the second
    assert gpu_worker_cpu_share(nodes, 0.5) == 2  # two workers per GPU
    assert gpu_worker_cpu_share(FakeCluster({"CPU": 2, "GPU": 4}).nodes(), 1.0) == 1  # never less than one
    dead = [{"Alive": False, "Resources": {"CPU": 1, "GPU": 8}}, *nodes]
    assert gpu_worker_cpu_share(dead, 1.0) == 4  # a node that left the cluster does not count


def test_resources_follow_the_cluster_and_the_device():
    gpu_box = FakeCluster({"CPU": 16, "GPU": 2})
    assert worker_resources(gpu_box, BatchOptions(segment={})) == (8.0, 1.0)
    assert worker_resources(gpu_box, BatchOptions(segment={}, gpus_per_worker=0.5)) == (4.0, 0.5)
    assert worker_resources(gpu_box, BatchOptions(segment={}, device="cpu")) == (1.0, 0.0)
    assert worker_resources(gpu_box, BatchOptions(segment={}, cpus_per_worker=3)) == (3, 1.0)
    with pytest.raises(RsinferError, match="no GPU"):
        worker_resources(FakeCluster({"CPU": 4}), BatchOptions(segment={}, device="cuda"))


def test_worker_count_is_what_fits_and_never_more_than_the_scenes():
    gpu_box = FakeCluster({"CPU": 16, "GPU": 2})
    assert worker_count(gpu_box, None, scenes=10, cpus=1, gpus=1) == 2  # one per GPU
    assert worker_count(gpu_box, None, scenes=10, cpus=1, gpus=0.5) == 4
    assert worker_count(gpu_box, None, scenes=3, cpus=1, gpus=0.5) == 3
    assert worker_count(gpu_box, None, scenes=100, cpus=1, gpus=0) == 16
    assert worker_count(gpu_box, 5, scenes=3, cpus=1, gpus=0) == 3
    with pytest.raises(RsinferError, match="no worker fits"):
        worker_count(gpu_box, None, scenes=3, cpus=32, gpus=0)
