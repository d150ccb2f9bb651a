# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Filter ``acceptance_plan``: a cluster's acceptance benchmark runs, from the instance catalog."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: acceptance_plan
short_description: The acceptance benchmark runs for a cluster's queues
version_added: 0.1.0
description:
  - Turns the cluster's queues (name, instance type, largest node count) into the list of
    benchmark runs role C(xpu.parallelcluster.acceptance) submits, using the instance catalog.
  - GPU queues - single-node nccl-tests of all_reduce, all_gather, reduce_scatter, alltoall and
    sendrecv (data checks on); all_reduce scaling from 2 nodes up by powers of two to the queue's
    (or O(max_nodes)'s) size, each with the default algorithms and with C(NCCL_ALGO=Ring) for the
    line-rate comparison; on EFA types an EFA-only split (NVLink, shared memory and NVLS off, so
    every byte crosses the EFA interfaces); with O(container_image) a run through Pyxis with the
    EFA and OFI libraries mounted.
  - CPU queues - an MPI all_reduce over 2 and more nodes and a sendrecv bandwidth run (one rank
    per node, so the network is what is measured).
  - Queues the suite cannot test (Trainium, a single-node CPU queue) are listed in C(skipped)
    with the reason.
options:
  _input:
    description:
      - Queues - dicts with C(name), C(instance_type) and C(max_nodes), and optionally
        C(compute_resource).
      - A queue listed more than once (one entry per compute resource) gets runs named
        C(<queue>-<compute resource>-...) pinned with C(--constraint=<instance type>), the node
        feature ParallelCluster gives every node of a compute resource, so that each run lands on
        the instance type it is gated against.
    type: list
    elements: dict
    required: true
  max_nodes:
    description: Cap on the node count of any run (0 = the queue's size).
    type: int
    default: 0
  container_image:
    description: Enroot image (a squashfs file or a registry reference) for the container variant.
    type: str
    default: ""
  gpu_bytes:
    description: Message size range of GPU runs, C([min, max]) in nccl-tests' notation.
    type: list
    elements: str
    default: ["8", "16G"]
  cpu_bytes:
    description: Message size range of CPU runs.
    type: list
    elements: str
    default: ["1K", "16M"]
"""

EXAMPLES = r"""
- name: Plan the runs
  ansible.builtin.set_fact:
    plan: "{{ queues | xpu.parallelcluster.acceptance_plan(max_nodes=4) }}"
"""

RETURN = r"""
_value:
  description: C(runs) (list of run dicts) and C(skipped) (list of C({queue, reason})).
  type: dict
"""

import functools

from ansible.errors import AnsibleFilterError

try:
    from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog
except ImportError:  # pragma: no cover - unit tests import the tree directly
    from plugins.module_utils import catalog  # type: ignore[no-redef]

SINGLE_NODE = ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "sendrecv")
BASE_ENV = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET"}
EFA_ONLY_ENV = {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1", "NCCL_NVLS_ENABLE": "0"}
CONTAINER_MOUNTS = ["/opt/amazon/efa:/opt/amazon/efa", "/opt/amazon/ofi-nccl:/opt/amazon/ofi-nccl"]


def _scaling(largest: int) -> list[int]:
    counts, n = [], 2
    while n <= largest:
        counts.append(n)
        n *= 2
    if largest >= 2 and largest not in counts:
        counts.append(largest)
    return counts


def _run(
    target,
    itype,
    span,
    benchmark,
    collective,
    nodes,
    variant="default",
    env=None,
    tasks=1,
    image="",
):
    """One run's description; ``target`` = (queue, run name prefix, constraint), ``span`` =
    (min_bytes, max_bytes)."""
    queue, prefix, constraint = target
    suffix = "" if variant == "default" else f"-{variant}"
    return {
        "name": f"{prefix}-{collective}-{nodes}n{suffix}",
        "queue": queue,
        "constraint": constraint,
        "instance_type": itype,
        "benchmark": benchmark,
        "collective": collective,
        "variant": variant,
        "nodes": nodes,
        "tasks_per_node": tasks,
        "env": dict(env or {}),
        "min_bytes": span[0],
        "max_bytes": span[1],
        "container_image": image,
        "container_mounts": CONTAINER_MOUNTS if image else [],
    }


def acceptance_plan(queues, max_nodes=0, container_image="", gpu_bytes=None, cpu_bytes=None):
    gpu_bytes = list(gpu_bytes or ["8", "16G"])
    cpu_bytes = list(cpu_bytes or ["1K", "16M"])
    runs, skipped = [], []
    listed = [q.get("name") if isinstance(q, dict) else None for q in queues or []]
    for queue in queues or []:
        try:
            name, itype = queue["name"], queue["instance_type"]
            size = int(queue.get("max_nodes") or 1)
        except (KeyError, TypeError, ValueError) as exc:
            raise AnsibleFilterError(
                "acceptance_plan: each queue needs name, instance_type and max_nodes"
                f" ({queue!r}): {exc}"
            ) from exc
        try:
            entry = catalog.lookup(itype)
        except catalog.UnknownInstanceTypeError as exc:
            raise AnsibleFilterError(f"acceptance_plan: queue {name}: {exc}") from exc
        largest = min(size, max_nodes) if max_nodes else size
        if listed.count(name) > 1:
            part = str(queue.get("compute_resource") or itype.replace(".", "-"))
            target = (name, f"{name}-{part}", itype)
        else:
            target = (name, name, "")

        run = functools.partial(_run, target, itype, gpu_bytes)

        if entry.is_gpu:
            gpus = entry.accelerator_count
            for collective in SINGLE_NODE:
                runs.append(run("nccl-tests", collective, 1, env=BASE_ENV, tasks=gpus))
            for nodes in _scaling(largest):
                runs.append(run("nccl-tests", "all_reduce", nodes, env=BASE_ENV, tasks=gpus))
                runs.append(
                    run(
                        "nccl-tests",
                        "all_reduce",
                        nodes,
                        "ring",
                        {**BASE_ENV, "NCCL_ALGO": "Ring"},
                        gpus,
                    )
                )
            if entry.efa_supported:
                runs.append(
                    run(
                        "nccl-tests",
                        "all_reduce",
                        1,
                        "efa_only",
                        {**BASE_ENV, **EFA_ONLY_ENV},
                        gpus,
                    )
                )
            if container_image:
                nodes = min(2, largest)
                runs.append(
                    run(
                        "nccl-tests",
                        "all_reduce",
                        nodes,
                        "container",
                        BASE_ENV,
                        gpus,
                        container_image,
                    )
                )
        elif entry.accelerator_kind != catalog.ACCEL_NONE:
            skipped.append(
                {
                    "queue": name,
                    "reason": f"{itype} has {entry.accelerator_kind} accelerators:"
                    " the suite covers NVIDIA GPUs and CPUs",
                }
            )
        elif largest < 2:
            skipped.append(
                {
                    "queue": name,
                    "reason": "a CPU queue needs 2 nodes or more for the MPI network benchmark",
                }
            )
        else:
            for nodes in _scaling(largest):
                runs.append(_run(target, itype, cpu_bytes, "mpi", "all_reduce", nodes))
            runs.append(_run(target, itype, cpu_bytes, "mpi", "sendrecv", 2))
    return {"runs": runs, "skipped": skipped}


class FilterModule:
    def filters(self):
        return {"acceptance_plan": acceptance_plan}
