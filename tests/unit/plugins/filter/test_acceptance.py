"""Filter acceptance_plan: the runs planned for GPU, CPU and unsupported queues."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.xpu.parallelcluster.plugins.filter.acceptance import acceptance_plan

OBSOLETE = ("FI_EFA_USE_DEVICE_RDMA", "FI_PROVIDER", "NCCL_PROTO")


def names(plan: dict) -> list[str]:
    return [r["name"] for r in plan["runs"]]


def test_a_p6_queue_gets_collectives_scaling_ring_and_efa_only_runs() -> None:
    plan = acceptance_plan([{"name": "gpu", "instance_type": "p6-b200.48xlarge", "max_nodes": 8}])
    assert names(plan) == [
        "gpu-all_reduce-1n",
        "gpu-all_gather-1n",
        "gpu-reduce_scatter-1n",
        "gpu-alltoall-1n",
        "gpu-sendrecv-1n",
        "gpu-all_reduce-2n",
        "gpu-all_reduce-2n-ring",
        "gpu-all_reduce-4n",
        "gpu-all_reduce-4n-ring",
        "gpu-all_reduce-8n",
        "gpu-all_reduce-8n-ring",
        "gpu-all_reduce-1n-efa_only",
    ]
    runs = {r["name"]: r for r in plan["runs"]}
    assert all(r["tasks_per_node"] == 8 and r["benchmark"] == "nccl-tests" for r in runs.values())
    assert runs["gpu-all_reduce-4n-ring"]["env"]["NCCL_ALGO"] == "Ring"
    assert "NCCL_ALGO" not in runs["gpu-all_reduce-4n"]["env"]
    assert runs["gpu-all_reduce-1n-efa_only"]["env"]["NCCL_P2P_DISABLE"] == "1"
    assert all(r["env"]["NCCL_DEBUG"] == "INFO" for r in runs.values())  # the provider line
    assert not any(k in r["env"] for r in runs.values() for k in OBSOLETE)
    assert plan["skipped"] == []


def test_node_cap_odd_sizes_and_the_container_variant() -> None:
    plan = acceptance_plan(
        [{"name": "p5", "instance_type": "p5.48xlarge", "max_nodes": 6}],
        max_nodes=3,
        container_image="/fsx/images/nccl-tests.sqsh",
    )
    scaling = [r["nodes"] for r in plan["runs"] if r["variant"] == "default" and r["nodes"] > 1]
    assert scaling == [2, 3]
    [container] = [r for r in plan["runs"] if r["variant"] == "container"]
    assert container["nodes"] == 2 and container["container_image"].endswith(".sqsh")
    assert "/opt/amazon/ofi-nccl:/opt/amazon/ofi-nccl" in container["container_mounts"]


def test_a_gpu_type_without_efa_has_no_efa_only_run() -> None:
    plan = acceptance_plan([{"name": "g6", "instance_type": "g6.xlarge", "max_nodes": 1}])
    assert names(plan) == [
        f"g6-{c}-1n" for c in ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "sendrecv")
    ]
    assert plan["runs"][0]["tasks_per_node"] == 1


def test_cpu_queue_runs_mpi_with_one_rank_per_node_and_small_messages() -> None:
    plan = acceptance_plan(
        [{"name": "cpu", "instance_type": "c6i.xlarge", "max_nodes": 4}], cpu_bytes=["1K", "4M"]
    )
    assert names(plan) == ["cpu-all_reduce-2n", "cpu-all_reduce-4n", "cpu-sendrecv-2n"]
    assert {
        (r["benchmark"], r["tasks_per_node"], r["min_bytes"], r["max_bytes"]) for r in plan["runs"]
    } == {("mpi", 1, "1K", "4M")}


def test_queues_the_suite_cannot_test_are_skipped_with_a_reason() -> None:
    plan = acceptance_plan(
        [
            {"name": "trn", "instance_type": "trn1.32xlarge", "max_nodes": 4},
            {"name": "one", "instance_type": "c6i.xlarge", "max_nodes": 1},
        ]
    )
    assert plan["runs"] == []
    assert [s["queue"] for s in plan["skipped"]] == ["trn", "one"]
    assert "neuron accelerators" in plan["skipped"][0]["reason"]
    assert "2 nodes or more" in plan["skipped"][1]["reason"]


def test_a_queue_with_two_compute_resources_pins_each_run_to_its_instance_type() -> None:
    plan = acceptance_plan(
        [
            {
                "name": "mix",
                "compute_resource": "c6i",
                "instance_type": "c6i.xlarge",
                "max_nodes": 2,
            },
            {"name": "mix", "instance_type": "c7i.xlarge", "max_nodes": 2},
            {"name": "solo", "instance_type": "c6i.xlarge", "max_nodes": 2},
        ]
    )
    runs = {r["name"]: r for r in plan["runs"]}
    assert len(runs) == len(plan["runs"])  # no two runs share a folder
    assert runs["mix-c6i-all_reduce-2n"]["constraint"] == "c6i.xlarge"
    assert runs["mix-c7i-xlarge-sendrecv-2n"]["constraint"] == "c7i.xlarge"
    assert runs["mix-c7i-xlarge-sendrecv-2n"]["queue"] == "mix"
    assert runs["solo-all_reduce-2n"]["constraint"] == ""


def test_bad_queues_are_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="needs name, instance_type and max_nodes"):
        acceptance_plan([{"name": "x"}])
    with pytest.raises(AnsibleFilterError, match=r"queue x: .*p5\.48xlarge"):
        acceptance_plan([{"name": "x", "instance_type": "p5.48xlarg", "max_nodes": 1}])
